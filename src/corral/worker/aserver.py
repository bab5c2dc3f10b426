"""The worker's FastCGI server for ASGI applications: one asyncio loop, many connections.

Concurrency is by connections, not by multiplexing: each FastCGI connection carries one request
at a time (``FCGI_MPXS_CONNS=0``, as in the WSGI server), and any number of connections are
served at once on the one event loop (``FCGI_MAX_CONNS`` says how many the host should open).
FastCGI has no per-request flow control, so multiplexing would let one slow WebSocket stall
every request sharing its connection; with a connection per request, the kernel's socket
buffers are each request's flow control, and the front's FastCGI client stays one request per
connection (nginx and Apache's mod_proxy_fcgi never multiplex either).

Life: lifespan startup (a failure exits with ``ExitCode.APP_LOAD_FAILED``, like an import error),
then serve; at SIGTERM/SIGINT stop accepting, close idle connections and every WebSocket (close
code 1012), let HTTP requests in flight finish, run lifespan shutdown and exit 0.

A request's FastCGI records reach its cycle (``asgi.HTTPCycle`` / ``asgi.WebSocketCycle``)
through ``on_stdin`` / ``on_stdin_end`` / ``on_disconnect``; the cycle answers through a
:class:`RequestChannel`. END_REQUEST frees the connection for the next request even while the
application is still running (Starlette's background tasks run after the response).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

from corral.errors import ExitCode
from corral.protocol.fastcgi.connection import SERVER, FastCGIConnection
from corral.protocol.fastcgi.constants import (
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    ProtocolStatus,
    Role,
)
from corral.protocol.fastcgi.errors import FastCGIError, RemoteProtocolError
from corral.protocol.fastcgi.events import (
    CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    EndRequest,
    GetValues,
    GetValuesResult,
    Params,
    Stdin,
    UnknownManagementRecord,
    UnknownType,
)
from corral.protocol.websocket import DEFAULT_MAX_MESSAGE_SIZE, HandshakeError
from corral.worker import asgi, debugpage
from corral.worker.asgi import ASGIApp
from corral.worker.wsgi import ClientDisconnected, log_error

#: Connections the host is told to open at most (FCGI_MAX_CONNS) by default.
DEFAULT_MAX_CONNECTIONS = 100
#: The largest WebSocket message accepted by default (bytes).
DEFAULT_WS_MAX_SIZE = DEFAULT_MAX_MESSAGE_SIZE
#: Seconds between the pings that keep a WebSocket (and the front's tunnel) alive and find
#: clients that vanished without closing (0: no pings).
DEFAULT_PING_INTERVAL = 20.0
#: How long a closing connection reads (and drops) what the front still sends (seconds).
LINGER_SECONDS = 2.0
#: Send buffer above which an application's ``send`` waits (bytes).
WRITE_HIGH_WATER = 256 * 1024

_BAD_LENGTH = (
    b"Status: 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 26\r\n\r\nmalformed Content-Length.\n"
)


class ASGIState:
    """What every connection shares."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        ping_interval: float = DEFAULT_PING_INTERVAL,
    ) -> None:
        self.app = app
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.lifespan_state: dict[str, Any] | None = None
        self.values = {
            FCGI_MAX_CONNS: str(max_connections).encode(),
            FCGI_MAX_REQS: str(max_connections).encode(),
            FCGI_MPXS_CONNS: b"0",
        }
        self.stopping = False
        self.connections: set[Connection] = set()
        #: Requests whose application is still running (a task each).
        self.tasks: set[asyncio.Task[None]] = set()
        #: Open WebSocket cycles (closed with 1012 when the worker stops).
        self.websockets: set[asgi.WebSocketCycle] = set()


