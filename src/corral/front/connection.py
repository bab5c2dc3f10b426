"""One client connection: HTTP/1.1 in, FastCGI to a backend out, callback-driven.

``HTTPConnection`` is an ``asyncio.Protocol``. It feeds the sans-IO request parser, and for each
request (one at a time, in order: pipelined bytes wait in the parser) it

1. routes it and builds its CGI variables,
2. leases a backend connection from the application's pool (the only ``await``, in a small task),
3. sends BEGIN_REQUEST/PARAMS and streams the body as STDIN (``Expect: 100-continue`` is answered
   only now, when the body is wanted),
4. relays the backend's response (it is the backend connection's ``ResponseSink``).

Back-pressure both ways: the client transport stops reading while the backend's send buffer is
full (and while no backend is leased yet), and the backend stops being read while the client's
send buffer is above its high-water mark. Memory per connection is bounded by one read each way.

Timeouts are deadlines on a coarse clock that the server sweeps twice a second: no timer object
per request. Kinds: header (408, or a silent close when nothing came), keep-alive idle (silent
close), body stall (408), backend response (504; an abort once the response has started).

Errors: a framing error in the request is answered with its 4xx status and the connection is
closed. A backend that fails costs this one request a 502 (or an aborted response when the head
is already out). A 503 page may show the application's error output to loopback clients only.
"""

from __future__ import annotations

import asyncio
import codecs
import html
import ipaddress
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING, cast

from corral.backends import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_TUNNEL,
    BackendError,
    BackendNotStarted,
    Upstream,
)
from corral.front import accesslog, errorpages, forward, staticserve
from corral.front.cgienv import header_params
from corral.front.proxy import BadBackendHead, body_allowed, filter_headers, status_line
from corral.front.routes import Route
from corral.front.target import BadTarget, decode_path, split_host
from corral.protocol.http1.errors import HTTPProtocolError
from corral.protocol.http1.events import NEED_DATA, PAUSED, Body, EndOfMessage, Request
from corral.runtime.gate import DeployFailed, DeployInProgress
from corral.supervision.lease import (
    AcquireTimeout,
    Lease,
    LeaseSource,
    PoolError,
    PoolOverloaded,
    PoolUnavailable,
    Waiter,
)

if TYPE_CHECKING:
    from corral.front.server import FrontServer

logger = logging.getLogger("corral.front")

# Deadline kinds.
_NONE = 0
_HEAD = 1  # waiting for (the rest of) a request head
_IDLE = 2  # kept alive between requests
_BODY = 3  # reading a request body
_BACKEND = 4  # waiting on the backend (or on a client that does not read)
_LINGER = 5  # answered and closing: reading what the client still sends, then closing
_TUNNEL = 6  # switched protocols (101): a byte tunnel between the client and the backend
_ACQUIRE = 7  # queued for a worker (Pool.lease_or_wait): 503 after acquire_timeout

#: Lingering close: how long, and how many bytes at most, to read and drop after a response
#: that ends a connection while the client may still be sending (so that the client reads the
#: response instead of a reset, like nginx's lingering_close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024

# Reasons to stop reading from the client (a bit mask).
_PAUSE_ACQUIRE = 1
_PAUSE_BACKEND = 2
_PAUSE_PIPELINE = 4

# Response framing (see proxy.py): plain ints, compared on the hot path.
_NO_BODY = 0  # HEAD, 1xx, 204, 304
_LENGTH = 1  # Content-Length
_CHUNKED_OUT = 2  # Transfer-Encoding: chunked
_CLOSE_DELIMITED = 3  # HTTP/1.0 without a length: the body ends with the connection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CRLF = b"\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_CONN_CLOSE = b"Connection: close\r\n"
_CONN_KEEP = b"Connection: keep-alive\r\n"
_HELD_PIPELINE_MAX = 64 * 1024
#: How often a request that never reached the app (BackendNotStarted) is leased again.
_NOT_STARTED_RETRIES = 3
#: Methods whose requests (without a body) may be queued on a busy worker's connection: safe
#: ones, which may run twice if one is withdrawn just as it begins (RFC 9110 9.2.2).
_QUEUEABLE = frozenset((b"GET", b"HEAD", b"OPTIONS"))


