"""The control socket: a Unix socket on which ``corral status|restart|reload|stop|scale|top``
reach a running ``corral serve`` (the protocol: ``corral.ops.controlproto``).

The socket is made with mode 0600 (only its user may connect) at ``--control PATH`` or, by
default, in the runtime folder (``ops.rundir``) under the name of the configuration served
(``default_path``). A socket left there by a server that died is replaced; one that answers
belongs to a running server of the same configuration, and starting is refused
(``ControlError``). The socket is removed when the server stops.

Each connection carries one request and one reply, then is closed; the request line is bounded
(``MAX_REQUEST``) and must arrive within ``READ_TIMEOUT`` seconds. The commands run on the
host's event loop as the host's own mechanisms (``Controlled``): nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from corral import __version__
from corral.ops import controlproto as proto
from corral.ops.controlproto import ProtocolError, Reply, Request
from corral.ops.rundir import ensure, name_for, runtime_dir
from corral.ops.status import HostStatus

logger = logging.getLogger("corral")

#: Seconds a client has to send its request line.
READ_TIMEOUT: Final = 10.0

#: The suffix of control sockets in the runtime folder (``corral status`` finds them by it).
SUFFIX: Final = ".sock"

#: The longest path a Unix socket may have (``sun_path`` is 108 bytes with its NUL on Linux,
#: 104 on macOS).
MAX_PATH: Final = 103


class ControlError(OSError):
    """The control socket cannot be opened (one line for the user)."""


class Controlled(Protocol):
    """What the control socket drives: the host (``corral.app.Host``)."""

    @property
    def state(self) -> str: ...

    def status(self) -> HostStatus: ...

    async def restart_app_outcome(self, ident: str) -> tuple[bool, str]: ...

    async def reload_outcome(self, reason: str) -> tuple[bool, str]: ...

    def scale_app(self, ident: str, min_workers: int | None, max_workers: int | None) -> str: ...

    def request_stop(self) -> None: ...

    @property
    def shutdown_grace(self) -> float: ...


def default_path(config_path: Path, environ: dict[str, str] | None = None) -> Path:
    """Where the server of ``config_path`` puts its control socket by default."""
    return runtime_dir(environ) / f"{name_for(config_path)}{SUFFIX}"


def _answers(path: Path) -> bool:
    """A server is listening on the socket at ``path`` (a connection is accepted)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600, replacing a dead server's socket.
    ``ControlError`` when another server answers there, or the path cannot be used."""
    where = os.fspath(path)
    if len(os.fsencode(where)) > MAX_PATH:
        raise ControlError(
            f"the control socket path {where} is too long for a Unix socket "
            f"({len(os.fsencode(where))} bytes, at most {MAX_PATH}): choose one with --control"
        )
    try:
        info = path.lstat()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ControlError(f"cannot use the control socket {where}: {exc.strerror}") from None
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{where} exists and is not a socket: remove it or use --control")
        if _answers(path):
            raise ControlError(
                f"another corral serves this configuration: its control socket {where} answers "
                "(stop it first, or give this one another --control path)"
            )
        logger.info("replacing the control socket %s left by a server that is gone", where)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket file is made 0600 (the chmod below is for certainty)
    try:
        sock.bind(where)
        os.chmod(where, 0o600)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ControlError(f"another corral has just opened {where}") from None
        raise ControlError(f"cannot open the control socket {where}: {exc.strerror}") from None
    finally:
        os.umask(old)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class Identity:
    """Who answers on the socket (the ``info`` command)."""

    pid: int
    config: str
    started: float


class ControlServer:
    """The control socket of one running host."""

    def __init__(self, host: Controlled, path: Path, identity: Identity) -> None:
        self.host = host
        self.path = path
        self.identity = identity
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls, host: Controlled, path: Path | None, config_path: Path, started: float
    ) -> ControlServer:
        """Listen at ``path`` (None: the default in the runtime folder, made if needed)."""
        if path is None:
            path = default_path(config_path)
            try:
                ensure(path.parent)
            except OSError as exc:
                raise ControlError(f"{exc} (or choose a control socket with --control)") from None
        server = cls(host, path, Identity(os.getpid(), os.fspath(config_path), started))
        sock = bind_socket(path)
        info = os.stat(path)
        server._inode = (info.st_dev, info.st_ino)
        server._server = await asyncio.start_unix_server(
            server._connection, sock=sock, limit=proto.MAX_REQUEST
        )
        logger.info("control socket: %s", path)
        return server

    async def cancel_commands(self) -> None:
        """End the commands under way (the host begins to stop: a reload or a restart must not
        run on while it closes its pools). The socket keeps answering ``status``; other
        commands are refused from now on (the host's state is "stopping")."""
        running = [task for task in self._handlers if task is not asyncio.current_task()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def close(self) -> None:
        """Stop answering and remove the socket (if it is still this server's)."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        await self.cancel_commands()
        await server.wait_closed()
        with contextlib.suppress(OSError):
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                self.path.unlink()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            reply, after = await self._serve_one(reader)
            if reply is not None:
                writer.write(proto.encode_reply(reply))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            after = None
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if after is not None:
            after()

    async def _serve_one(
        self, reader: asyncio.StreamReader
    ) -> tuple[Reply | None, Callable[[], None] | None]:
        """The reply to the connection's request (None: the client left without one), and
        what to do once it is sent."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            return Reply(False, error=f"the request is longer than {proto.MAX_REQUEST} bytes"), None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None, None
            return Reply(False, error="the request does not end with a newline"), None
        except TimeoutError:
            return None, None
        try:
            request = proto.decode_request(line)
        except ProtocolError as exc:
            return Reply(False, error=str(exc)), None
        return await self.run(request)

    async def run(self, request: Request) -> tuple[Reply, Callable[[], None] | None]:
        """Carry out one request."""
        host = self.host
        command = request.command
        if command == proto.INFO:
            who = self.identity
            return Reply(
                True,
                {
                    "pid": who.pid,
                    "config": who.config,
                    "version": __version__,
                    "started": who.started,
                    "state": host.state,
                },
            ), None
        if command == proto.STATUS:
            return Reply(True, host.status().to_json()), None
        if host.state == "stopping":
            return Reply(False, error=f"the server is stopping; it does not {command} now"), None
        if host.state == "starting" and command != proto.STOP:
            return Reply(False, error=f"the server is still starting; {command} later"), None
        try:
            if command == proto.RESTART:
                assert request.app is not None
                ok, message = await host.restart_app_outcome(request.app)
            elif command == proto.SCALE:
                assert request.app is not None
                ok, message = True, host.scale_app(request.app, request.min, request.max)
            elif command == proto.RELOAD:
                ok, message = await host.reload_outcome("corral reload")
            else:
                assert command == proto.STOP
                logger.info("stop asked for (corral stop)")
                result = {"message": "stopping", "pid": self.identity.pid}
                result["grace"] = host.shutdown_grace
                return Reply(True, result), host.request_stop
        except (LookupError, ValueError) as exc:
            return Reply(False, error=str(exc.args[0]) if exc.args else str(exc)), None
        if not ok:
            return Reply(False, error=message), None
        return Reply(True, {"message": message}), None