class RequestChannel:
    """One FastCGI request as an ASGI cycle sees it (``asgi.Channel``)."""

    __slots__ = ("conn", "ended", "rid")

    def __init__(self, conn: Connection, rid: int) -> None:
        self.conn = conn
        self.rid = rid
        self.ended = False

    def write(self, data: bytes) -> None:
        conn = self.conn
        if self.ended or conn.gone or not data:
            return
        conn.transport.write(conn.fcgi.send_response(self.rid, data, end=False))

    async def drain(self) -> None:
        conn = self.conn
        if conn.gone:
            raise ClientDisconnected("the front closed the connection")
        if conn.write_paused:
            waiter = asyncio.get_running_loop().create_future()
            conn.drain_waiters.append(waiter)
            await waiter
            if conn.gone:
                raise ClientDisconnected("the front closed the connection")

    def end(self, app_status: int = 0, *, close: bool = False) -> None:
        if self.ended:
            return
        self.ended = True
        self.conn.end_request(self, app_status, close)

    def pause_input(self) -> None:
        if not self.ended:
            self.conn.pause_input()

    def resume_input(self) -> None:
        self.conn.resume_input()


Cycle = asgi.HTTPCycle | asgi.WebSocketCycle


class Connection(asyncio.Protocol):
    """One FastCGI connection from the front: one request at a time."""

    def __init__(self, state: ASGIState) -> None:
        self.state = state
        self.fcgi = FastCGIConnection(SERVER)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.gone = False
        self.write_paused = False
        self.read_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.rid = 0  # the request in progress (0: none): its BEGIN_REQUEST arrived
        self.channel: RequestChannel | None = None
        self.cycle: Cycle | None = None
        self.close_when_idle = False
        self.closing = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.state.connections.add(self)
        if self.state.stopping:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering: dropped
        try:
            self.fcgi.receive_data(data)
        except FastCGIError:
            return
        self._events()

    def eof_received(self) -> bool | None:
        if self.closing:
            return None
        try:
            self.fcgi.receive_data(b"")
        except FastCGIError:
            pass
        self._events()
        self._lost()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        self.state.connections.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _lost(self) -> None:
        if self.gone:
            return
        self.gone = True
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            cycle.on_disconnect()
        self._wake_drainers()

    # -- records ---------------------------------------------------------------------------

    def _events(self) -> None:
        fcgi = self.fcgi
        while not self.gone:
            try:
                event = fcgi.next_event()
            except RemoteProtocolError as exc:
                if not fcgi.eof_received:
                    log_error(
                        f"FastCGI protocol error from the front; closing its connection: {exc}"
                    )
                self.transport.abort()
                self._lost()
                return
            if event is NEED_DATA:
                return
            if event is CLOSED:
                self.transport.close()
                return
            if self.closing:
                return
            if isinstance(event, Stdin):
                cycle = self.cycle
                if cycle is not None and event.request_id == self.rid:
                    if event.data:
                        cycle.on_stdin(event.data)
                    else:
                        cycle.on_stdin_end()
            elif isinstance(event, Params):
                if event.request_id == self.rid and self.channel is None:
                    self._start(event.request_id, event.params)
            elif isinstance(event, BeginRequest):
                self._begin(event)
            elif isinstance(event, AbortRequest):
                if event.request_id == self.rid:
                    self._abort()
            elif isinstance(event, GetValues):
                values = self.state.values
                answer = [(name, values[name]) for name in event.names if name in values]
                self.transport.write(fcgi.send(GetValuesResult(answer)))
            elif isinstance(event, UnknownManagementRecord):
                self.transport.write(fcgi.send(UnknownType(event.record_type)))

    def _begin(self, event: BeginRequest) -> None:
        rid = event.request_id
        if self.rid:
            self.transport.write(self.fcgi.send(EndRequest(rid, 0, ProtocolStatus.CANT_MPX_CONN)))
        elif event.role != Role.RESPONDER:
            self.transport.write(self.fcgi.send(EndRequest(rid, 0, ProtocolStatus.UNKNOWN_ROLE)))
        else:
            self.rid = rid

    def _abort(self) -> None:
        """ABORT_REQUEST: the application hears a disconnect; the request ends now."""
        cycle = self.cycle
        channel = self.channel
        if cycle is not None:
            self.cycle = None
            cycle.on_disconnect()
        if channel is not None:
            channel.end(1)
        elif self.rid:
            # Aborted before its PARAMS were complete.
            self.transport.write(self.fcgi.send_response(self.rid, b"", app_status=1))
            self.rid = 0

    def _start(self, rid: int, params: list[tuple[bytes, bytes]]) -> None:
        state = self.state
        channel = RequestChannel(self, rid)
        self.channel = channel
        scope = asgi.build_scope(params, state.lifespan_state)
        cycle: Cycle
        if asgi.is_websocket(scope):
            try:
                accept = asgi.check_handshake(scope)
            except HandshakeError as exc:
                channel.write(asgi.handshake_error_response(exc))
                channel.end(0, close=True)
                return
            cycle = asgi.WebSocketCycle(
                asgi.websocket_scope(scope),
                channel,
                accept,
                max_message_size=state.max_message_size,
                ping_interval=state.ping_interval,
            )
            state.websockets.add(cycle)
        else:
            try:
                length = asgi.content_length(scope)
            except ValueError as exc:
                log_error(f"bad request from the front: {exc}")
                channel.write(_BAD_LENGTH)
                channel.end(0)
                return
            debug = debugpage.wanted_params(params)
            cycle = asgi.HTTPCycle(scope, channel, length, debug=debug)
        self.cycle = cycle
        task = asyncio.get_running_loop().create_task(self._run(cycle))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _run(self, cycle: Cycle) -> None:
        try:
            await cycle.run(self.state.app)
        except Exception as exc:  # a bug here, not in the application
            log_error("internal error serving a request", exc)
            cycle.channel.end(1, close=True)
        finally:
            if isinstance(cycle, asgi.WebSocketCycle):
                if not cycle.finished:
                    # The app returned; the close handshake (or its timeout) ends the request.
                    await cycle.wait_finished()
                self.state.websockets.discard(cycle)

    def end_request(self, channel: RequestChannel, app_status: int, close: bool) -> None:
        """END_REQUEST for ``channel``'s request; the connection is free for the next one."""
        if channel is not self.channel:
            return
        self.channel = None
        self.cycle = None
        rid = self.rid
        self.rid = 0
        if self.read_paused:
            self.read_paused = False
            if not self.gone:
                self.transport.resume_reading()
        if self.gone:
            return
        try:
            self.transport.write(self.fcgi.send_response(rid, b"", app_status=app_status))
        except FastCGIError:
            close = True
        if close or self.fcgi.must_close or self.state.stopping or self.close_when_idle:
            self.close()

    def pause_input(self) -> None:
        if not self.read_paused and not self.gone:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_input(self) -> None:
        if self.read_paused and not self.gone:
            self.read_paused = False
            self.transport.resume_reading()

    def stop(self) -> None:
        """The worker is stopping: close now when idle, else after the request."""
        if not self.rid:
            self.close()
        else:
            self.close_when_idle = True

    def close(self) -> None:
        """Close after what is written, lingering: the front may still be sending input that
        nobody will read (the rest of a body, a tunnel's last bytes), and closing with unread
        data would reset the connection and could destroy our response. So: half-close, read
        and drop until the front closes too, or LINGER_SECONDS."""
        if self.closing or self.gone:
            return
        self.closing = True
        transport = self.transport
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)