def unavailable_details(exc: PoolUnavailable) -> str:
    """What a developer needs on the "cannot start" page: why, the worker's error output
    (the traceback), and when Corral tries again."""
    lines = [exc.reason]
    if exc.failures:
        if exc.gave_up:
            when = f"in {exc.retry_in:.0f} s" if exc.retry_in is not None else "on the next request"
            lines.append(
                f"The application failed to start {exc.failures} times in a row and is marked "
                f"failed: Corral tries again {when}, or as soon as its files change."
            )
        elif exc.retry_in is not None:
            lines.append(
                f"Failed starts in a row: {exc.failures}. Corral tries again in "
                f"{exc.retry_in:.0f} s, or as soon as the application's files change."
            )
    if exc.stderr_tail:
        lines.append(f"The worker's error output (last lines):\n\n{exc.stderr_tail}")
    return "\n\n".join(lines).strip()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class HTTPConnection(asyncio.Protocol):
    __slots__ = (
        "__weakref__",
        "_agent",
        "_backend",
        "_body_done",
        "_body_out",
        "_body_received",
        "_close_after",
        "_closed",
        "_conn_params",
        "_deadline",
        "_expect_continue",
        "_framing",
        "_got_bytes",
        "_head_buffer",
        "_held",
        "_host",
        "_host_parts",
        "_kind",
        "_lease",
        "_logged",
        "_method",
        "_out_length",
        "_params",
        "_parser",
        "_paused",
        "_pending_body",
        "_pending_head",
        "_referer",
        "_remaining",
        "_request",
        "_retries",
        "_route",
        "_sent",
        "_server",
        "_status",
        "_task",
        "_transport",
        "_waiter",
        "_write_resumed",
        "_writing_paused",
        "loopback",
        "remote_host",
        "remote_port",
        "server_port",
    )

    def __init__(self, server: FrontServer) -> None:
        self._server = server
        self._parser = server.new_parser()
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._paused = 0
        self._writing_paused = False
        self._write_resumed: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._kind = _NONE
        self._got_bytes = False
        self._held = 0
        self._host: bytes | None = None
        self._host_parts = (b"", b"")
        self._reset_request()

    def _reset_request(self) -> None:
        self._request: Request | None = None
        self._route: Route | None = None
        self._lease: Lease | None = None
        self._backend: Upstream | None = None
        self._task: asyncio.Task[None] | None = None
        #: The source and waiter of a request queued by callback (``lease_or_wait``).
        self._waiter: tuple[LeaseSource, Waiter] | None = None
        self._method = b""
        self._body_done = True
        self._body_received = 0
        self._expect_continue = False
        self._pending_body: list[bytes] | None = None
        self._pending_head: list[bytes | memoryview] | None = None
        self._head_buffer: list[bytes | memoryview] | None = None
        self._body_out: list[bytes | memoryview] | None = None
        self._framing = _NO_BODY
        self._out_length: int | None = None
        self._remaining = 0
        self._close_after = False
        self._status = 0
        self._sent = 0
        self._referer: bytes | None = None
        self._agent: bytes | None = None
        #: A request queued on a busy worker connection is sent again when that connection
        #: closes before serving it (BackendNotStarted): its CGI variables, and how often.
        self._params: list[tuple[bytes, bytes]] | None = None
        self._retries = 0
        self._logged = False

    # -- asyncio.Protocol: the client side ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        server = self._server
        transport.set_write_buffer_limits(high=server.settings.write_buffer_high)
        peer = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.remote_host = str(peer[0])
            self.remote_port = int(peer[1])
        else:  # a Unix socket listener
            self.remote_host = "127.0.0.1"
            self.remote_port = 0
        self.loopback = server.is_loopback(self.remote_host)
        if isinstance(sockname, tuple):
            server_addr, self.server_port = str(sockname[0]), int(sockname[1])
        else:
            server_addr, self.server_port = "127.0.0.1", 0
        self._conn_params = server.connection_params(
            self.remote_host, self.remote_port, server_addr, self.server_port
        )
        self._set_deadline(_HEAD, server.header_timeout)
        server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._transport = None  # no transport <-> protocol cycle left for the GC to find
        if self._kind == _TUNNEL:
            self._log_access()  # (a tunnel the client closed ends here: 101, bytes sent)
        self._server.connection_closed(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._give_up_waiting()
        backend = self._backend
        if backend is not None:
            self._backend = None
            backend.abort()
            self._release(False)
        elif self._lease is not None:
            self._release(False)

    def data_received(self, data: bytes) -> None:
        kind = self._kind
        if kind >= _LINGER:
            if kind == _TUNNEL:
                self._deadline = self._server.now + self._server.tunnel_idle_timeout
                if self._backend is not None:
                    self._backend.send_body(data)
                return
            self._held += len(data)
            if self._held > LINGER_BYTES:
                self._close()
            return
        if kind == _IDLE:
            self._set_deadline(_HEAD, self._server.header_timeout)
        elif kind == _BODY:
            self._deadline = self._server.now + self._server.body_timeout
        self._got_bytes = True
        if self._request is not None and self._body_done:
            # Pipelined bytes behind a request in flight: the parser holds them. Bound that.
            self._held += len(data)
            if self._held > _HELD_PIPELINE_MAX:
                self._pause(_PAUSE_PIPELINE)
        self._parser.receive_data(data)
        self._drain()

    def eof_received(self) -> bool | None:
        if self._kind >= _LINGER:
            if self._kind == _TUNNEL and self._backend is not None:
                # The client is done sending: pass the half-close on; the tunnel ends when the
                # backend ends (or at the idle timeout).
                self._backend.end_body()
                return True
            self._close()
            return None
        self._parser.receive_data(b"")
        self._drain()
        # Keep the transport open for writing while a response is still to come.
        return self._request is not None and not self._closed

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._backend is not None:
            self._backend.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._write_resumed
        if waiter is not None:
            self._write_resumed = None
            if not waiter.done():
                waiter.set_result(None)
        if self._kind == _BACKEND:
            self._deadline = self._server.now + self._server.response_timeout
        if self._backend is not None:
            self._backend.resume_reading()

    # -- requests ----------------------------------------------------------------------------

    def _drain(self) -> None:
        parser = self._parser
        while not self._closed:
            try:
                event = parser.next_event()
            except HTTPProtocolError as exc:
                self._request_error(exc.status_hint, exc.reason)
                return
            event_type = type(event)
            if event_type is Body:
                self._on_body(event.data)  # type: ignore[union-attr]
            elif event_type is Request:
                self._on_request(event)  # type: ignore[arg-type]
            elif event_type is EndOfMessage:
                self._on_body_end()
            elif event is NEED_DATA or event is PAUSED:
                return
            else:  # ConnectionClosed: the client is done with this connection
                if self._request is None:
                    self._close()
                return

    def _on_request(self, request: Request) -> None:
        server = self._server
        self._request = request
        self._method = method = request.method
        self._held = 0
        self._set_deadline(_BACKEND, server.response_timeout)
        length = request.content_length
        has_body = request.chunked or bool(length)
        self._body_done = not has_body
        self._expect_continue = request.expect_continue and has_body
        if length is not None and length > server.settings.max_body_size:
            self._respond_error(413)
            return
        if method == b"CONNECT":
            # Corral is not a forward proxy; the tunnel's bytes are not HTTP (RFC 9110 15.6.2).
            self._respond_error(501, message="CONNECT is not supported by this server.")
            return
        # An Upgrade request is served as plain HTTP/1.1 (Upgrade is hop-by-hop, not forwarded)
        # unless the route's backend can switch protocols (see _special_request).
        try:
            path = decode_path(request.path)
        except BadTarget as exc:
            if exc.status == 404:
                self._respond_error(404)
            else:
                self._request_error(exc.status, str(exc))
            return
        params: list[tuple[bytes, bytes]] = []
        host, self._referer, self._agent, _ = header_params(request.headers, params)
        if request.host is not None:
            host = request.host
        route = server.router.match(host, path, self.server_port)
        if route is None:
            self._respond_error(404)
            return
        self._route = route
        script_name = route.script_name
        path_info = path[len(script_name) :] if script_name else path
        if route.static is not None:  # a static file: answered like a backend's response
            self._start_forwarding(staticserve.respond(route, request, path_info), [], has_body)
            return
        if host is None or host != self._host:
            # Kept-alive clients send the same Host every time: split it once.
            self._host = host
            if host:
                self._host_parts = split_host(host, server.port_bytes(self.server_port))
            else:
                self._host_parts = (server.host_bytes, server.port_bytes(self.server_port))
        server_name, server_port = self._host_parts
        params.append((b"REQUEST_METHOD", method))
        if route.script_params is None:
            params.append((b"PATH_INFO", path_info))
        else:
            params += route.script_params  # a file handler's script (*.php)
        params.append((b"QUERY_STRING", request.query))
        params.append((b"REQUEST_URI", request.target))
        params.append((b"SERVER_NAME", server_name))
        params.append((b"SERVER_PORT", server_port))
        params.append((b"SERVER_PROTOCOL", server.protocol_bytes(request.http_version)))
        if length is not None and not request.chunked:
            params.append((b"CONTENT_LENGTH", b"%d" % length))
        if has_body:
            self._pause(_PAUSE_ACQUIRE)
            self._pending_body = []
        if route.special and (route.http or request.upgrade is not None):
            # (An upgrade-only route, such as Corral's Python worker's, keeps its ordinary
            # requests on the plain FastCGI path below.)
            self._special_request(request, route, params, has_body)
            return
        self._lease_for(route, params, has_body)

    def _lease_for(self, route: Route, params: list[tuple[bytes, bytes]], has_body: bool) -> None:
        """Lease a backend for a plain request and start it (or queue for one)."""
        server = self._server
        pool = route.pool
        # Leased by callback: no task, coroutine or timer per request (see _on_lease). A
        # request of a safe method without a body may be queued on a busy worker's
        # connection (and withdrawn from it: then it is sent again, first in line).
        queueable = not has_body and self._method in _QUEUEABLE
        if queueable:
            self._params = params
        try:
            got = pool.lease_or_wait(
                partial(self._on_lease, pool, route, params, has_body),
                queueable,
                self._retries > 0,
            )
        except Exception as exc:
            self._lease_failed(route, exc)
            return
        if got is not None:
            if isinstance(got, Lease):
                self._lease = got
                self._start_forwarding(got.conn, params, has_body)
            else:  # queued: the sweep gives up after acquire_timeout
                self._waiter = (pool, got)
                self._set_deadline(_ACQUIRE, server.settings.acquire_timeout)
            return
        self._task = server.loop.create_task(self._acquire(route, params, has_body))

    def _on_lease(
        self,
        pool: LeaseSource,
        route: Route,
        params: list[tuple[bytes, bytes]],
        has_body: bool,
        got: Lease | PoolError | None,
    ) -> None:
        """The pool's answer to a request that queued in ``Pool.lease_or_wait``."""
        self._waiter = None
        if self._closed or self._route is not route:  # gone, or given up (503) meanwhile
            if type(got) is Lease:
                pool.release(got, True)
            return
        if got is None:  # the pool could not hand over a kept-alive connection: the long way
            self._set_deadline(_BACKEND, self._server.response_timeout)
            self._task = self._server.loop.create_task(self._acquire(route, params, has_body))
        elif type(got) is Lease:
            self._lease = got
            self._set_deadline(_BACKEND, self._server.response_timeout)
            self._start_forwarding(got.conn, params, has_body)
        else:
            assert isinstance(got, PoolError)
            self._lease_failed(route, got)

    def _give_up_waiting(self) -> None:
        waiting = self._waiter
        if waiting is not None:
            self._waiter = None
            pool, waiter = waiting
            pool.cancel_wait(waiter)

    def _special_request(
        self, request: Request, route: Route, params: list[tuple[bytes, bytes]], has_body: bool
    ) -> None:
        """A request for a route whose backend speaks HTTP, or may switch protocols."""
        server = self._server
        if request.upgrade is not None and route.upgrade and not has_body:
            body = BODY_TUNNEL
        elif request.chunked:
            body = BODY_CHUNKED
        else:
            body = BODY_LENGTH if has_body else BODY_NONE
        if route.http:
            host = self._host or b"%s:%s" % self._host_parts
            static = forward.request_head(
                request,
                host=host,
                client=self.remote_host.encode("ascii", "replace"),
                trusted=self.remote_host in server.trusted_proxies,
                body=body,
            )
            params = []
        else:
            static = route.encoded_params + self._conn_params
            if body == BODY_TUNNEL:
                assert request.upgrade is not None
                params.append((b"HTTP_UPGRADE", request.upgrade))
                params.append((b"HTTP_CONNECTION", b"Upgrade"))
        lease = route.pool.try_acquire()
        if lease is not None:  # a worker was free: no task, no wait
            self._lease = lease
            self._start_special(lease.conn, static, params, body)
            return
        self._task = server.loop.create_task(self._acquire_special(route, static, params, body))

    async def _wait_lease(self, route: Route) -> Lease | None:
        """Wait for a lease from the route's pool (the queued path); None when the request was
        answered instead (deploy page, 503) or the client left meanwhile."""
        try:
            lease = await route.pool.acquire(self._server.settings.acquire_timeout)
        except DeployInProgress as exc:
            if exc.output is not None and self._method != b"HEAD":
                await self._stream_deploy(route, exc.output)
                return None
            self._task = None
            self._lease_failed(route, exc)
            return None
        except Exception as exc:
            self._task = None
            self._lease_failed(route, exc)
            return None
        self._task = None
        if self._closed:
            route.pool.release(lease, True)
            return None
        self._lease = lease
        return lease

    async def _acquire(self, route: Route, params: list[tuple[bytes, bytes]], body: bool) -> None:
        lease = await self._wait_lease(route)
        if lease is not None:
            self._start_forwarding(lease.conn, params, body)

    async def _acquire_special(
        self, route: Route, static: bytes, params: list[tuple[bytes, bytes]], body: int
    ) -> None:
        lease = await self._wait_lease(route)
        if lease is not None:
            self._start_special(lease.conn, static, params, body)

    def _start_special(
        self,
        backend: Upstream,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        body: int,
    ) -> None:
        self._backend = backend
        backend.begin(static, params, _Tunnel(self) if body == BODY_TUNNEL else self, body)
        if self._backend is None:  # begin() failed and reported it
            return
        if self._writing_paused:
            backend.pause_reading()
        if body in (BODY_NONE, BODY_TUNNEL):
            self._set_deadline(_BACKEND, self._server.response_timeout)
            return
        self._send_pending_body(backend)

    def _lease_failed(self, route: Route, exc: Exception) -> None:
        """No backend for this request: the 503 that says why."""
        if isinstance(exc, PoolOverloaded):
            self._respond_error(503, retry_after=True, message="The application is busy.")
        elif isinstance(exc, DeployInProgress):
            self._respond_error(
                503,
                retry_after=True,
                message=errorpages.DEPLOYING,
                refresh=self._server.settings.retry_after,
            )
        elif isinstance(exc, DeployFailed):
            details = None
            if exc.public or (self.loopback and self._server.settings.show_errors_to_loopback):
                details = f"{exc.reason}\n\n{exc.stderr_tail}".strip()
            self._respond_error(
                503,
                retry_after=True,
                message="The application's deploy script failed; the application is stopped "
                "until its files change.",
                details=details,
            )
        elif isinstance(exc, PoolUnavailable):
            details = None
            if route.development or (
                self.loopback and self._server.settings.show_errors_to_loopback
            ):
                details = unavailable_details(exc)
            self._respond_error(
                503,
                retry_after=True,
                retry_seconds=exc.retry_in,
                message="The application cannot start.",
                details=details,
            )
            logger.error("%s: answered 503: %s", route.name, exc.reason)
        elif isinstance(exc, AcquireTimeout):
            self._respond_error(503, retry_after=True, message="No application worker was free.")
        else:  # a bug or an unexpected failure below: this request only
            logger.error("%s: cannot lease a worker", route.name, exc_info=exc)
            self._respond_error(503, retry_after=True)

    async def _stream_deploy(self, route: Route, output: AsyncIterator[bytes]) -> None:
        """Answer with the deploy script's output as it comes (503, chunked; close-delimited
        for HTTP/1.0), in a page that reloads itself once the script has ended. Runs in the
        request's task: a client that goes away cancels it, one that stops reading stalls it
        (and the response deadline aborts it)."""
        server = self._server
        request = self._request
        assert request is not None and self._transport is not None
        chunked = request.http_version != "1.0"
        head = [
            status_line(503, b""),
            b"Server: Corral\r\n",
            b"Content-Type: text/html; charset=utf-8\r\n",
            b"Cache-Control: no-store\r\n",
            b"Retry-After: %d\r\n" % server.settings.retry_after,
            _CHUNKED if chunked else b"",
            _CONN_CLOSE,
            b"\r\n",
        ]
        self._status = 503
        self._close_after = True
        self._transport.write(b"".join(head))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        logger.info("%s: streaming the deploy script's output to %s", route.name, self.remote_host)
        try:
            await self._stream_piece(
                errorpages.deploy_stream_start(server.settings.retry_after), chunked
            )
            async for data in output:
                if self._closed:
                    return
                self._set_deadline(_BACKEND, server.response_timeout)
                if data:
                    text = html.escape(decoder.decode(data), quote=False)
                    await self._stream_piece(text.encode("utf-8"), chunked)
            tail = html.escape(decoder.decode(b"", final=True), quote=False).encode("utf-8")
            await self._stream_piece(
                tail + errorpages.deploy_stream_end("The deploy script has ended."), chunked
            )
            if chunked and not self._closed and self._transport is not None:
                self._transport.write(_LAST_CHUNK)
        finally:
            aclose = getattr(output, "aclose", None)
            if aclose is not None:
                await aclose()
        self._task = None
        if not self._closed:
            self._finish_request()

    async def _stream_piece(self, data: bytes, chunked: bool) -> None:
        transport = self._transport
        if self._closed or transport is None or not data:
            return
        if chunked:
            transport.write(b"%x\r\n" % len(data) + data + _CRLF)
        else:
            transport.write(data)
        self._sent += len(data)
        if self._writing_paused and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._write_resumed = waiter
            await waiter

    def _start_forwarding(
        self, backend: Upstream, params: list[tuple[bytes, bytes]], body: bool
    ) -> None:
        self._backend = backend
        assert self._route is not None
        backend.begin(self._route.encoded_params + self._conn_params, params, self, body)
        if self._backend is None:  # begin() failed and reported it
            return
        if self._writing_paused:
            backend.pause_reading()
        if not body:
            self._set_deadline(_BACKEND, self._server.response_timeout)
            return
        self._send_pending_body(backend)

    def _send_pending_body(self, backend: Upstream) -> None:
        """The backend is leased: send what body came meanwhile and read the rest."""
        pending = self._pending_body
        self._pending_body = None
        if self._expect_continue and not pending and not self._body_done:
            assert self._transport is not None
            self._transport.write(_CONTINUE)
        if pending:
            for data in pending:
                backend.send_body(data)
        if self._body_done:
            backend.end_body()
        else:
            self._set_deadline(_BODY, self._server.body_timeout)
        self._unpause(_PAUSE_ACQUIRE)

    def _on_body(self, data: bytes) -> None:
        self._body_received += len(data)
        if self._body_received > self._server.settings.max_body_size:
            self._request_error(413, "request body too large")
            return
        if self._backend is not None:
            self._backend.send_body(data)
        elif self._pending_body is not None:
            self._pending_body.append(data)
        # Else the request was already answered (an error): the body is dropped.

    def _on_body_end(self) -> None:
        if self._request is None:
            return
        if not self._body_done:
            self._body_done = True
            if self._backend is not None:
                self._backend.end_body()
        if self._kind == _BODY:
            self._set_deadline(_BACKEND, self._server.response_timeout)

    # -- ResponseSink: the backend side ------------------------------------------------------

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        request = self._request
        assert request is not None
        try:
            lines, length, has_date = filter_headers(headers)
        except BadBackendHead as exc:
            self.backend_error(BackendError(f"bad response head: {exc}"))
            return
        self._status = status
        if not body_allowed(status, self._method):
            if status == 101:  # (a tunnel's 101 goes to _open_tunnel, never here)
                self._status = 0
                self.backend_error(BackendError("101 Switching Protocols without a tunnel"))
                return
            framing = _NO_BODY
            if status == 204 and length is not None:
                # RFC 9110 8.6: no Content-Length in a 204 (304 and HEAD keep the app's).
                lines = [line for line in lines if not line.startswith(b"Content-Length:")]
                length = None
        elif length is not None:
            framing = _LENGTH
            self._remaining = length
        elif request.http_version == "1.1":
            framing = _CHUNKED_OUT
        else:
            framing = _CLOSE_DELIMITED
        self._framing = framing
        self._out_length = length
        head: list[bytes | memoryview] = [status_line(status, reason)]
        head += lines
        if not has_date:
            head.append(self._server.date_header)
        self._pending_head = head
        self._head_buffer = []
        self._deadline = self._server.now + self._server.response_timeout

    def backend_body(self, data: bytes | memoryview) -> None:
        self._deadline = self._server.now + self._server.response_timeout
        if not data:
            return  # (an empty chunk would end a chunked body)
        framing = self._framing
        if framing == _NO_BODY:
            if self._method == b"HEAD" and self._out_length is None:
                self._sent += len(data)  # counted for a computed Content-Length
            return
        if framing == _LENGTH:
            remaining = self._remaining
            if len(data) > remaining:
                data = data[:remaining]
                self._close_after = True  # the backend sent more than it declared
                if not data:
                    return
            self._remaining = remaining - len(data)
        self._sent += len(data)
        buffered = self._head_buffer
        if buffered is not None:
            buffered.append(data)
            return
        # Written out at the end of this read from the backend (backend_flush): one system call
        # for every piece that arrived together.
        out = self._body_out
        if out is None:
            self._body_out = [data]
        else:
            out.append(data)

    def backend_flush(self) -> None:
        if self._closed:
            return
        head = self._pending_head
        if head is None:
            if self._body_out is not None:
                self._write_body_out(None)
            return
        if self._framing == _NO_BODY and self._method == b"HEAD":
            return  # HEAD waits for the end, to count the body when no length was given
        self._write_head(head, False)

    def _write_body_out(self, tail: bytes | None) -> None:
        """Write the body pieces gathered during one backend read (and ``tail``), at once."""
        out = self._body_out or []
        self._body_out = None
        transport = self._transport
        assert transport is not None
        if out and self._framing == _CHUNKED_OUT:
            size = 0
            for piece in out:
                size += len(piece)
            if size:  # (a zero-size chunk would end the body)
                out.insert(0, b"%x\r\n" % size)
                out.append(_CRLF)
            else:
                out.clear()
        if tail is not None:
            out.append(tail)
        if len(out) == 1:
            transport.write(out[0])
        elif out:
            transport.writelines(out)

    def _write_head(self, head: list[bytes | memoryview], complete: bool) -> None:
        """Write the head and what body is buffered; ``complete``: that is the whole body."""
        transport = self._transport
        assert transport is not None
        buffered = self._head_buffer or []
        self._pending_head = None
        self._head_buffer = None
        framing = self._framing
        if complete and framing >= _CHUNKED_OUT:  # chunked or close-delimited
            # The whole body is here: a Content-Length beats chunked or close framing.
            framing = self._framing = _LENGTH
            self._remaining = 0
            head.append(b"Content-Length: %d\r\n" % self._sent)
        request = self._request
        assert request is not None
        if (
            self._close_after
            or framing == _CLOSE_DELIMITED
            or not request.keep_alive
            or not self._body_done
            or self._server.closing
        ):
            self._close_after = True
            head.append(_CONN_CLOSE)
        elif request.http_version == "1.0":
            head.append(_CONN_KEEP)
        if framing == _CHUNKED_OUT:
            head.append(_CHUNKED)
            head.append(_CRLF)
            for data in buffered:
                head += (b"%x\r\n" % len(data), data, _CRLF)
        elif framing == _NO_BODY:
            if self._method == b"HEAD" and self._out_length is None and self._sent:
                head.append(b"Content-Length: %d\r\n" % self._sent)
            head.append(_CRLF)
        else:
            head.append(_CRLF)
            head += buffered
        if self._sent > 65536:
            transport.writelines(head)  # a large first piece: no copy into one buffer
        else:
            transport.write(b"".join(head))

    def backend_end(self, reusable: bool) -> None:
        self._backend = None
        self._release(reusable)
        if self._closed:
            return
        head = self._pending_head
        if head is not None:
            self._write_head(head, True)
        elif self._framing == _CHUNKED_OUT:
            self._write_body_out(_LAST_CHUNK)
        elif self._body_out is not None:
            self._write_body_out(None)
        if self._framing == _LENGTH and self._remaining:
            # The backend ended before sending what its Content-Length promised.
            logger.warning(
                "%s: response ended %d bytes short of its Content-Length",
                self._route.name if self._route else "?",
                self._remaining,
            )
            self._close_after = True
        self._finish_request()

    def backend_started(self) -> None:
        """The request, queued behind others on its worker's connection, is now served."""
        lease = self._lease
        if lease is not None:
            lease.began()
        if self._kind == _BACKEND:
            self._deadline = self._server.now + self._server.response_timeout

    def backend_error(self, exc: BackendError) -> None:
        lease = self._lease
        backend = self._backend
        self._backend = None
        if backend is not None:
            backend.abort()
        self._release(False)
        if (
            type(exc) is BackendNotStarted
            and not self._closed
            and self._params is not None
            and self._route is not None
            and self._status == 0
            and (exc.withdrawn or self._retries < _NOT_STARTED_RETRIES)
        ):
            # Queued on a worker connection that closed before serving it, or withdrawn from
            # behind a slow request: the app never saw it, so it goes to the pool again
            # (first in line: another worker, or this one's replacement).
            self._retries += 1
            self._lease_for(self._route, self._params, False)
            return
        name = self._route.name if self._route else "?"
        request = self._request
        what = f"{request.method.decode('latin-1')} {request.target[:200]!r}" if request else "-"
        if self._closed:
            logger.error("%s: %s (client already gone): %s", name, what, exc)
            return
        timed_out = lease is not None and lease.timed_out
        if self._status == 0 or self._pending_head is not None:
            self._pending_head = None
            self._head_buffer = None
            self._status = 0
            if timed_out:
                # The pool cut a request that ran past the app's request timeout.
                logger.error("%s: %s answered 504: it ran past the request timeout", name, what)
                self._respond_error(504)
                return
            logger.error("%s: %s answered 502: %s", name, what, exc)
            self._respond_error(502)
        else:
            logger.error("%s: %s response cut short: %s", name, what, exc)
            self._abort()

    def backend_pause_writing(self) -> None:
        self._pause(_PAUSE_BACKEND)

    def backend_resume_writing(self) -> None:
        self._unpause(_PAUSE_BACKEND)

    # -- the tunnel after 101 Switching Protocols --------------------------------------------

    def _open_tunnel(self, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The backend switched protocols: send the 101, then relay raw bytes both ways."""
        request = self._request
        transport = self._transport
        if self._closed or transport is None or request is None:
            return
        server = self._server
        transport.write(
            forward.switching_head(reason, headers, request.upgrade or b"", server.date_header)
        )
        self._status = 101
        self._framing = _NO_BODY
        self._set_deadline(_TUNNEL, server.tunnel_idle_timeout)
        self._held = 0
        self._unpause(_PAUSE_PIPELINE)
        # What the client sent after its request head, before the 101 (held by the parser).
        early = self._parser.trailing_data
        if early and self._backend is not None:
            self._backend.send_body(early)

    def _tunnel_write(self, data: bytes | memoryview) -> None:
        self._deadline = self._server.now + self._server.tunnel_idle_timeout
        self._sent += len(data)
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    def _end_tunnel(self, exc: BackendError | None) -> None:
        """The backend ended the tunnel (or failed, or it idled out): close the client's side
        once what was written has left."""
        backend = self._backend
        self._backend = None
        if backend is not None:
            backend.abort()
        self._release(False)
        if exc is not None:
            logger.info(
                "%s: tunnel ended by the backend: %s", self._route.name if self._route else "?", exc
            )
        if self._closed:
            return
        self._close_after = True
        self._finish_request()

    # -- the end of a request ----------------------------------------------------------------

    def _release(self, reusable: bool) -> None:
        lease = self._lease
        if lease is not None:
            self._lease = None
            assert self._route is not None
            self._route.pool.release(lease, reusable)

    def _log_access(self) -> None:
        """The request's access-log line (once per request)."""
        server = self._server
        request = self._request
        if server.access_log and request is not None and not self._logged:
            self._logged = True
            fields = (
                self.remote_host,
                request.method,
                request.target,
                request.http_version.encode("ascii"),
                self._status,
                self._sent,
                self._referer,
                self._agent,
            )
            if server.access_write is not None:
                server.access_write(accesslog.format_line(*fields))
            else:
                accesslog.log_request(*fields)

    def _finish_request(self) -> None:
        server = self._server
        self._log_access()
        if not self._body_done:
            self._linger()
            return
        if self._close_after:
            self._close()
            return
        self._reset_request()
        self._held = 0
        self._unpause(_PAUSE_PIPELINE)
        self._got_bytes = False
        self._set_deadline(_IDLE, server.keepalive_timeout)
        if server.closing:
            self._close()
            return
        self._parser.start_next()
        self._drain()

    def _respond_error(
        self,
        status: int,
        *,
        retry_after: bool = False,
        retry_seconds: float | None = None,
        message: str | None = None,
        details: str | None = None,
        refresh: int | None = None,
    ) -> None:
        """Answer the current request with an error page, then close the connection.

        When a response head has already left, the connection is cut instead."""
        if self._closed:
            return
        if self._status and self._pending_head is None:
            backend = self._backend
            self._backend = None
            if backend is not None:
                backend.abort()
            self._release(False)
            self._abort()
            return
        self._pending_head = None
        self._head_buffer = None
        transport = self._transport
        assert transport is not None
        head_only = self._method == b"HEAD"
        extra: tuple[tuple[str, str], ...] = ()
        if retry_after:
            seconds = self._server.settings.retry_after
            if retry_seconds is not None:
                seconds = max(1, min(int(retry_seconds + 0.999), 3600))
            extra = (("Retry-After", str(seconds)),)
        if refresh is not None:
            extra += (("Cache-Control", "no-store"),)
        if message is None and details is None and not extra:
            page = errorpages.canned(status, head_only=head_only)
        else:
            page = errorpages.error_response(
                status,
                message=message,
                details=details,
                extra_headers=extra,
                head_only=head_only,
                refresh=refresh,
            )
        transport.write(page)
        self._status = status
        self._sent = 0 if head_only else len(page) - page.index(b"\r\n\r\n") - 4
        self._close_after = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._give_up_waiting()
        backend = self._backend
        if backend is not None:
            self._backend = None
            backend.abort()
            self._release(False)
        self._finish_request()

    def _request_error(self, status: int, reason: str) -> None:
        """The request could not be parsed: answer ``status`` (when nothing was sent yet)."""
        logger.info("%s:%d: bad request: %s", self.remote_host, self.remote_port, reason)
        if self._request is not None and (self._status or self._backend is not None):
            # A response is under way for this request: answer the error if its head has not
            # left yet, else cut the connection (the client sees an incomplete response).
            self._respond_error(status)
            return
        if self._request is None:
            # No request head: no access-log line with a request in it; answer and close.
            assert self._transport is not None
            self._transport.write(errorpages.canned(status))
            self._linger()
            return
        self._respond_error(status)

    # -- flow control, deadlines and closing -------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self._transport is not None and not self._closed:
            self._transport.pause_reading()
        self._paused |= reason

    def _unpause(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self._transport is not None and not self._closed:
                self._transport.resume_reading()

    def _set_deadline(self, kind: int, seconds: float) -> None:
        self._kind = kind
        self._deadline = self._server.now + seconds

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep: act on an expired deadline."""
        if self._closed or now < self._deadline or self._kind == _NONE:
            return
        kind = self._kind
        if kind in (_IDLE, _LINGER) or (kind == _HEAD and not self._got_bytes):
            self._close()
        elif kind == _HEAD:
            self._request_error(408, "request head not received in time")
        elif kind == _BODY:
            self._respond_error(408, message="The request body was not received in time.")
        elif kind == _TUNNEL:
            logger.info(
                "%s: tunnel idle for %g s: closed",
                self._route.name if self._route else "?",
                self._server.tunnel_idle_timeout,
            )
            self._end_tunnel(None)
        elif kind == _ACQUIRE:
            self._give_up_waiting()
            self._respond_error(503, retry_after=True, message="No application worker was free.")
        elif kind == _BACKEND:
            if self._writing_paused and self._status:
                logger.info("%s: client stopped reading the response", self.remote_host)
                self._abort()
                return
            name = self._route.name if self._route else "?"
            logger.error("%s: no response from the application in time", name)
            if self._status and self._pending_head is None:
                self._abort()
            else:
                self._pending_head = None
                self._status = 0
                self._respond_error(504)

    def shutdown(self) -> None:
        """The server is stopping: close now when idle, else after the request in flight. A
        tunnel has no end of its own to wait for: it ends now (its backend sees the connection
        close; a WebSocket app hears a disconnect)."""
        if self._request is None:
            self._close()
        elif self._kind == _TUNNEL:
            self._end_tunnel(None)

    def _linger(self) -> None:
        """Close after the response, but first read (and drop) what the client still sends for
        a while: closing with unread input makes the kernel send a reset, which can destroy the
        response before the client reads it."""
        transport = self._transport
        if self._closed or transport is None:
            return
        if not transport.can_write_eof():
            self._close()
            return
        transport.write_eof()
        self._request = None
        self._held = 0
        self._set_deadline(_LINGER, LINGER_SECONDS)
        if self._paused:
            self._paused = 0
            transport.resume_reading()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._kind = _NONE
            if self._transport is not None:
                self._transport.close()

    def _abort(self) -> None:
        self._closed = True
        self._kind = _NONE
        if self._transport is not None:
            self._transport.abort()

    @property
    def busy(self) -> bool:
        return self._request is not None

    def force_close(self) -> None:
        """The shutdown grace period is over: drop the connection, request or not."""
        if not self._closed:
            self._abort()


class _Tunnel:
    """The response sink of an Upgrade request that the route may tunnel.

    An ordinary answer passes through to the connection (the request stream, left open in case
    of a switch, is ended first). A 101 turns the connection into a byte tunnel: from then on the
    backend's bytes are written to the client as they come, the client's go to the backend's
    ``send_body``, and either side's end closes both. Back-pressure is the connection's own.
    """

    __slots__ = ("_conn", "_open")

    def __init__(self, conn: HTTPConnection) -> None:
        self._conn = conn
        self._open = False

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        conn = self._conn
        if status == 101:
            self._open = True
            conn._open_tunnel(reason, headers)
            return
        backend = conn._backend
        if backend is not None:
            backend.end_body()
        conn.backend_head(status, reason, headers)

    def backend_body(self, data: bytes | memoryview) -> None:
        if self._open:
            self._conn._tunnel_write(data)
        else:
            self._conn.backend_body(data)

    def backend_flush(self) -> None:
        if not self._open:
            self._conn.backend_flush()

    def backend_end(self, reusable: bool) -> None:
        if self._open:
            self._conn._end_tunnel(None)
        else:
            self._conn.backend_end(reusable)

    def backend_error(self, exc: BackendError) -> None:
        if self._open:
            self._conn._end_tunnel(exc)
        else:
            self._conn.backend_error(exc)

    def backend_pause_writing(self) -> None:
        self._conn.backend_pause_writing()

    def backend_resume_writing(self) -> None:
        self._conn.backend_resume_writing()

    def backend_started(self) -> None:
        self._conn.backend_started()
