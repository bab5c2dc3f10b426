"""The console's WebSocket (``CONSOLE_URL/ws``): a shell session at the other end of the front's
tunnel.

A ``TerminalSocket`` is the ``Upstream`` of one WebSocket handshake the console accepted
(``console.endpoint``). It starts the shell first (``console.session``), then answers 101 (or
500 when no shell could start), so that the front's ``Tunnel`` turns the connection into a byte
tunnel; from then on it speaks WebSocket (``corral.protocol.websocket``, sans-IO) on it:

- from the client: binary (or text) messages are terminal input; a text message that is a JSON
  object ``{"resize": [columns, rows]}`` resizes the terminal; pings are answered; a close frame
  ends the session;
- to the client: the shell's output as binary messages; a ping every ``keepalive`` seconds (so
  the front's tunnel idle timeout never cuts a quiet console that the console's own idle
  timeout would keep); at the end, a close frame that says why (the shell exited, idle...).

Back-pressure, both ways: the front pausing us (the client reads slowly) pauses reading the
PTY; the shell not reading its input pauses reading the client. The connection closing, for
whatever reason, ends the session (the shell's processes are killed). Each session's start and
end are logged for the application (``extra={"app": ...}``: its error log and log tail too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.backends import ResponseSink
from corral.console.session import ConsoleError, ShellSession
from corral.console.shell import ShellPlan
from corral.protocol import websocket as ws

logger = logging.getLogger("corral.console")

#: Largest message accepted from the browser (a paste).
MAX_MESSAGE = 1024 * 1024
#: Terminal size bounds for resize messages.
_MAX_CELLS = 1000


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What one session needs to know, fixed per application."""

    #: The application's label (the log's ``app``).
    app: str
    plan_for: Callable[[int], ShellPlan]
    idle_timeout: float
    keepalive: float


