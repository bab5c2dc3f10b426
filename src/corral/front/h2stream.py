"""One HTTP/2 stream: the ``ClientStream`` and ``ResponseStream`` of its own ``Exchange``.

A stream is made by its connection (``front/http2.py``) when a request's headers arrive, drives
an ``Exchange`` exactly as an HTTP/1.1 request does, and goes when its response has been sent
(or it was reset). What differs from HTTP/1.1 is below the exchange:

- The response is HEADERS and DATA frames. The head waits for the end of the backend's read
  that brought it (``flush``), as over HTTP/1.1, so that an error can still be answered until
  then. Body pieces queue on the stream and leave as the client's flow-control windows (the
  stream's and the connection's) allow (``pump``); past ``write_buffer_high`` queued bytes the
  stream is ``writing_paused`` and its exchange pauses its backend (the calls a slow HTTP/1.1
  client causes), below half of it the backend is resumed. A slow stream pauses its own backend
  only: the others on the connection go on. As over HTTP/1.1, a leased worker's response is
  spilled to a temporary file instead (``spill``, ``response_spill_max``), so that the worker is
  released at its end; the stream's queue is refilled from the file as the windows open.
- The request body comes in DATA frames within the stream's receive window
  (``http2_stream_window``). The window is re-opened (WINDOW_UPDATE) as the body is passed on,
  except while the exchange holds reading (no backend yet, or the backend's send buffer full):
  then the client must stop once the window is spent, and memory stays bounded by the window.
- Errors before a head left are answered with an error page on the stream; after, the stream is
  reset (RST_STREAM INTERNAL_ERROR) and the connection goes on. A response complete before the
  request body ends resets the rest of the body with NO_ERROR (RFC 9113 8.1).
- Deadlines are per stream, of the kinds of ``stream.Deadline`` the exchange sets; the
  connection's sweep checks them (``expire``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Final

from corral.backends import Upstream
from corral.front import errorpages
from corral.front.context import FrontContext
from corral.front.exchange import Exchange
from corral.front.h2fields import response_fields
from corral.front.proxy import body_allowed
from corral.front.requestlog import record_request
from corral.front.spool import Spill, spilled_total
from corral.front.stream import Deadline, StreamDeadlines, TunnelPeer
from corral.protocol.http1.events import Request

if TYPE_CHECKING:
    from corral.front.http2 import Http2Connection

logger = logging.getLogger("corral.front")

_NONE: Final = Deadline.NONE
_BODY: Final = Deadline.BODY
_BACKEND: Final = Deadline.BACKEND
_NEVER: Final = float("inf")

#: RST_STREAM error codes (RFC 9113 7).
NO_ERROR: Final = 0
INTERNAL_ERROR: Final = 2
CANCEL: Final = 8


class Http2Stream(StreamDeadlines):
    """One request and its response on an HTTP/2 connection (see the module doc)."""

    __slots__ = (
        "_body_received",
        "_conn",
        "_end_pending",
        "_exchange",
        "_finished",
        "_head",
        "_length",
        "_logged",
        "_no_body",
        "_paused",
        "_queue",
        "_released",
        "_server",
        "_short",
        "_spill",
        "_spill_backend",
        "_started",
        "_unacked",
        "body_complete",
        "closed",
        "conn_params",
        "loopback",
        "queued",
        "remote_host",
        "remote_port",
        "request",
        "response",
        "sent",
        "server_port",
        "status",
        "stream_id",
        "tls",
        "trusted",
        "write_resumed",
        "writing_paused",
    )
    __deletable__ = ("_exchange", "response")  # (``_release``; a compiled build needs it said)

    def __init__(self, conn: Http2Connection, server: FrontContext, stream_id: int) -> None:
        self._conn = conn
        self._server = server
        self.stream_id = stream_id
        self.remote_host = conn.remote_host
        self.remote_port = conn.remote_port
        self.server_port = conn.server_port
        self.loopback = conn.loopback
        self.trusted = conn.trusted
        self.tls = conn.tls
        self.conn_params = conn.conn_params
        self.response = self
        self.closed = False
        self.writing_paused = False
        self.body_complete = True
        self.request: Request | None = None
        self.status = 0
        #: Body bytes given to the client (the access log).
        self.sent = 0
        #: Body bytes queued for the client's windows.
        self.queued = 0
        self._queue: deque[bytes] = deque()
        #: The response head held until the end of the backend read (None: none, or sent).
        self._head: list[tuple[bytes, bytes]] | None = None
        self._length: int | None = None
        self._no_body = False
        self._end_pending = False
        self._short = False
        #: The rest of a response waiting on disk for a slow client (``spill``), and the
        #: backend to pause if that file is full.
        self._spill: Spill | None = None
        self._spill_backend: Upstream | None = None
        self._finished = False
        self._logged = False
        self._released = False
        self._paused = 0
        #: Request body bytes received and not yet given back to the stream's window.
        self._unacked = 0
        self._body_received = 0
        self._rate_base = _NEVER
        self._rate_step = 0.0
        self._kind = _BACKEND
        self.deadline = server.now + server.response_timeout
        self._started = perf_counter()
        self.write_resumed: asyncio.Future[None] | None = None
        self._exchange = Exchange(server, self)

    # -- from the connection -------------------------------------------------------------------

    def start(self, request: Request, has_body: bool) -> None:
        self.request = request
        self.body_complete = not has_body
        if request.content_length is not None and (
            request.content_length > self._server.settings.max_body_size
        ):
            self.respond_error(413)
        elif request.method == b"CONNECT":
            self.respond_error(501, message="CONNECT is not supported by this server.")
        else:
            self._exchange.start(request, has_body)

    def data(self, data: bytes, flow: int) -> None:
        """A DATA frame's payload (``flow``: what it took of the window, padding included)."""
        self._unacked += flow
        if self._finished or self.closed:
            return
        received = self._body_received = self._body_received + len(data)
        server = self._server
        if received > server.settings.max_body_size:
            self.reject(413, "request body too large")
            return
        if self._kind == _BODY:
            gap = server.now + server.body_timeout
            due = self._rate_base + received * self._rate_step
            self.deadline = due if due < gap else gap
        if data:
            self._exchange.body(data)
        if not self._paused:
            _give_window(self)

    def data_end(self) -> None:
        """The client's END_STREAM: the request body is complete."""
        if self.body_complete or self.closed:
            self.body_complete = True
            return
        self.body_complete = True
        if not self._finished:
            self._exchange.body_end()
            if self._kind == _BODY:
                self.set_deadline(_BACKEND, self._server.response_timeout)

    def pump(self) -> bool:
        """Send queued body (and the end) as the windows allow; True when nothing is left."""
        conn = self._conn
        queue = self._queue
        server = self._server
        sent = False
        while not self.closed:
            if not queue and (self._spill is None or not _refill(self)):
                break
            room = conn.room(self.stream_id)
            if room <= 0:
                break
            sent = True
            piece = queue[0]
            if len(piece) <= room:
                queue.popleft()
            else:
                queue[0] = piece[room:]
                piece = piece[:room]
            self.queued -= len(piece)
            if not queue and self._end_pending and not self._short and self._spill is None:
                # The last piece carries END_STREAM (no empty frame of its own).
                self._end_pending = False
                conn.send_data(self.stream_id, piece, True)
                if self.writing_paused:
                    _writable(self)
                self._sent_all()
                return True
            conn.send_data(self.stream_id, piece, False)
        if sent and self._kind == _BACKEND:  # (a client that reads: the response goes on)
            self.deadline = server.now + server.response_timeout
        if (
            self.writing_paused
            and self._spill is None
            and self.queued <= server.settings.write_buffer_high >> 1
        ):
            _writable(self)
        if queue or self._spill is not None or self.closed:
            return self.closed
        if self._end_pending:
            self._end_pending = False
            if self._short:
                self._reset(INTERNAL_ERROR)
            else:
                conn.send_data(self.stream_id, b"", True)
                self._sent_all()
        return True

    def _after_queue(self) -> None:
        self._conn.schedule(self)
        if (
            not self.writing_paused
            and self.queued > self._server.settings.write_buffer_high
            and not self.closed
        ):
            self.writing_paused = True
            if not self._finished:
                self._exchange.client_paused()

    def _sent_all(self) -> None:
        """The response has left whole (END_STREAM): the stream is done with, its request
        body (when still coming) is refused with NO_ERROR."""
        if not self.body_complete:
            self._reset(NO_ERROR)
        elif self._finished:
            self.closed = True
            self._kind = _NONE
            self._conn.stream_done(self)
        if self._finished and self.closed:
            _release(self)

    def cancel(self, forget: bool) -> None:
        """The client reset the stream (``forget``: the connection drops it from its table),
        or the connection is gone: the exchange ends here."""
        if self.closed:
            return
        self.closed = True
        self._kind = _NONE
        _drop_spill(self)
        self._exchange.drop()
        _log_request(self, access=False)
        if forget:
            self._conn.stream_done(self)
        _release(self)

    # -- ClientStream: deadlines and reading ---------------------------------------------------

    def pause_reading(self, reason: int) -> None:
        self._paused |= reason

    def resume_reading(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and not self.closed:
                _give_window(self)
                self._conn.flush()

    def want_body(self) -> None:
        request = self.request
        if request is not None and request.expect_continue and not self.body_complete:
            self._conn.send_head(self.stream_id, [(b":status", b"100")], False)

    # -- ResponseStream ------------------------------------------------------------------------

    @property
    def head_sent(self) -> bool:
        return self.status != 0 and self._head is None

    def head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        request = self.request
        assert request is not None
        server = self._server
        fields, length = response_fields(status, headers, server.date_header[6:-2])
        self.status = status
        self._length = length
        self._no_body = not body_allowed(status, request.method)
        self._head = fields
        self.deadline = server.now + server.response_timeout

    def body(self, data: bytes | memoryview) -> None:
        server = self._server
        self.deadline = server.now + server.response_timeout
        if not data:
            return
        if self._no_body:
            if self._length is None and self.request is not None and self.request.method == b"HEAD":
                self.sent += len(data)  # (a HEAD response's computed Content-Length)
            return
        length = self._length
        if length is not None:
            room = length - self.sent
            if len(data) > room:
                data = data[:room]  # (the backend sent more than it declared: cut)
                if not data:
                    return
        self.sent += len(data)
        _enqueue(self, data)

    def flush(self) -> None:
        if self.closed:
            return
        head = self._head
        if head is not None:
            if self._no_body:
                return  # (HEAD, 204, 304: the head leaves at the end, with its length)
            self._head = None
            self._conn.send_head(self.stream_id, head, False)
        if self._queue:
            self._after_queue()

    def spill(self, backend: Upstream) -> bool:
        """The client reads this stream slower than its backend writes: the rest of the body
        goes to a temporary file (``spool.Spill``, ``response_spill_max``), so that the worker
        is released at its end; ``pump`` takes it back a piece at a time."""
        if self._spill is not None:
            return True
        settings = self._server.settings
        if (
            settings.response_spill_max <= 0
            or self._head is not None
            or self._no_body
            or self.closed
            or not self.status
            or spilled_total() >= settings.response_spill_total
        ):
            return False
        try:
            self._spill = Spill(settings.response_spill_max, settings.response_spill_total)
        except OSError:
            return False  # (no temporary file: the backend is paused instead)
        self._spill_backend = backend
        return True

    def end(self) -> int:
        if self.closed:
            return 0
        short = 0 if self._length is None or self._no_body else self._length - self.sent
        head = self._head
        if head is not None:
            self._head = None
            if self._length is None and (self.sent or not self._no_body):
                head.append((b"content-length", b"%d" % self.sent))
            if not self._queue:
                self._conn.send_head(self.stream_id, head, True)
                self._sent_all()
                return short
            self._conn.send_head(self.stream_id, head, False)
        self._short = short > 0
        self._end_pending = True
        self._after_queue()
        return short

    def stream_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        head = [(b":status", b"%d" % status)]
        head += ((name.lower(), value) for name, value in fields)
        self._conn.send_head(self.stream_id, head, False)

    async def stream_piece(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.sent += len(data)
        _enqueue(self, data)
        self._after_queue()
        if self.writing_paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self.write_resumed = waiter
            await waiter

    def stream_end(self) -> None:
        if not self.closed:
            self._end_pending = True
            self._after_queue()

    def tunnel_write(self, data: bytes | memoryview) -> None:
        pass  # (no tunnel over HTTP/2: ``switch_protocols`` refuses them)

    # -- ClientStream: answers and the end -----------------------------------------------------

    def reject(self, status: int, reason: str) -> None:
        logger.info("%s:%d: bad HTTP/2 request: %s", self.remote_host, self.remote_port, reason)
        self._server.stats.protocol_error(status)
        self.respond_error(status)

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
        if self.closed or self._finished:
            return
        self._exchange.drop()
        if self.head_sent:
            self.abort()
            return
        server = self._server
        body = errorpages.error_body(status, message, details, refresh=refresh, reference=reference)
        head = [
            (b":status", b"%d" % status),
            (b"server", b"Corral"),
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"date", server.date_header[6:-2]),
        ]
        if retry_after:
            seconds = server.settings.retry_after
            if retry_seconds is not None:
                seconds = max(1, min(int(retry_seconds + 0.999), 3600))
            head.append((b"retry-after", b"%d" % seconds))
        if refresh is not None:
            head.append((b"cache-control", b"no-store"))
        self._head = None
        self._queue.clear()
        self.queued = 0
        _drop_spill(self)
        self.status = status
        self._no_body = False
        request = self.request
        if request is not None and request.method == b"HEAD":
            self.sent = 0
            self._conn.send_head(self.stream_id, head, True)
            self.finish(True)
            return
        self.sent = len(body)
        self._conn.send_head(self.stream_id, head, False)
        _enqueue(self, body)
        self._end_pending = True
        self.finish(True)
        self._after_queue()

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], tunnel: TunnelPeer
    ) -> bytes:
        # Unreachable: an HTTP/2 request has no Upgrade (h2fields), so no tunnel is begun.
        self.abort()
        return b""

    def finish(self, close: bool) -> None:
        """The exchange is over: count and log it; the stream goes once its response has
        left (``_sent_all``)."""
        if self._finished:
            return
        self._finished = True
        _log_request(self)
        if not self._queue and not self._end_pending and not self.closed and self.head_sent:
            self._sent_all()
        if self.closed:
            _release(self)

    def abort(self) -> None:
        """Cut the response: RST_STREAM INTERNAL_ERROR; the connection goes on."""
        if self.closed:
            return
        self._reset(INTERNAL_ERROR)
        self._exchange.drop()
        _log_request(self, access=False)
        _release(self)

    def _reset(self, code: int) -> None:
        self.closed = True
        self._kind = _NONE
        self._queue.clear()
        self.queued = 0
        _drop_spill(self)
        self._conn.reset_stream(self, code)


