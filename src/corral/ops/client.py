"""The client side of the control socket: find the running server, send one request, read its
reply (``corral.ops.controlproto``).

Stdlib only, and nothing heavy: ``corral status`` must start and answer fast.

With no ``--control``, the server is looked for in the runtime folder (``ops.rundir``): the
control sockets there that answer. One: that one. Several: ``ClientError`` lists them (and the
configuration each serves) and asks for ``--control``. None: ``ClientError`` says so.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from corral.ops import controlproto as proto
from corral.ops.controlproto import ProtocolError, Request
from corral.ops.rundir import runtime_dir

#: The suffix of control sockets in the runtime folder (as ``ops.control.SUFFIX``).
SUFFIX: Final = ".sock"

#: Seconds to wait for a quick command's reply (status, info, scale, stop).
QUICK: Final = 10.0

#: Seconds to wait for a restart or a reload (new workers start; a deploy script may run).
SLOW: Final = 600.0

#: The largest reply read (a status document of thousands of workers fits many times over).
MAX_REPLY: Final = 64 * 1024 * 1024


class ClientError(Exception):
    """The command failed: one line (or a few) for the user, and the exit code to use."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _connect(path: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except BaseException:
        sock.close()
        raise
    return sock


def _no_server(path: Path, exc: OSError) -> ClientError:
    if isinstance(exc, FileNotFoundError):
        return ClientError(f"no corral is running at {path} (no such socket)")
    if isinstance(exc, ConnectionRefusedError):
        return ClientError(f"no corral is running at {path} (nothing answers there)")
    if isinstance(exc, PermissionError):
        return ClientError(f"cannot reach {path}: permission denied (is it another user's?)")
    return ClientError(f"cannot reach {path}: {exc.strerror or exc}")


def call(path: Path, request: Request, timeout: float = QUICK) -> object:
    """Send ``request`` to the server at ``path`` and return its result; ``ClientError``
    with the server's error, or why it could not be asked."""
    try:
        sock = _connect(path, timeout)
    except OSError as exc:
        raise _no_server(path, exc) from None
    with sock:
        try:
            sock.sendall(proto.encode_request(request))
            line = _read_line(sock)
        except TimeoutError:
            raise ClientError(f"{path}: no reply within {timeout:.0f} s") from None
        except OSError as exc:
            raise ClientError(f"{path}: {exc.strerror or exc}") from None
    if not line:
        raise ClientError(f"{path}: the server closed the connection without replying")
    try:
        reply = proto.decode_reply(line)
    except ProtocolError as exc:
        raise ClientError(f"{path}: {exc}") from None
    if not reply.ok:
        raise ClientError(reply.error)
    return reply.result


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)
        if size > MAX_REPLY:
            raise ClientError(f"the reply is longer than {MAX_REPLY} bytes")


def answers(path: Path) -> bool:
    """Something listens on the socket at ``path``."""
    try:
        _connect(path, 1.0).close()
    except OSError:
        return False
    return True


def live_sockets(folder: Path) -> list[Path]:
    """The control sockets in ``folder`` that answer (stale ones left by a crash do not)."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(SUFFIX))
    except OSError:
        return []
    return [folder / name for name in names if answers(folder / name)]


def choose(control: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The control socket to talk to: ``control``, else the only live one in the runtime
    folder. ``ClientError`` when there is none, or several."""
    if control is not None:
        return control
    folder = runtime_dir(dict(os.environ if environ is None else environ))
    found = live_sockets(folder)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ClientError(
            f"no running corral found (no live control socket in {folder}); "
            "start one with corral serve, or name its socket with --control PATH"
        )
    lines = [f"{len(found)} corral servers are running; choose one with --control PATH:"]
    for path in found:
        try:
            result = call(path, Request(proto.INFO), timeout=1.0)
        except ClientError:
            lines.append(f"  {path}")
            continue
        config = result.get("config", "?") if isinstance(result, dict) else "?"
        pid = result.get("pid", "?") if isinstance(result, dict) else "?"
        lines.append(f"  {path}  (pid {pid}, serving {config})")
    raise ClientError("\n".join(lines), code=2)


def wait_gone(path: Path, timeout: float) -> bool:
    """Wait until the server at ``path`` no longer answers (it has stopped); False when it
    still does after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while answers(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