def parse_resize(text: str) -> tuple[int, int] | None:
    """(rows, columns) of a ``{"resize": [columns, rows]}`` message, else None."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    size = message.get("resize")
    if (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in size)
        and all(0 < n <= _MAX_CELLS for n in size)
    ):
        return int(size[1]), int(size[0])
    return None


class TerminalSocket:
    """One console WebSocket: an ``Upstream`` for the front, a ``ShellPeer`` for the session."""

    def __init__(self, spec: SessionSpec, accept: str, client: str) -> None:
        self._spec = spec
        self._accept = accept
        self._client = client
        self._sink: ResponseSink | None = None
        self._ws = ws.WebSocketConnection(ws.SERVER, max_message_size=MAX_MESSAGE)
        self._session: ShellSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ping: asyncio.TimerHandle | None = None
        self._open = False
        self._closed = False
        #: Why the session ends when the connection does.
        self._why = "the connection closed"

    # -- Upstream ------------------------------------------------------------------------------

    def begin(
        self, static: bytes, params: list[tuple[bytes, bytes]], sink: ResponseSink, has_body: int
    ) -> None:
        self._sink = sink
        self._task = asyncio.get_running_loop().create_task(self._start())

    def send_body(self, data: bytes) -> None:
        """WebSocket bytes from the client."""
        if not self._open or self._closed:
            return
        self._ws.receive_data(data)
        try:
            while not self._closed:
                event = self._ws.next_event()
                if event is ws.NEED_DATA or event is ws.CLOSED:
                    return
                self._event(event)
        except ws.WebSocketProtocolError as exc:
            self._write(self._ws.fail(exc))
            self._end(f"the client broke the WebSocket protocol: {exc}")

    def end_body(self) -> None:
        if self._open:
            self._end("the client stopped sending")

    def pause_reading(self) -> None:
        if self._session is not None:
            self._session.pause_output()

    def resume_reading(self) -> None:
        if self._session is not None:
            self._session.resume_output()

    def abort(self) -> None:
        """The connection is gone (or the front gives up on it): end the session."""
        self._sink = None
        self._end(self._why)

    close = abort

    @property
    def is_closed(self) -> bool:
        return self._closed

    # -- ShellPeer -----------------------------------------------------------------------------

    def output(self, data: bytes) -> None:
        if self._open and not self._ws.close_sent:
            self._write(self._ws.send_bytes(data))

    def pause_input(self) -> None:
        if self._sink is not None:
            self._sink.backend_pause_writing()

    def resume_input(self) -> None:
        if self._sink is not None:
            self._sink.backend_resume_writing()

    def ended(self, why: str) -> None:
        session = self._session
        if session is not None:
            logger.info(
                "app %s: console session of %s ended after %.0f s: %s (shell pid %d)",
                self._spec.app,
                self._client,
                time.monotonic() - session.started,
                why,
                session.pid,
                extra={"app": self._spec.app},
            )
        self._finish(why)

    # -- the handshake -------------------------------------------------------------------------

    async def _start(self) -> None:
        spec = self._spec
        try:
            session = await ShellSession.start(spec.plan_for, self, spec.idle_timeout)
        except Exception as exc:
            self._task = None
            logger.error(
                "app %s: console session of %s: %s",
                spec.app,
                self._client,
                exc,
                exc_info=not isinstance(exc, ConsoleError),
                extra={"app": spec.app},
            )
            self._refuse(500, "The console's shell could not be started (see the log).")
            return
        self._task = None
        self._session = session
        logger.info(
            "app %s: console session of %s started: %s (pid %d) in %s",
            spec.app,
            self._client,
            session.shell,
            session.pid,
            session.cwd,
            extra={"app": spec.app},
        )
        sink = self._sink
        if sink is None or self._closed:  # the client left while the shell started
            session.close(self._why)
            return
        self._open = True
        sink.backend_head(
            101, b"Switching Protocols", [(b"Sec-WebSocket-Accept", self._accept.encode())]
        )
        self._ping = asyncio.get_running_loop().call_later(spec.keepalive, self._keepalive)

    def _refuse(self, status: int, message: str) -> None:
        sink = self._sink
        self._closed = True
        if sink is None:
            return
        body = message.encode() + b"\n"
        sink.backend_head(
            status,
            b"",
            [
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", b"%d" % len(body)),
            ],
        )
        sink.backend_body(body)
        self._sink = None
        sink.backend_end(False)

    # -- the tunnel ----------------------------------------------------------------------------

    def _event(self, event: object) -> None:
        session = self._session
        assert session is not None
        if isinstance(event, ws.BytesMessage):
            session.write(event.data)
        elif isinstance(event, ws.TextMessage):
            size = parse_resize(event.data) if event.data.startswith("{") else None
            if size is not None:
                session.resize(*size)
            else:
                session.write(event.data.encode("utf-8"))
        elif isinstance(event, ws.Ping):
            self._write(self._ws.pong(event.payload))
        elif isinstance(event, ws.CloseReceived):
            if not self._ws.close_sent:
                self._write(self._ws.close(ws.CloseCode.NORMAL))
            self._end("the client closed the console")

    def _keepalive(self) -> None:
        self._ping = None
        if self._open and not self._closed and not self._ws.close_sent:
            self._write(self._ws.ping(b"corral"))
            self._ping = asyncio.get_running_loop().call_later(
                self._spec.keepalive, self._keepalive
            )

    def _write(self, data: bytes) -> None:
        if self._sink is not None and data:
            self._sink.backend_body(data)

    def _end(self, why: str) -> None:
        """End the session (which calls ``ended``), or everything if it has not started."""
        self._why = why
        if self._session is not None and not self._session.ended:
            self._session.close(why)
            return
        if self._session is None and self._task is None:
            self._finish(why)

    def _finish(self, why: str) -> None:
        """Close the WebSocket, saying why, and let the front close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        sink = self._sink
        self._sink = None
        if sink is None or not self._open:
            return
        if not self._ws.close_sent:
            with contextlib.suppress(ws.WebSocketError):
                sink.backend_body(self._ws.close(ws.CloseCode.NORMAL, _reason(why)))
        sink.backend_end(False)


def _reason(why: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    raw = why.encode("utf-8")[:123]
    return raw.decode("utf-8", "ignore")
