"""One HTTP/1.1 client connection: transport, parsing, framing, keep-alive, lingering, deadlines.

``HTTPConnection`` is an ``asyncio.Protocol``. It feeds the sans-IO request parser and hands each
request (one at a time, in order: pipelined bytes wait in the parser) to its ``Exchange``
(``front/exchange.py``: route, lease, relay), for which it is the ``ClientStream``: it answers
``Expect: 100-continue`` when the body is wanted, answers errors, switches to a tunnel after a
101, and decides between keep-alive and close. Its ``response`` (``Http1Response``,
``front/http1response.py``) frames what the exchange relays (Content-Length, chunked,
close-delimited, HEAD).

Back-pressure both ways: the client transport stops reading while the backend's send buffer is
full (and while no backend is leased yet), and the backend stops being read while the client's
send buffer is above its high-water mark. Memory per connection is bounded by one read each way.

Timeouts are deadlines on a coarse clock that the server sweeps twice a second: no timer object
per request. Their kinds are ``stream.Deadline``; what each does on expiry is ``_EXPIRED``.

Errors: a framing error in the request is answered with its 4xx status and the connection is
closed (lingering: what the client still sends is read and dropped for a while, so that it reads
the answer rather than a reset).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Final, cast

from corral.front import errorpages
from corral.front.context import FrontContext
from corral.front.exchange import Exchange
from corral.front.http1response import Http1Response
from corral.front.peers import Local
from corral.front.requestlog import record_request
from corral.front.stream import (
    LINGER_BYTES,
    LINGER_SECONDS,
    Deadline,
    StreamDeadlines,
    TunnelPeer,
)
from corral.protocol.http1.errors import HTTPProtocolError
from corral.protocol.http1.events import NEED_DATA, PAUSED, Body, EndOfMessage, Request
from corral.protocol.http1.writer import CONTINUE

logger = logging.getLogger("corral.front")

# Deadline kinds as module constants (compared on the hot path).
_NONE: Final = Deadline.NONE
_HEAD: Final = Deadline.HEAD
_IDLE: Final = Deadline.IDLE
_BODY: Final = Deadline.BODY
_BACKEND: Final = Deadline.BACKEND
_LINGER: Final = Deadline.LINGER
_TUNNEL: Final = Deadline.TUNNEL

#: A reason of this protocol's own to stop reading (beside ``stream.PAUSE_*``): pipelined
#: requests held past ``_HELD_PIPELINE_MAX`` bytes.
_PAUSE_PIPELINE: Final = 4
_HELD_PIPELINE_MAX: Final = 64 * 1024


class HTTPConnection(StreamDeadlines, asyncio.Protocol):
    """One client connection over HTTP/1.1; the ``ClientStream`` of its exchanges (one at a
    time), whose ``response`` is its ``Http1Response``."""

    __slots__ = (
        "_body_received",
        "_exchange",
        "_expect_continue",
        "_got_bytes",
        "_held",
        "_local",
        "_logged",
        "_parser",
        "_paused",
        "_request",
        "_server",
        "_started",
        "_transport",
        "_tunnel",
        "body_complete",
        "closed",
        "conn_params",
        "loopback",
        "remote_host",
        "remote_port",
        "response",
        "server_port",
        "tls",
        "trusted",
        "writing_paused",
    )
    # (``connection_lost`` lets go of both; a compiled build allows ``del`` only of these)
    __deletable__ = ("_exchange", "response")

    def __init__(self, server: FrontContext, local: Local | None = None) -> None:
        self._server = server
        #: The listener's side of the connection, when the listener knows it (``front.peers``).
        self._local = local
        self._parser = server.new_parser()
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self._paused = 0
        self.writing_paused = False
        #: When the current deadline (of kind ``_kind``) expires, on the server's clock.
        self.deadline = 0.0
        self._kind = _NONE
        self._got_bytes = False
        self._held = 0
        self.response = Http1Response(self, server)
        self._exchange = Exchange(server, self)
        # The request in progress; what is per request is set when its head arrives.
        self._request: Request | None = None
        self.body_complete = True
        self._body_received = 0
        #: The body's minimum rate (``read_body``): by ``_rate_base + received * _rate_step``
        #: (server clock) ``received`` body bytes must have come.
        self._rate_base = 0.0
        self._rate_step = 0.0
        self._expect_continue = False
        self._logged = False
        self._started = 0.0
        self._tunnel: TunnelPeer | None = None

    # -- asyncio.Protocol: the client side ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        self.response.transport = transport
        server = self._server
        transport.set_write_buffer_limits(high=server.settings.write_buffer_high)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            host = str(peer[0])
            self.remote_port = port = int(peer[1])
        else:  # a Unix socket listener
            host = "127.0.0.1"
            self.remote_port = port = 0
        # What the two addresses tell, each worked out once per address (front/peers.py).
        peers = server.peers
        client = peers.client(host)
        self.remote_host = client.host
        self.loopback = client.loopback
        self.trusted = client.trusted
        local = self._local
        if local is None:  # (over TLS, after sniffing, or a wildcard listener: ask)
            local = self._local = peers.local_of(transport)
        # An https listener's connection (its handshake is done): the scheme its requests
        # carry to the application (front/tls.py).
        self.tls = local.tls
        self.server_port = local.port
        self.conn_params = peers.params(client, port, local)
        self._kind = _HEAD
        self.deadline = server.now + server.header_timeout
        server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # No transport <-> protocol cycle left for the GC to find.
        self._transport = self.response.transport = None
        if self._request is not None and not self._logged:
            # A tunnel the client closed ends here (101, bytes sent: an access-log line too);
            # a request cut short is counted (its status 0 if no head left).
            self._request_done(access=self._kind == _TUNNEL)
        self._server.connection_closed(self)
        self._parser.release()  # (no cycle left for the collector: front/parsing.py)
        self._exchange.drop()
        if self.response.spill_file is not None:  # (its file and share of the disk: now)
            self.response.close_spill()
        # The exchange and the response point back at this connection: let go of both, so that
        # the three are freed by reference counting rather than left to the cycle collector.
        # Nothing calls a connection once it is lost (its exchange has just been dropped).
        del self._exchange, self.response

    def data_received(self, data: bytes) -> None:
        kind = self._kind
        if kind >= _LINGER:  # (lingering or tunnelling: not HTTP; see the Deadline table)
            if kind == _TUNNEL:
                self.deadline = self._server.now + self._server.tunnel_idle_timeout
                if self._tunnel is not None:
                    self._tunnel.from_client(data)
                return
            self._held += len(data)
            if self._held > LINGER_BYTES:
                self.close()
            return
        if kind == _IDLE:
            self.set_deadline(_HEAD, self._server.header_timeout)
        elif kind == _BODY:
            # The next byte within body_timeout, and the body as a whole at min_body_rate.
            server = self._server
            gap = server.now + server.body_timeout
            due = self._rate_base + (self._body_received + len(data)) * self._rate_step
            self.deadline = due if due < gap else gap
        self._got_bytes = True
        if self._request is not None and self.body_complete:
            # Pipelined bytes behind a request in flight: the parser holds them. Bound that.
            self._held += len(data)
            if self._held > _HELD_PIPELINE_MAX:
                self.pause_reading(_PAUSE_PIPELINE)
        self._parser.receive_data(data)
        self._drain()

    def eof_received(self) -> bool | None:
        if self._kind >= _LINGER:
            if self._kind == _TUNNEL and self._tunnel is not None and self._tunnel.client_done():
                return True
            self.close()
            return None
        self._parser.receive_data(b"")
        self._drain()
        # Keep the transport open for writing while a response is still to come.
        return self._request is not None and not self.closed

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._exchange.client_paused()

    def resume_writing(self) -> None:
        self.writing_paused = False
        response = self.response
        waiter = response.write_resumed
        if waiter is not None:
            response.write_resumed = None
            if not waiter.done():
                waiter.set_result(None)
        if self._kind == _BACKEND:
            self.deadline = self._server.now + self._server.response_timeout
        if response.spill_file is not None:  # a spilled response: the client drains it
            if not response.drain_spill():
                return  # (slow again: the rest waits for the next resume)
            close = response.finish_pending
            if close is not None:  # the backend's part ended meanwhile: so does the exchange
                response.finish_pending = None
                self.finish(close)
                return
        self._exchange.client_resumed()

    # -- requests ----------------------------------------------------------------------------

    def _drain(self) -> None:
        parser = self._parser
        while not self.closed:
            try:
                event, ended = parser.next_event_and_end()
            except HTTPProtocolError as exc:
                self.reject(exc.status_hint, exc.reason)
                return
            event_type = type(event)
            if event_type is Body:
                self._on_body(event.data)  # type: ignore[union-attr]
            elif event_type is Request:
                self._on_request(event)  # type: ignore[arg-type]
                if ended:  # its EndOfMessage came with it: the parser is paused
                    if not self.closed and (not self.body_complete or self._kind == _BODY):
                        self._on_body_end()
                    return
            elif event_type is EndOfMessage:
                self._on_body_end()
            elif event is NEED_DATA or event is PAUSED:
                return
            else:  # ConnectionClosed: the client is done with this connection
                if self._request is None:
                    self.close()
                return

    def _on_request(self, request: Request) -> None:
        server = self._server
        self._request = request
        response = self.response
        response.request = request
        response.method = method = request.method
        self._held = 0
        self._kind = _BACKEND
        self.deadline = server.now + server.response_timeout
        length = request.content_length
        has_body = request.chunked or bool(length)
        self.body_complete = not has_body
        self._expect_continue = request.expect_continue and has_body
        self._body_received = 0
        self._logged = False
        self._started = perf_counter()
        self._tunnel = None
        if length is not None and length > server.settings.max_body_size:
            self.respond_error(413)
            return
        if method == b"CONNECT":
            # Corral is not a forward proxy; the tunnel's bytes are not HTTP (RFC 9110 15.6.2).
            self.respond_error(501, message="CONNECT is not supported by this server.")
            return
        self._exchange.start(request, has_body)

    def _on_body(self, data: bytes) -> None:
        self._body_received += len(data)
        if self._body_received > self._server.settings.max_body_size:
            self.reject(413, "request body too large")
            return
        self._exchange.body(data)

    def _on_body_end(self) -> None:
        if self._request is None:
            return
        if not self.body_complete:
            self.body_complete = True
            self._exchange.body_end()
        if self._kind == _BODY:
            self.set_deadline(_BACKEND, self._server.response_timeout)

    # -- ClientStream: deadlines, reading --------------------------------------------------------

    def pause_reading(self, reason: int) -> None:
        if not self._paused and self._transport is not None and not self.closed:
            self._transport.pause_reading()
        self._paused |= reason

    def resume_reading(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self._transport is not None and not self.closed:
                self._transport.resume_reading()

    def want_body(self) -> None:
        if self._expect_continue and not self.body_complete:
            assert self._transport is not None
            self._transport.write(CONTINUE)

    # -- ClientStream: the tunnel after 101 Switching Protocols -------------------------------

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], tunnel: TunnelPeer
    ) -> bytes:
        if self.closed or self._transport is None or self._request is None:
            return b""
        self.response.switching(reason, headers)
        self._tunnel = tunnel
        self.set_deadline(_TUNNEL, self._server.tunnel_idle_timeout)
        self._held = 0
        self.resume_reading(_PAUSE_PIPELINE)
        # What the client sent after its request head, before the 101 (held by the parser).
        return self._parser.trailing_data

    # -- the end of a request ----------------------------------------------------------------

    def _request_done(self, access: bool = True) -> None:
        """Once per request: count it (its application's ``RequestStats``, else the server's)
        and write its access-log line."""
        request = self._request
        if request is None or self._logged:
            return
        self._logged = True
        exchange = self._exchange
        response = self.response
        record_request(
            self._server,
            exchange,
            request,
            response.status,
            response.sent,
            self._body_received,
            self._started,
            (exchange.client or self.remote_host) if self.trusted else self.remote_host,
            access,
        )

    def finish(self, close: bool) -> None:
        """The exchange is over: log it, then linger, close, or read the next request."""
        server = self._server
        response = self.response
        if response.spill_file is not None:
            # The response waits on disk for the client: the exchange ends once it is sent
            # (``resume_writing``).
            response.finish_pending = close
            return
        if close:
            response.close_after = True
        self._request_done()
        if not self.body_complete:
            self._linger()
            return
        if response.close_after:
            self.close()
            return
        self._request = None
        self.body_complete = True
        response.reset()
        self._exchange.reset()
        self._held = 0
        if self._paused & _PAUSE_PIPELINE:
            self.resume_reading(_PAUSE_PIPELINE)
        self._got_bytes = False
        self._kind = _IDLE
        self.deadline = server.now + server.keepalive_timeout
        if server.closing:
            self.close()
            return
        if self._parser.start_next():
            self._drain()

    def respond_error(
        self,
        status: int,
        *,
        retry_after: bool = False,
        retry_seconds: float | None = None,
        message: str | None = None,
        details: str | None = None,
        refresh: int | None = None,
        reference: str | None = None,
    ) -> None:
        """Answer the current request with an error page, then close the connection.

        When a response head has already left, the connection is cut instead."""
        if self.closed:
            return
        if self.response.head_sent:
            self._exchange.drop()
            self.abort()
            return
        self.response.error_page(
            status, retry_after, retry_seconds, message, details, refresh, reference
        )
        self._exchange.drop()
        self.finish(True)

    def reject(self, status: int, reason: str) -> None:
        """The request could not be parsed: answer ``status`` (when nothing was sent yet)."""
        logger.info("%s:%d: bad request: %s", self.remote_host, self.remote_port, reason)
        self._server.stats.protocol_error(status)
        if self._request is None:
            # No request head: no access-log line with a request in it; answer and close.
            assert self._transport is not None
            self._transport.write(errorpages.canned(status))
            self._linger()
            return
        # (A response under way for this request: the error is answered if its head has not
        # left yet, else the connection is cut and the client sees an incomplete response.)
        self.respond_error(status)

    # -- deadlines, shutting down and closing -----------------------------------------------------

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep: act on an expired deadline (``_EXPIRED``)."""
        if self.closed or now < self.deadline or self._kind == _NONE:
            return
        _EXPIRED[self._kind](self)

    def shutdown(self) -> None:
        """The server is stopping: close now when idle, else after the request in flight. A
        tunnel has no end of its own to wait for: it ends now (its backend sees the connection
        close; a WebSocket app hears a disconnect)."""
        if self._request is None:
            self.close()
        elif self._kind == _TUNNEL and self._tunnel is not None:
            self._tunnel.end(None)

    def _linger(self) -> None:
        """Close after the response, but first read (and drop) what the client still sends for
        a while: closing with unread input makes the kernel send a reset, which can destroy the
        response before the client reads it."""
        transport = self._transport
        if self.closed or transport is None:
            return
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self._request = None
        self._held = 0
        self.set_deadline(_LINGER, LINGER_SECONDS)
        if self._paused:
            self._paused = 0
            transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._kind = _NONE
            if self._transport is not None:
                self._transport.close()

    def abort(self) -> None:
        self.closed = True
        self._kind = _NONE
        if self._transport is not None:
            self._transport.abort()

    @property
    def busy(self) -> bool:
        return self._request is not None

    def force_close(self) -> None:
        """The shutdown grace period is over: drop the connection, request or not."""
        if not self.closed:
            self.abort()


