"""One HTTP/1.1 client connection: transport, parsing, framing, keep-alive, lingering, deadlines.

``HTTPConnection`` is an ``asyncio.Protocol``. It feeds the sans-IO request parser and hands each
request (one at a time, in order: pipelined bytes wait in the parser) to its ``Exchange``
(``front/exchange.py``: route, lease, relay), for which it is the ``ClientStream``: it frames the
response the exchange relays (Content-Length, chunked, close-delimited, HEAD), answers
``Expect: 100-continue`` when the body is wanted, writes error pages, switches to a tunnel after a
101, and decides between keep-alive and close.

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
from typing import cast

from corral.front import accesslog, errorpages
from corral.front.cgienv import HOP_BY_HOP
from corral.front.context import FrontContext
from corral.front.exchange import Exchange
from corral.front.proxy import body_allowed, filter_headers
from corral.front.stream import Deadline, TunnelPeer
from corral.protocol.http1.errors import HTTPProtocolError
from corral.protocol.http1.events import NEED_DATA, PAUSED, Body, EndOfMessage, Request
from corral.protocol.http1.writer import (
    CHUNKED,
    CONN_CLOSE,
    CONN_KEEP,
    CONTINUE,
    CRLF,
    LAST_CHUNK,
    chunk,
    chunk_size,
    status_line,
    switching_head,
)

logger = logging.getLogger("corral.front")

# Deadline kinds as module constants (compared on the hot path).
_NONE = Deadline.NONE
_HEAD = Deadline.HEAD
_IDLE = Deadline.IDLE
_BODY = Deadline.BODY
_BACKEND = Deadline.BACKEND
_LINGER = Deadline.LINGER
_TUNNEL = Deadline.TUNNEL

#: Lingering close: how long, and how many bytes at most, to read and drop after a response
#: that ends a connection while the client may still be sending (so that the client reads the
#: response instead of a reset, like nginx's lingering_close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024

#: A reason of this protocol's own to stop reading (beside ``stream.PAUSE_*``): pipelined
#: requests held past ``_HELD_PIPELINE_MAX`` bytes.
_PAUSE_PIPELINE = 4
_HELD_PIPELINE_MAX = 64 * 1024

# Response framing (see proxy.py): plain ints, compared on the hot path.
_NO_BODY = 0  # HEAD, 1xx, 204, 304
_LENGTH = 1  # Content-Length
_CHUNKED_OUT = 2  # Transfer-Encoding: chunked
_CLOSE_DELIMITED = 3  # HTTP/1.0 without a length: the body ends with the connection


class HTTPConnection(asyncio.Protocol):
    """One client connection over HTTP/1.1; the ``ClientStream`` of its exchanges."""

    __slots__ = (
        "__weakref__",
        "_body_done",
        "_body_out",
        "_body_received",
        "_close_after",
        "_deadline",
        "_exchange",
        "_expect_continue",
        "_framing",
        "_got_bytes",
        "_head_buffer",
        "_held",
        "_kind",
        "_logged",
        "_method",
        "_out_length",
        "_parser",
        "_paused",
        "_pending_head",
        "_remaining",
        "_request",
        "_sent",
        "_server",
        "_transport",
        "_tunnel",
        "_write_resumed",
        "closed",
        "conn_params",
        "loopback",
        "remote_host",
        "remote_port",
        "server_port",
        "status",
        "writing_paused",
    )

    def __init__(self, server: FrontContext) -> None:
        self._server = server
        self._parser = server.new_parser()
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self._paused = 0
        self.writing_paused = False
        self._write_resumed: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._kind = _NONE
        self._got_bytes = False
        self._held = 0
        self._exchange = Exchange(server, self)
        self._reset_request()

    def _reset_request(self) -> None:
        self._request: Request | None = None
        self._method = b""
        self._body_done = True
        self._body_received = 0
        self._expect_continue = False
        self._pending_head: list[bytes | memoryview] | None = None
        self._head_buffer: list[bytes | memoryview] | None = None
        self._body_out: list[bytes | memoryview] | None = None
        self._framing = _NO_BODY
        self._out_length: int | None = None
        self._remaining = 0
        self._close_after = False
        self.status = 0
        self._sent = 0
        self._logged = False
        self._tunnel: TunnelPeer | None = None

    # -- asyncio.Protocol: the client side -----------------------------------------------------

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
        self.conn_params = server.connection_params(
            self.remote_host, self.remote_port, server_addr, self.server_port
        )
        self._set_deadline(_HEAD, server.header_timeout)
        server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None  # no transport <-> protocol cycle left for the GC to find
        if self._kind == _TUNNEL:
            self._log_access()  # (a tunnel the client closed ends here: 101, bytes sent)
        self._server.connection_closed(self)
        self._exchange.drop()

    def data_received(self, data: bytes) -> None:
        kind = self._kind
        if kind >= _LINGER:
            if kind == _TUNNEL:
                self._deadline = self._server.now + self._server.tunnel_idle_timeout
                if self._tunnel is not None:
                    self._tunnel.from_client(data)
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
                self.pause_reading(_PAUSE_PIPELINE)
        self._parser.receive_data(data)
        self._drain()

    def eof_received(self) -> bool | None:
        if self._kind >= _LINGER:
            if self._kind == _TUNNEL and self._tunnel is not None and self._tunnel.client_done():
                return True
            self._close()
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
        waiter = self._write_resumed
        if waiter is not None:
            self._write_resumed = None
            if not waiter.done():
                waiter.set_result(None)
        if self._kind == _BACKEND:
            self._deadline = self._server.now + self._server.response_timeout
        self._exchange.client_resumed()

    # -- requests ------------------------------------------------------------------------------

    def _drain(self) -> None:
        parser = self._parser
        while not self.closed:
            try:
                event = parser.next_event()
            except HTTPProtocolError as exc:
                self.reject(exc.status_hint, exc.reason)
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
        if not self._body_done:
            self._body_done = True
            self._exchange.body_end()
        if self._kind == _BODY:
            self._set_deadline(_BACKEND, self._server.response_timeout)

    # -- ClientStream: facts, deadlines, reading -----------------------------------------------

    @property
    def head_sent(self) -> bool:
        return self.status != 0 and self._pending_head is None

    @property
    def body_complete(self) -> bool:
        return self._body_done

    def set_deadline(self, kind: Deadline, seconds: float) -> None:
        self._kind = kind
        self._deadline = self._server.now + seconds

    _set_deadline = set_deadline

    def extend_deadline(self, kind: Deadline, seconds: float) -> None:
        if self._kind == kind:
            self._deadline = self._server.now + seconds

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
        if self._expect_continue and not self._body_done:
            assert self._transport is not None
            self._transport.write(CONTINUE)

    # -- ClientStream: the response, framed ----------------------------------------------------

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        request = self._request
        assert request is not None
        lines, length, has_date = filter_headers(headers)  # (raises BadBackendHead)
        self.status = status
        if not body_allowed(status, self._method):
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

    def response_body(self, data: bytes | memoryview) -> None:
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
        # Written out at the end of this read from the backend (response_flush): one system
        # call for every piece that arrived together.
        out = self._body_out
        if out is None:
            self._body_out = [data]
        else:
            out.append(data)

    def response_flush(self) -> None:
        if self.closed:
            return
        head = self._pending_head
        if head is None:
            if self._body_out is not None:
                self._write_body_out(None)
            return
        if self._framing == _NO_BODY and self._method == b"HEAD":
            return  # HEAD waits for the end, to count the body when no length was given
        self._write_head(head, False)

    def response_end(self) -> None:
        head = self._pending_head
        if head is not None:
            self._write_head(head, True)
        elif self._framing == _CHUNKED_OUT:
            self._write_body_out(LAST_CHUNK)
        elif self._body_out is not None:
            self._write_body_out(None)
        if self._framing == _LENGTH and self._remaining:
            # The backend ended before sending what its Content-Length promised.
            logger.warning(
                "%s: response ended %d bytes short of its Content-Length",
                self._exchange.name,
                self._remaining,
            )
            self._close_after = True
        self._finish_request()

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
                out.insert(0, chunk_size(size))
                out.append(CRLF)
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
            head.append(CONN_CLOSE)
        elif request.http_version == "1.0":
            head.append(CONN_KEEP)
        if framing == _CHUNKED_OUT:
            head.append(CHUNKED)
            head.append(CRLF)
            for data in buffered:
                head += (chunk_size(len(data)), data, CRLF)
        elif framing == _NO_BODY:
            if self._method == b"HEAD" and self._out_length is None and self._sent:
                head.append(b"Content-Length: %d\r\n" % self._sent)
            head.append(CRLF)
        else:
            head.append(CRLF)
            head += buffered
        if self._sent > 65536:
            transport.writelines(head)  # a large first piece: no copy into one buffer
        else:
            transport.write(b"".join(head))

    # -- ClientStream: a response the front makes, piece by piece ------------------------------

    def stream_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        request = self._request
        assert request is not None and self._transport is not None
        chunked = request.http_version != "1.0"
        self._framing = _CHUNKED_OUT if chunked else _CLOSE_DELIMITED
        head = [status_line(status, b"")]
        head += (name + b": " + value + CRLF for name, value in fields)
        head += (CHUNKED if chunked else b"", CONN_CLOSE, CRLF)
        self.status = status
        self._close_after = True
        self._transport.write(b"".join(head))

    async def stream_piece(self, data: bytes) -> None:
        transport = self._transport
        if self.closed or transport is None or not data:
            return
        if self._framing == _CHUNKED_OUT:
            transport.write(chunk(data))
        else:
            transport.write(data)
        self._sent += len(data)
        if self.writing_paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._write_resumed = waiter
            await waiter

    def stream_end(self) -> None:
        if self._framing == _CHUNKED_OUT and not self.closed and self._transport is not None:
            self._transport.write(LAST_CHUNK)

    # -- ClientStream: the tunnel after 101 Switching Protocols --------------------------------

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], tunnel: TunnelPeer
    ) -> bytes:
        request = self._request
        transport = self._transport
        if self.closed or transport is None or request is None:
            return b""
        server = self._server
        transport.write(
            switching_head(reason, headers, request.upgrade or b"", server.date_header, HOP_BY_HOP)
        )
        self._tunnel = tunnel
        self.status = 101
        self._framing = _NO_BODY
        self._set_deadline(_TUNNEL, server.tunnel_idle_timeout)
        self._held = 0
        self.resume_reading(_PAUSE_PIPELINE)
        # What the client sent after its request head, before the 101 (held by the parser).
        return self._parser.trailing_data

    def tunnel_write(self, data: bytes | memoryview) -> None:
        self._deadline = self._server.now + self._server.tunnel_idle_timeout
        self._sent += len(data)
        if not self.closed and self._transport is not None:
            self._transport.write(data)

    # -- the end of a request ------------------------------------------------------------------

    def _log_access(self) -> None:
        """The request's access-log line (once per request)."""
        server = self._server
        request = self._request
        if server.access_log and request is not None and not self._logged:
            self._logged = True
            exchange = self._exchange
            fields = (
                self.remote_host,
                request.method,
                request.target,
                request.http_version.encode("ascii"),
                self.status,
                self._sent,
                exchange.referer,
                exchange.agent,
            )
            if server.access_write is not None:
                server.access_write(accesslog.format_line(*fields))
            else:
                accesslog.log_request(*fields)

    def finish(self, close: bool) -> None:
        if close:
            self._close_after = True
        self._finish_request()

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
        self._exchange.reset()
        self._held = 0
        self.resume_reading(_PAUSE_PIPELINE)
        self._got_bytes = False
        self._set_deadline(_IDLE, server.keepalive_timeout)
        if server.closing:
            self._close()
            return
        self._parser.start_next()
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
    ) -> None:
        """Answer the current request with an error page, then close the connection.

        When a response head has already left, the connection is cut instead."""
        if self.closed:
            return
        if self.status and self._pending_head is None:
            self._exchange.drop()
            self.abort()
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
        self.status = status
        self._sent = 0 if head_only else len(page) - page.index(b"\r\n\r\n") - 4
        self._close_after = True
        self._exchange.drop()
        self._finish_request()

    def reject(self, status: int, reason: str) -> None:
        """The request could not be parsed: answer ``status`` (when nothing was sent yet)."""
        logger.info("%s:%d: bad request: %s", self.remote_host, self.remote_port, reason)
        if self._request is None:
            # No request head: no access-log line with a request in it; answer and close.
            assert self._transport is not None
            self._transport.write(errorpages.canned(status))
            self._linger()
            return
        # (A response under way for this request: the error is answered if its head has not
        # left yet, else the connection is cut and the client sees an incomplete response.)
        self.respond_error(status)

    # -- deadlines, shutting down and closing --------------------------------------------------

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep: act on an expired deadline (``_EXPIRED``)."""
        if self.closed or now < self._deadline or self._kind == _NONE:
            return
        _EXPIRED[self._kind](self)

    def _head_expired(self) -> None:
        if self._got_bytes:
            self.reject(408, "request head not received in time")
        else:
            self._close()

    def _body_expired(self) -> None:
        self.respond_error(408, message="The request body was not received in time.")

    def _acquire_expired(self) -> None:
        self._exchange.give_up()

    def _tunnel_expired(self) -> None:
        logger.info(
            "%s: tunnel idle for %g s: closed",
            self._exchange.name,
            self._server.tunnel_idle_timeout,
        )
        if self._tunnel is not None:
            self._tunnel.end(None)

    def _backend_expired(self) -> None:
        if self.writing_paused and self.status:
            logger.info("%s: client stopped reading the response", self.remote_host)
            self.abort()
            return
        logger.error("%s: no response from the application in time", self._exchange.name)
        if self.status and self._pending_head is None:
            self.abort()
        else:
            self._pending_head = None
            self.status = 0
            self.respond_error(504)

    def shutdown(self) -> None:
        """The server is stopping: close now when idle, else after the request in flight. A
        tunnel has no end of its own to wait for: it ends now (its backend sees the connection
        close; a WebSocket app hears a disconnect)."""
        if self._request is None:
            self._close()
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


#: What an expired deadline does, by kind (NONE never gets here).
_EXPIRED: dict[Deadline, Callable[[HTTPConnection], None]] = {
    Deadline.HEAD: HTTPConnection._head_expired,
    Deadline.IDLE: HTTPConnection._close,
    Deadline.BODY: HTTPConnection._body_expired,
    Deadline.BACKEND: HTTPConnection._backend_expired,
    Deadline.LINGER: HTTPConnection._close,
    Deadline.TUNNEL: HTTPConnection._tunnel_expired,
    Deadline.ACQUIRE: HTTPConnection._acquire_expired,
}