# -------------------------------------------------------------------------------- the process


async def serve(listener: socket.socket, state: ASGIState, ready: str | None = None) -> int:
    """Run lifespan startup, serve until SIGTERM/SIGINT, stop gracefully; return the exit code.
    ``ready``: the line logged once the worker accepts connections."""
    from corral.worker.server import log

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    lifespan = asgi.Lifespan(state.app)
    try:
        await lifespan.startup()
    except asgi.LifespanFailed as exc:
        log(f"the application's lifespan startup failed; it cannot start:\n{exc}")
        return ExitCode.APP_LOAD_FAILED
    if lifespan.supported:
        state.lifespan_state = lifespan.state
    listener.setblocking(False)
    if listener.family == socket.AF_UNIX:
        server = await loop.create_unix_server(lambda: Connection(state), sock=listener)
    else:
        server = await loop.create_server(lambda: Connection(state), sock=listener)
    if ready:
        log(ready, notice=True)
    await stop.wait()
    state.stopping = True
    server.close()
    for cycle in list(state.websockets):
        cycle.shutdown()
    for conn in list(state.connections):
        conn.stop()
    # Let the requests in flight finish (the host's grace period bounds this wait).
    while state.tasks:
        await asyncio.wait(set(state.tasks))
    await lifespan.shutdown()
    return ExitCode.OK


def serve_forever(listener: socket.socket, state: ASGIState, ready: str | None = None) -> int:
    return asyncio.run(serve(listener, state, ready))
