"""HTTP/1.1 client: an asyncio Protocol to a backend that speaks HTTP (Node.js, any server on a
port), implementing the same lease contract as the FastCGI client (``PooledUpstream``).

One request at a time per connection, kept alive between requests unless the backend says
otherwise (``Connection: close``, HTTP/1.0, a body delimited by the close). The front builds the
request head itself (``corral.front.forward``) and passes it to ``begin()`` as ``static``; this
module frames the body (raw for a Content-Length, chunked for a body the client sent chunked),
reads the response head (``corral.protocol.http1.response``), skips interim 1xx responses, and
delivers the body de-framed as views of what was read, so nothing is held beyond one read.
Back-pressure both ways as in ``backends.fastcgi``.

An Upgrade request (``BODY_TUNNEL``) answered with 101 turns the connection into a raw byte pipe:
``send_body`` writes as is, ``end_body`` half-closes, the backend's bytes come as
``backend_body`` and its EOF ends the tunnel (``backend_end(False)``).

A backend that sends a bad head, closes early or breaks the framing surfaces as a
``BackendError`` through ``backend_error()``: the front answers that one request with a 502.

Kept-alive connections that sat idle longer than ``IDLE_REUSE`` seconds are not reused (they
report ``is_closed``): servers close idle connections on their own schedule (Node.js after 5 s),
and a request sent just as the server closes would be lost.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import cast

from corral.backends import (
    BODY_CHUNKED,
    BODY_TUNNEL,
    BackendError,
    BackendNotReached,
    BackendProtocolError,
    ResponseSink,
    SinkedProtocol,
)
from corral.protocol.http1.response import (
    CHUNKED,
    LENGTH,
    MAX_HEAD,
    NO_BODY,
    ChunkedDecoder,
    ResponseError,
    parse_head,
)

#: Seconds an idle kept-alive connection stays eligible for reuse.
IDLE_REUSE = 2.0

# Reading states.
_IDLE = 0
_HEAD = 1
_LENGTH = 2
_CHUNKED = 3
_UNTIL_CLOSE = 4
_TUNNEL = 5

_LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"


async def connect(address: object, *, name: str = "") -> HTTPClientConnection:
    """Open a kept-alive HTTP connection to ``(host, port)``, ``"host:port"`` or a Unix path."""
    from corral.backends.fastcgi import parse_address

    loop = asyncio.get_running_loop()
    target = parse_address(address)
    label = name or (target if isinstance(target, str) else f"{target[0]}:{target[1]}")

    def factory() -> HTTPClientConnection:
        return HTTPClientConnection(label)

    if isinstance(target, str):
        _, protocol = await loop.create_unix_connection(factory, target)
    else:
        _, protocol = await loop.create_connection(factory, target[0], target[1])
    return protocol


class HTTPClientConnection(SinkedProtocol, asyncio.Protocol):
    """One connection to an HTTP backend, serving one request at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._transport: asyncio.Transport | None = None
        self._sink: ResponseSink | None = None
        self._state = _IDLE
        self._buffer = b""
        self._head_request = False
        self._body_kind = 0
        self._body_done = True
        self._left = 0
        self._chunks: ChunkedDecoder | None = None
        self._keep_alive = True
        self._paused_by_peer = False
        self._closed = False
        self._idle_since = time.monotonic()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._fd = sock.fileno()
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            # Bytes with no request in flight: the connection cannot be trusted any more.
            self.close()
            return
        try:
            self._receive(sink, data)
        except BackendError as exc:
            self._fail(exc)
            return
        except ResponseError as exc:
            self._fail(BackendProtocolError(f"{self.name} sent a bad HTTP response: {exc}"))
            return
        if self._sink is sink:
            sink.backend_flush()

    def _receive(self, sink: ResponseSink, data: bytes) -> None:
        state = self._state
        if state == _LENGTH:
            left = self._left
            if len(data) < left:
                self._left = left - len(data)
                sink.backend_body(data)
                return
            if len(data) > left:
                raise BackendProtocolError(f"{self.name} sent more than its Content-Length")
            self._left = 0
            sink.backend_body(data)
            self._finish(sink)
            return
        if state in (_TUNNEL, _UNTIL_CLOSE):
            sink.backend_body(data)
            return
        if state == _CHUNKED:
            self._receive_chunked(sink, memoryview(data))
            return
        if state == _HEAD:
            self._receive_head(sink, data)
            return
        raise BackendProtocolError(f"{self.name} sent bytes with no request in flight")

    def _receive_head(self, sink: ResponseSink, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            skip = 4
            if end < 0:
                end = buffer.find(b"\n\n")
                skip = 2
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise BackendProtocolError(f"{self.name} sent a response head over {MAX_HEAD}")
                self._buffer = buffer
                return
            head = parse_head(buffer[:end])
            rest = buffer[end + skip :]
            status = head.status
            if status == 101:
                if self._body_kind != BODY_TUNNEL:
                    raise BackendProtocolError(f"{self.name} switched protocols unasked")
                self._buffer = b""
                self._state = _TUNNEL
                sink.backend_head(101, head.reason, head.headers)
                if rest and self._sink is sink:
                    sink.backend_body(rest)
                return
            if status < 200:
                buffer = rest  # an interim response (100 Continue, 103 Early Hints): skip it
                continue
            self._buffer = b""
            self._keep_alive = not head.close
            framing = head.framing(self._head_request)
            sink.backend_head(status, head.reason, head.headers)
            if self._sink is not sink:
                return
            if framing == NO_BODY:
                if rest:
                    self._keep_alive = False
                self._finish(sink)
            elif framing == LENGTH:
                assert head.content_length is not None
                self._left = head.content_length
                self._state = _LENGTH
                if not self._left:
                    if rest:
                        self._keep_alive = False
                    self._finish(sink)
                elif rest:
                    self._receive(sink, rest)
            elif framing == CHUNKED:
                self._chunks = ChunkedDecoder()
                self._state = _CHUNKED
                if rest:
                    self._receive_chunked(sink, memoryview(rest))
            else:
                self._keep_alive = False
                self._state = _UNTIL_CLOSE
                if rest:
                    sink.backend_body(rest)
            return

    def _receive_chunked(self, sink: ResponseSink, view: memoryview) -> None:
        decoder = self._chunks
        assert decoder is not None
        pieces: list[memoryview] = []
        used = decoder.feed(view, pieces)
        for piece in pieces:
            if self._sink is not sink:
                return
            sink.backend_body(piece)
        if decoder.done:
            if used < len(view):
                self._keep_alive = False  # bytes beyond the response: do not reuse
            self._finish(sink)

    def _finish(self, sink: ResponseSink) -> None:
        """The response is complete."""
        if self._sink is not sink:
            return
        self._sink = None
        self._state = _IDLE
        self._chunks = None
        if self._held_fd >= 0:
            self._release_answer()
        reusable = self._keep_alive and self._body_done and not self._closed
        if reusable:
            self._idle_since = time.monotonic()
        else:
            self.close()
        sink.backend_end(reusable)

    def eof_received(self) -> bool | None:
        sink = self._sink
        if sink is not None and self._state in (_UNTIL_CLOSE, _TUNNEL):
            self._keep_alive = False
            self._finish(sink)
        else:
            self.closed_by_peer = True  # (not the end of a body delimited by the close)
            self._fail(self._closed_error(f"{self.name} closed the connection before the response"))
        return None

    def _nothing_came(self) -> bool:
        return self._state == _HEAD and not self._buffer

    # -- the request -------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Closed, closing, or idle too long to be trusted with another request."""
        if self._closed:
            return True
        if self._sink is None and time.monotonic() - self._idle_since > IDLE_REUSE:
            self.close()
            return True
        return False

    @property
    def usable(self) -> bool:
        return not self.is_closed and self._sink is None

    def begin(
        self,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        sink: ResponseSink,
        has_body: int,
    ) -> None:
        """Send the request head ``static`` (built by the front; ``params`` is not used).
        ``has_body``: a ``BODY_*`` value, saying how ``send_body`` pieces are framed."""
        transport = self._transport
        if self._closed or transport is None or transport.is_closing():
            sink.backend_error(
                BackendNotReached(f"the connection to {self.name} is closed", written=False)
            )
            return
        self._sink = sink
        self._state = _HEAD
        self._buffer = b""
        self._keep_alive = True
        self._head_request = static.startswith(b"HEAD ")
        self._body_kind = has_body
        self._body_done = not has_body
        if has_body:
            self._hold_answer()
        transport.write(static)
        if self._paused_by_peer:
            sink.backend_pause_writing()

    def send_body(self, data: bytes) -> None:
        transport = self._transport
        if not data or self._sink is None or transport is None or self._body_done:
            return
        if self._body_kind == BODY_CHUNKED:
            transport.writelines((b"%x\r\n" % len(data), data, _CRLF))
        else:
            transport.write(data)

    def end_body(self) -> None:
        if self._body_done:
            return
        self._body_done = True
        transport = self._transport
        if self._sink is None or transport is None:
            return
        if self._body_kind == BODY_CHUNKED:
            transport.write(_LAST_CHUNK)
        elif (
            self._body_kind == BODY_TUNNEL and self._state == _TUNNEL and transport.can_write_eof()
        ):
            transport.write_eof()


__all__ = ["IDLE_REUSE", "HTTPClientConnection", "connect"]
