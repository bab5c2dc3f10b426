"""The worker's listening socket: the one the host passes at fd 0 (the FastCGI convention), or
one it opens itself for ``--bind unix:PATH`` / ``--bind HOST:PORT`` (standalone, behind nginx or
Apache). Stdlib only: this runs in the application's interpreter."""

from __future__ import annotations

import os
import socket
import stat


class BindError(Exception):
    """The listening socket cannot be opened (or fd 0 is not one)."""


def bind(spec: str | None) -> tuple[socket.socket, str]:
    """Open the listening socket: ``unix:PATH``, ``HOST:PORT`` or (None) the one at fd 0."""
    if spec is None:
        return _inherited(), "the listening socket at fd 0"
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise BindError("--bind unix: needs a path")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.exists(path) and _is_stale_socket(path):
                os.unlink(path)
            sock.bind(path)
            sock.listen(socket.SOMAXCONN)
        except OSError as exc:
            sock.close()
            raise BindError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
        return sock, f"unix:{path}"
    host, sep, port_text = spec.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise BindError(f"--bind {spec!r}: expected unix:PATH or HOST:PORT")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, OverflowError) as exc:
        raise BindError(f"--bind {spec!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {spec}: {exc.strerror or exc}") from None
    bound = sock.getsockname()
    shown = f"[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else f"{bound[0]}:{bound[1]}"
    return sock, shown


def _is_stale_socket(path: str) -> bool:
    """A socket file nobody listens on (left by a dead worker) may be replaced."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return True
    finally:
        probe.close()
    return False


def _inherited() -> socket.socket:
    """The FastCGI convention: the listening socket is fd 0. It moves to a new fd, and fd 0
    becomes /dev/null so that the app reading its stdin cannot steal connections."""
    try:
        sock = socket.socket(fileno=os.dup(0))
    except OSError as exc:
        raise BindError(
            f"fd 0 is not a socket ({exc.strerror or exc}); start the worker with --bind "
            "unix:PATH or HOST:PORT, or from a host that passes a listening socket on fd 0"
        ) from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if not listening or sock.type != socket.SOCK_STREAM:
        sock.close()
        raise BindError(
            "fd 0 is a socket but not a listening stream socket; start the worker with --bind, "
            "or from a host that passes a listening socket on fd 0"
        )
    sock.setblocking(True)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return sock