# -- what an expired deadline does, by kind ---------------------------------------------------


def _head_expired(conn: HTTPConnection) -> None:
    if conn._got_bytes:
        conn.reject(408, "request head not received in time")
    else:
        conn.close()  # nothing came: a silent close


def _body_expired(conn: HTTPConnection) -> None:
    logger.info(
        "%s:%d: request body too slow (%d bytes received): 408",
        conn.remote_host,
        conn.remote_port,
        conn._body_received,
    )
    conn.respond_error(408, message="The request body was not received in time.")


def _backend_expired(conn: HTTPConnection) -> None:
    response = conn.response
    if conn.writing_paused and response.status:
        logger.info("%s: client stopped reading the response", conn.remote_host)
        conn.abort()
        return
    logger.error("%s: no response from the application in time", conn._exchange.name)
    conn._exchange.give_up(_BACKEND)  # (504, or a cut response; the worker is retired)


def _tunnel_expired(conn: HTTPConnection) -> None:
    logger.info(
        "%s: tunnel idle for %g s: closed",
        conn._exchange.name,
        conn._server.tunnel_idle_timeout,
    )
    if conn._tunnel is not None:
        conn._tunnel.end(None)


def _acquire_expired(conn: HTTPConnection) -> None:
    conn._exchange.give_up()  # (503: no worker was free in time)


#: The deadline table: what the sweep does when a deadline of each kind has passed (NONE never
#: gets here).
_EXPIRED: dict[Deadline, Callable[[HTTPConnection], None]] = {
    Deadline.HEAD: _head_expired,
    Deadline.IDLE: HTTPConnection.close,
    Deadline.BODY: _body_expired,
    Deadline.BACKEND: _backend_expired,
    Deadline.LINGER: HTTPConnection.close,
    Deadline.TUNNEL: _tunnel_expired,
    Deadline.ACQUIRE: _acquire_expired,
}
