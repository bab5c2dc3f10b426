"""The response side of an HTTP/1.1 connection: one response at a time, framed for the client.

``Http1Response`` is the ``ResponseStream`` of ``HTTPConnection`` (``front/http1.py``): it turns
what an exchange relays (a backend's head, body pieces, the end) into HTTP/1.1 bytes, through
the writer's pieces (``corral.protocol.http1.writer``). Framing (RFC 9112 section 6.3, the rules
themselves in ``proxy.py``):

- no body for HEAD, 1xx, 204 and 304: the head alone (a HEAD response keeps the backend's
  Content-Length, or gets the length of the body the backend produced when it sent one);
- else a valid Content-Length from the backend is passed through (what goes beyond it is cut,
  and the connection not kept);
- else, when the whole body is already in hand at the first write, a Content-Length is computed;
- else chunked for HTTP/1.1 clients, or close-delimited for HTTP/1.0 clients.

The head waits until the end of the backend's read that brought it (``flush``), so that it leaves
with the first body pieces in one system call; body pieces of one read are written together.

A client that reads slower than its backend writes (the transport above ``write_buffer_high``)
gets the rest of the response through a ``spool.Spill``: the framed bytes go to a temporary file
while the backend is read at full speed, and the connection drains the file as the client takes
it (``drain_spill``: with ``os.sendfile`` from the file to the socket, for a plain socket,
whenever the transport holds nothing); the exchange ends (the connection's ``finish``) once it
is empty. Up to
``response_spill_max`` bytes are held; past that the backend is paused until the file drains.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Final, Protocol

from corral.backends import Upstream
from corral.front import errorpages
from corral.front.cgienv import HOP_BY_HOP
from corral.front.context import FrontContext
from corral.front.proxy import body_allowed, filter_headers
from corral.front.spool import NOTIFY_PIECE, PIECE, Spill, spilled_total
from corral.protocol.http1.events import Request
from corral.protocol.http1.writer import (
    CHUNKED,
    CONN_CLOSE,
    CONN_KEEP,
    CRLF,
    LAST_CHUNK,
    chunk,
    chunk_size,
    status_line,
    switching_head,
)

logger = logging.getLogger("corral.front")
#: ``os.sendfile`` where the system has it (spilled responses go out with it).
_SENDFILE: Final = hasattr(os, "sendfile")

# Response framing: plain ints, compared on the hot path.
_NO_BODY: Final = 0  # HEAD, 1xx, 204, 304
_LENGTH: Final = 1  # Content-Length
_CHUNKED_OUT: Final = 2  # Transfer-Encoding: chunked
_CLOSE_DELIMITED: Final = 3  # HTTP/1.0 without a length: the body ends with the connection


class ResponseConnection(Protocol):
    """What a response reads and moves on its connection."""

    #: When the connection's current deadline expires (a response that progresses pushes it).
    deadline: float
    closed: bool
    writing_paused: bool
    body_complete: bool

    def abort(self) -> None:
        """Cut the client off."""


class Http1Response:
    """The response to the request in progress on one HTTP/1.1 connection (reused: ``reset``
    after each kept-alive request). The connection sets ``transport`` once, ``request`` and
    ``method`` per request."""

    __slots__ = (
        "_body_out",
        "_conn",
        "_framing",
        "_head_buffer",
        "_out_length",
        "_pending_head",
        "_remaining",
        "_server",
        "_spill_backend",
        "_spill_fd",
        "close_after",
        "finish_pending",
        "method",
        "request",
        "sent",
        "spill_file",
        "status",
        "transport",
        "write_resumed",
    )

    def __init__(self, conn: ResponseConnection, server: FrontContext) -> None:
        self._conn = conn
        self._server = server
        self.transport: asyncio.Transport | None = None
        #: A ``stream_piece`` waiting for the client to drain (the connection completes it).
        self.write_resumed: asyncio.Future[None] | None = None
        self.request: Request | None = None
        self.method = b""
        self._pending_head: list[bytes | memoryview] | None = None
        self._head_buffer: list[bytes | memoryview] | None = None
        self._body_out: list[bytes | memoryview] | None = None
        self._framing = _NO_BODY
        self._out_length: int | None = None
        self._remaining = 0
        #: The connection is not kept after this response.
        self.close_after = False
        self.status = 0
        #: Body bytes sent (the access log).
        self.sent = 0
        #: The response's bytes waiting on disk for a slow client (None: none are).
        self.spill_file: Spill | None = None
        self._spill_backend: Upstream | None = None
        #: The client's socket, for the spill to be sent with sendfile (-1: read and written).
        self._spill_fd = -1
        #: The exchange ended while the spill was not drained: ``finish(close)`` once it is.
        self.finish_pending: bool | None = None

    def reset(self) -> None:
        """The response is over and the connection kept: the next starts from nothing (the
        connection sets ``request`` and ``method`` when its head arrives)."""
        self._pending_head = None
        self._head_buffer = None
        self._body_out = None
        self._framing = _NO_BODY
        self._out_length = None
        self._remaining = 0
        self.close_after = False
        self.status = 0
        self.sent = 0

    @property
    def head_sent(self) -> bool:
        return self.status != 0 and self._pending_head is None

    # -- a backend's response ----------------------------------------------------------------

    def head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        request = self.request
        assert request is not None
        lines, length, has_date = filter_headers(headers)  # (raises BadBackendHead)
        self.status = status
        if not body_allowed(status, self.method):
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
        server = self._server
        if not has_date:
            head.append(server.date_header)
        self._pending_head = head
        self._head_buffer = []
        self._conn.deadline = server.now + server.response_timeout

    def body(self, data: bytes | memoryview) -> None:
        server = self._server
        self._conn.deadline = server.now + server.response_timeout
        if not data:
            return  # (an empty chunk would end a chunked body)
        framing = self._framing
        if framing == _NO_BODY:
            if self.method == b"HEAD" and self._out_length is None:
                self.sent += len(data)  # counted for a computed Content-Length
            return
        if framing == _LENGTH:
            remaining = self._remaining
            if len(data) > remaining:
                data = data[:remaining]
                self.close_after = True  # the backend sent more than it declared
                if not data:
                    return
            self._remaining = remaining - len(data)
        self.sent += len(data)
        buffered = self._head_buffer
        if buffered is not None:
            buffered.append(data)
            return
        # Written out at the end of this read from the backend (flush): one system call for
        # every piece that arrived together.
        out = self._body_out
        if out is None:
            self._body_out = [data]
        else:
            out.append(data)

    def flush(self) -> None:
        if self._conn.closed:
            return
        head = self._pending_head
        if head is None:
            if self._body_out is not None:
                self._write_body_out(None)
            return
        if self._framing == _NO_BODY and self.method == b"HEAD":
            return  # HEAD waits for the end, to count the body when no length was given
        self._write_head(head, False)

    def end(self) -> int:
        head = self._pending_head
        if head is not None:
            self._write_head(head, True)
        elif self._framing == _CHUNKED_OUT:
            self._write_body_out(LAST_CHUNK)
        elif self._body_out is not None:
            self._write_body_out(None)
        if self._framing == _LENGTH and self._remaining:
            # The backend ended before sending what its Content-Length promised.
            self.close_after = True
            return self._remaining
        return 0

    def _write_body_out(self, tail: bytes | None) -> None:
        """Write the body pieces gathered during one backend read (and ``tail``), at once."""
        out = self._body_out or []
        self._body_out = None
        transport = self.transport
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
        spill = self.spill_file
        if spill is not None:  # a slow client: behind what already waits on disk
            self._to_spill(spill, out)
        elif len(out) == 1:
            transport.write(out[0])
        elif out:
            transport.writelines(out)

    def _write_head(self, head: list[bytes | memoryview], complete: bool) -> None:
        """Write the head and what body is buffered; ``complete``: that is the whole body."""
        transport = self.transport
        assert transport is not None
        buffered = self._head_buffer or []
        self._pending_head = None
        self._head_buffer = None
        framing = self._framing
        if complete and framing >= _CHUNKED_OUT:  # chunked or close-delimited
            # The whole body is here: a Content-Length beats chunked or close framing.
            framing = self._framing = _LENGTH
            self._remaining = 0
            head.append(b"Content-Length: %d\r\n" % self.sent)
        request = self.request
        assert request is not None
        if (
            self.close_after
            or framing == _CLOSE_DELIMITED
            or not request.keep_alive
            or not self._conn.body_complete
            or self._server.closing
        ):
            self.close_after = True
            head.append(CONN_CLOSE)
        elif request.http_version == "1.0":
            head.append(CONN_KEEP)
        if framing == _CHUNKED_OUT:
            head.append(CHUNKED)
            head.append(CRLF)
            for data in buffered:
                head += (chunk_size(len(data)), data, CRLF)
        elif framing == _NO_BODY:
            if self.method == b"HEAD" and self._out_length is None and self.sent:
                head.append(b"Content-Length: %d\r\n" % self.sent)
            head.append(CRLF)
        else:
            head.append(CRLF)
            head += buffered
        if self.sent > 65536:
            transport.writelines(head)  # a large first piece: no copy into one buffer
        else:
            transport.write(b"".join(head))

    # -- a slow client: the response spilled to disk ------------------------------------------

    def spill(self, backend: Upstream) -> bool:
        if self.spill_file is not None:
            return True
        settings = self._server.settings
        limit = settings.response_spill_max
        if limit <= 0 or self._pending_head is not None or self._framing == _NO_BODY:
            return False
        if self._conn.closed or self.status in (0, 101):
            return False
        if spilled_total() >= settings.response_spill_total:
            return False  # (the disk's share is taken: back-pressure, as without a spill)
        try:
            self.spill_file = Spill(limit, settings.response_spill_total)
        except OSError:
            return False  # (no temporary file: the backend is paused instead)
        self._spill_backend = backend
        self._spill_fd = self._sendfile_fd()
        if self._spill_fd >= 0:
            # Sendfile writes behind the transport's back, so only when the transport holds
            # nothing: with a high-water mark of 0 (until the spill is gone) it says so, by
            # resume_writing, once everything it holds is sent.
            self._set_write_limit(0)
        return True

    def _sendfile_fd(self) -> int:
        """The client's socket when the spill can go out with sendfile (not over TLS), else -1."""
        transport = self.transport
        if not _SENDFILE or transport is None:
            return -1
        if transport.get_extra_info("sslcontext") is not None:
            return -1
        sock = transport.get_extra_info("socket")
        return -1 if sock is None else int(sock.fileno())

    def _set_write_limit(self, high: int) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.set_write_buffer_limits(high=high)

    def _to_spill(self, spill: Spill, out: list[bytes | memoryview]) -> None:
        try:
            spill.add(out)
        except OSError as exc:
            # No room on disk: this response cannot be completed (the client sees it cut).
            logger.error("cannot spill a response for a slow client: %s", exc)
            self.close_spill()
            self._conn.abort()
            return
        backend = self._spill_backend
        if spill.full and backend is not None:
            self._spill_backend = None
            backend.pause_reading()  # (resumed by the exchange once the spill has drained)

    def drain_spill(self) -> bool:
        """Write what waits on disk while the client takes it; True once it is all sent (the
        spill is gone), False when the client is slow again."""
        spill = self.spill_file
        transport = self.transport
        conn = self._conn
        if spill is None:
            return True
        if transport is None or conn.closed:
            self.close_spill()
            return False
        most = PIECE
        while not conn.writing_paused:
            if self._spill_fd >= 0 and not transport.get_write_buffer_size():
                try:
                    spill.send_to(self._spill_fd)
                except OSError:
                    # (A broken socket is the transport's to report; a file sendfile cannot
                    # send from: read and write from now on.)
                    self._spill_fd = -1
                    self._set_write_limit(self._server.settings.write_buffer_high)
                else:
                    # The socket is full (or the spill is empty): a small piece through the
                    # transport, which resumes writing once the client has taken it.
                    most = NOTIFY_PIECE
            data = spill.take(most)
            if not data:
                self.close_spill()
                return True
            transport.write(data)
        return False

    def close_spill(self) -> None:
        """Drop what waits on disk (the client is gone)."""
        spill = self.spill_file
        if spill is not None:
            self.spill_file = None
            self._spill_backend = None
            spill.close()
            if self._spill_fd >= 0:
                self._spill_fd = -1
                self._set_write_limit(self._server.settings.write_buffer_high)

    # -- the front's own responses -----------------------------------------------------------

    def stream_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        request = self.request
        assert request is not None and self.transport is not None
        chunked = request.http_version != "1.0"
        self._framing = _CHUNKED_OUT if chunked else _CLOSE_DELIMITED
        head = [status_line(status, b"")]
        head += (name + b": " + value + CRLF for name, value in fields)
        head += (CHUNKED if chunked else b"", CONN_CLOSE, CRLF)
        self.status = status
        self.close_after = True
        self.transport.write(b"".join(head))

    async def stream_piece(self, data: bytes) -> None:
        transport = self.transport
        conn = self._conn
        if conn.closed or transport is None or not data:
            return
        if self._framing == _CHUNKED_OUT:
            transport.write(chunk(data))
        else:
            transport.write(data)
        self.sent += len(data)
        if conn.writing_paused and not conn.closed:
            waiter = asyncio.get_running_loop().create_future()
            self.write_resumed = waiter
            await waiter

    def stream_end(self) -> None:
        if self._framing == _CHUNKED_OUT and not self._conn.closed and self.transport is not None:
            self.transport.write(LAST_CHUNK)

    def error_page(
        self,
        status: int,
        retry_after: bool,
        retry_seconds: float | None,
        message: str | None,
        details: str | None,
        refresh: int | None,
        reference: str | None = None,
    ) -> None:
        """Write an error page in place of the response (whose head has not left); the
        connection is not kept after it."""
        self._pending_head = None
        self._head_buffer = None
        transport = self.transport
        assert transport is not None
        head_only = self.method == b"HEAD"
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
                reference=reference,
            )
        transport.write(page)
        self.status = status
        self.sent = 0 if head_only else len(page) - page.index(b"\r\n\r\n") - 4
        self.close_after = True

    # -- the tunnel --------------------------------------------------------------------------

    def switching(self, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The 101 that opens a tunnel (the backend's fields, ``Connection: Upgrade``)."""
        request = self.request
        assert request is not None and self.transport is not None
        self.transport.write(
            switching_head(
                reason, headers, request.upgrade or b"", self._server.date_header, HOP_BY_HOP
            )
        )
        self.status = 101
        self._framing = _NO_BODY

    def tunnel_write(self, data: bytes | memoryview) -> None:
        server = self._server
        conn = self._conn
        conn.deadline = server.now + server.tunnel_idle_timeout
        self.sent += len(data)
        if not conn.closed and self.transport is not None:
            self.transport.write(data)