# -- what the stream does that is not part of its interface ----------------------------------


def expire(stream: Http2Stream) -> None:
    """The sweep found this stream's deadline passed."""
    kind = stream._kind
    if kind == _NONE:
        return
    if stream._finished or (kind == _BACKEND and stream.writing_paused and stream.status):
        logger.info("%s: HTTP/2 client stopped reading a response", stream.remote_host)
        stream.abort()
    elif kind == _BODY:
        logger.info(
            "%s:%d: request body too slow (%d bytes received): 408",
            stream.remote_host,
            stream.remote_port,
            stream._body_received,
        )
        stream.respond_error(408, message="The request body was not received in time.")
    elif kind == _BACKEND:
        logger.error("%s: no response from the application in time", stream._exchange.name)
        stream._exchange.give_up(_BACKEND)
    else:
        stream._exchange.give_up()


def _writable(stream: Http2Stream) -> None:
    """Below half of write_buffer_high again: the backend may go on."""
    stream.writing_paused = False
    waiter = stream.write_resumed
    if waiter is not None:
        stream.write_resumed = None
        if not waiter.done():
            waiter.set_result(None)
    if stream._kind == _BACKEND:
        stream.deadline = stream._server.now + stream._server.response_timeout
    if not stream._finished and not stream.closed:
        stream._exchange.client_resumed()


def _give_window(stream: Http2Stream) -> None:
    """Re-open the stream's receive window once half of it is spent."""
    if stream._unacked >= stream._conn.stream_window >> 1 and not stream.body_complete:
        stream._conn.open_window(stream.stream_id, stream._unacked)
        stream._unacked = 0


def _enqueue(stream: Http2Stream, data: bytes | memoryview) -> None:
    spill = stream._spill
    if spill is not None:  # a slow client: behind what already waits on disk
        try:
            spill.add([data])
        except OSError as exc:
            logger.error("cannot spill an HTTP/2 response for a slow client: %s", exc)
            stream.abort()
            return
        backend = stream._spill_backend
        if spill.full and backend is not None:
            stream._spill_backend = None
            backend.pause_reading()  # (resumed once the spill has drained: ``_writable``)
        return
    # (A backend's piece may be a view of its reused read buffer: copied as it is kept.)
    stream._queue.append(bytes(data))
    stream.queued += len(data)


def _refill(stream: Http2Stream) -> bool:
    """Take the next piece of a spilled response into the (empty) queue; False once the spill
    is drained (then it is gone)."""
    spill = stream._spill
    assert spill is not None
    try:
        data = spill.take()
    except OSError as exc:
        logger.error("an HTTP/2 response's spill file is unreadable: %s", exc)
        data = b""
    if not data:
        _drop_spill(stream)
        return False
    stream._queue.append(data)
    stream.queued += len(data)
    return True


def _drop_spill(stream: Http2Stream) -> None:
    spill = stream._spill
    if spill is not None:
        stream._spill = None
        stream._spill_backend = None
        spill.close()


def _log_request(stream: Http2Stream, access: bool = True) -> None:
    """Once per stream: count it and write its access-log line."""
    request = stream.request
    if request is None or stream._logged:
        return
    stream._logged = True
    exchange = stream._exchange
    record_request(
        stream._server,
        exchange,
        request,
        stream.status,
        stream.sent,
        stream._body_received,
        stream._started,
        (exchange.client or stream.remote_host) if stream.trusted else stream.remote_host,
        access,
    )


def _release(stream: Http2Stream) -> None:
    """The stream is over (closed, counted and logged): let go of its exchange and of itself
    (``response``), so that both are freed by reference counting when the last call returns,
    rather than left to the cycle collector. Nothing calls a stream's exchange after this: the
    connection has forgotten the stream, the exchange is over."""
    if stream._released or not (stream._logged or stream.request is None):
        return
    stream._released = True
    del stream._exchange, stream.response
