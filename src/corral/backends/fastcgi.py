"""FastCGI client: an asyncio Protocol over a Unix socket or TCP, built on the sans-IO codec.

One request at a time per connection, kept alive between requests with ``FCGI_KEEP_CONN``. The
caller (the front) drives a request with ``begin()``, ``send_body()``, ``end_body()`` and hears
back through a ``ResponseSink``: the CGI response head, body chunks, the end, or an error. Nothing
is buffered beyond one read: back-pressure flows both ways through ``pause_reading()`` /
``resume_reading()`` (the front's client is slow) and the sink's ``backend_pause_writing()`` /
``backend_resume_writing()`` (the backend is slow to take the request body).

A backend that breaks the protocol, closes the connection or dies before END_REQUEST surfaces as a
``BackendError`` through ``backend_error()``: the front answers that one request with a 502.
STDERR records are logged (logger ``corral.backend``) with the backend's name.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final, cast

from corral.backends import (
    BODY_NONE,
    BackendError,
    BackendNotReached,
    BackendNotStarted,
    BackendProtocolError,
    PooledUpstream,
    ResponseSink,
    SinkedProtocol,
    pairmemo,
)
from corral.backends.discard import DISCARD
from corral.backends.readbuffer import read_buffers
from corral.backends.writebatch import BatchedWriter, write_batch
from corral.protocol.cgi import CGIResponseError, CGIResponseParser
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import HEADER_LEN, MAX_PIPELINE_DEPTH, RecordType, Role
from corral.protocol.fastcgi.errors import FastCGIError

logger = logging.getLogger("corral.backend")

REQUEST_ID: Final = 1


Address = str | tuple[str, int]


def parse_address(address: object) -> Address:
    """Accept ``"unix:/path"``, ``"/path"``, ``"host:port"`` or ``(host, port)``."""
    if isinstance(address, tuple) and len(address) == 2:
        return (str(address[0]), int(address[1]))
    if isinstance(address, bytes | str):
        text = address.decode() if isinstance(address, bytes) else address
        if text.startswith("unix:"):
            return text[5:]
        if text.startswith("/") or text.startswith("."):
            return text
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit():
            return (host.strip("[]") or "127.0.0.1", int(port))
    if hasattr(address, "__fspath__"):
        return str(address)
    raise ValueError(f"not a backend address: {address!r}")


async def connect(
    address: object, *, name: str = "", php_fpm: bool = False
) -> FastCGIClientConnection:
    """Open a kept-alive FastCGI client connection to ``address``.

    ``php_fpm=True`` selects the codec's conservative client mode (no split PARAMS records, no
    padding on empty records) that php-fpm and other strict responders want.
    """
    loop = asyncio.get_running_loop()
    target = parse_address(address)
    label = name or (target if isinstance(target, str) else f"{target[0]}:{target[1]}")

    def factory() -> FastCGIClientConnection:
        return FastCGIClientConnection(label, php_fpm=php_fpm)

    # OSError propagates unchanged: the pool reads it as "this worker is not reachable".
    if isinstance(target, str):
        _, protocol = await loop.create_unix_connection(factory, target)
    else:
        _, protocol = await loop.create_connection(factory, target[0], target[1])
    return protocol


#: FastCGI name-value pairs encoder (the codec's).
encode_pairs = records.encode_pairs
_encode_pairs_remembered = pairmemo.encode_pairs_remembered

_HEADER: Final = records.HEADER
_HEADER_LEN: Final = HEADER_LEN
#: The codec's record-header fast path (one format, one validation, for every reader).
_HEADER_AT: Final = records.header_at
_HEADER_PACK: Final = records.HEADER.pack
_HEADER_UNPACK: Final = records.HEADER.unpack_from
_END_REQUEST_UNPACK: Final = records.END_REQUEST_BODY.unpack
_ZEROS: Final = tuple(bytes(n) for n in range(8))
_STDOUT: Final = int(RecordType.STDOUT)
_STDERR: Final = int(RecordType.STDERR)
_END_REQUEST: Final = int(RecordType.END_REQUEST)
_PARAMS: Final = int(RecordType.PARAMS)
_STDIN: Final = int(RecordType.STDIN)
_STDIN_PIECE: Final = 0xFFF8
#: The send buffer asked for on each connection to a responder.
SEND_BUFFER: Final = 1024 * 1024
#: Requests queued on a connection its responder closed are sent back this much later (s).
PEER_CLOSE_RETRY_DELAY: Final = 0.02
#: Per request id (1..MAX_PIPELINE_DEPTH + 1): BEGIN_REQUEST (keep the connection), the end
#: of PARAMS, the end of STDIN.
_IDS: Final = range(1, MAX_PIPELINE_DEPTH + 2)
_BEGIN_KEEP_BY_ID: Final = (
    b"",
    *(records.encode_begin_request(rid, Role.RESPONDER, keep_conn=True) for rid in _IDS),
)
_PARAMS_END_BY_ID: Final = (b"", *(records.encode_stream(RecordType.PARAMS, r, b"") for r in _IDS))
_STDIN_END_BY_ID: Final = (b"", *(records.encode_stream(RecordType.STDIN, r, b"") for r in _IDS))
_BEGIN_KEEP: Final = _BEGIN_KEEP_BY_ID[REQUEST_ID]
_PARAMS_END: Final = _PARAMS_END_BY_ID[REQUEST_ID]
_STDIN_END: Final = _STDIN_END_BY_ID[REQUEST_ID]

_DISCARD: Final = DISCARD
#: No read in progress.
_NO_BUFFER: Final = bytearray()


class FastCGIClientConnection(BatchedWriter, SinkedProtocol, asyncio.BufferedProtocol):
    """One connection to a FastCGI responder, serving one request at a time.

    The wire format comes from the sans-IO codec's pure functions (``protocol.fastcgi.records``):
    each record header is read and validated by ``records.header_at``, the codec's fast path that
    ``FastCGIConnection`` uses too, so the record format is known in one place. The per-request
    state is trivial here (one request id, one request at a time; body STDOUT passed on as views,
    across reads), so the records are then handled in this loop instead of going through
    ``FastCGIConnection``'s general state table: this is the front's hot path.

    The answer is read into the loop's shared read buffer (``readbuffer``: a
    ``BufferedProtocol``, 1 MiB reads, no copy into a ``bytes`` per read), and body pieces go
    to the sink as views of it.
    """

    def __init__(self, name: str, *, php_fpm: bool = False) -> None:
        self.name = name
        self._php_fpm = php_fpm
        self._transport: asyncio.Transport | None = None
        self._sink: ResponseSink | None = None
        #: The CGI head's parser while the head of the answer in progress is read (else None):
        #: ``_cgi``, the connection's one, reset for each answer.
        self._head: CGIResponseParser | None = None
        self._cgi = CGIResponseParser()
        self._buffer = b""
        #: Bytes still to come of a body STDOUT record split across reads, then its padding.
        self._stdout_left = 0
        self._skip_left = 0
        self._body_done = True
        self._paused_by_peer = False
        self._closed = False
        self._stderr_tail = b""
        #: The id of the request in progress; requests queued behind it (``follower``) and
        #: when the one in progress began (``time.monotonic()``).
        self._rid = REQUEST_ID
        self._queue: deque[Follower] = deque()
        self._current: Follower | None = None
        self._began = 0.0
        #: Handles given out by ``follower()`` whose request has not begun yet.
        self._promised = 0
        #: Called when the connection is free again after answers nobody waited for (the pool
        #: sets it through ``when_drained``).
        self._on_drained: Callable[[PooledUpstream], None] | None = None
        self._buffers = read_buffers()
        self._read_into = _NO_BUFFER

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        # Bodiless requests leave at the end of the loop's turn, together (backends/writebatch).
        self._batch = write_batch(asyncio.get_running_loop())
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._fd = sock.fileno()
            # Request bodies leave in fewer, larger writes (capped at net.core.wmem_max): bench
            # --scenarios upload, 1,666-1,734 -> 1,873-1,904 req/s where the cap allows it.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            except OSError:
                pass
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def get_buffer(self, sizehint: int) -> bytearray:
        buffer = self._read_into = self._buffers.get()
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        view = memoryview(self._read_into)
        self._read_into = _NO_BUFFER
        self.data_received(view[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Records read from the responder: ``bytes``, or a view of the read buffer that may
        be overwritten after this call (what is kept is copied: the start of a record cut by
        the end of the read; body pieces passed on are views, which the read buffer's
        ``ReadBuffers`` never overwrites while they are alive)."""
        size = len(data)
        pos = 0
        view: memoryview | None = data if type(data) is memoryview else None
        if self._stdout_left or self._skip_left:
            # The rest of a body STDOUT record that started in an earlier read.
            view = memoryview(data)
            pos = self._continue_stdout(view)
            if pos == size:
                self._flush()
                return
        if self._buffer:
            data = self._buffer + data[pos:]  # (bytes: a copy)
            self._buffer = b""
            size = len(data)
            pos = 0
            view = None
        try:
            while size - pos >= _HEADER_LEN:
                # (records.header_at, inlined: a Python call less per record)
                version, kind, request_id, length, padding = _HEADER_UNPACK(data, pos)
                if version != 1:
                    _HEADER_AT(data, pos)  # raises: the peer does not speak FastCGI
                if request_id != self._rid:
                    raise BackendProtocolError(
                        f"{self.name} sent a record for request {request_id}, not {self._rid}"
                    )
                start = pos + _HEADER_LEN
                end = start + length + padding
                if kind == _STDOUT and self._head is None and self._sink is not None:
                    if not length:
                        if end > size:
                            break
                        pos = end
                        continue
                    # Body bytes go out as views of what was read: no copy. A record cut by
                    # the end of this read is passed on as far as it goes.
                    if view is None:
                        view = memoryview(data)
                    stop = start + length
                    if stop > size:
                        self._stdout_left = stop - size
                        self._skip_left = padding
                        if start < size:
                            self._sink.backend_body(view[start:size])
                        pos = size
                        break
                    self._sink.backend_body(view[start:stop])
                    if end > size:
                        self._skip_left = end - size
                        pos = size
                        break
                    pos = end
                    continue
                if end > size:
                    break
                content = bytes(data[start : start + length])
                pos = end
                if kind == _STDOUT:
                    if length:
                        self._on_stdout(content)
                elif kind == _END_REQUEST:
                    self._on_end(content)
                    if pos != size and self._sink is None:
                        raise BackendProtocolError(f"{self.name} sent records after END_REQUEST")
                    if self._closed:
                        return
                elif kind == _STDERR:
                    self._on_stderr(content)
                else:
                    raise BackendProtocolError(
                        f"{self.name} sent an unexpected FastCGI record of type {kind}"
                    )
        except BackendError as exc:
            self._fail(exc)
            return
        except FastCGIError as exc:
            self._fail(BackendProtocolError(f"{self.name}: {exc}"))
            return
        if pos < size:
            self._buffer = bytes(data[pos:])
        self._flush()

    def _continue_stdout(self, view: memoryview) -> int:
        """Pass on the rest of a STDOUT record begun in an earlier read; skip its padding.
        Returns how many bytes of ``view`` that took."""
        pos = 0
        left = self._stdout_left
        if left:
            take = min(left, len(view))
            self._stdout_left = left - take
            pos = take
            sink = self._sink
            if sink is not None and take:
                sink.backend_body(view[:take])
        if not self._stdout_left and self._skip_left:
            skip = min(self._skip_left, len(view) - pos)
            self._skip_left -= skip
            pos += skip
        return pos

    def _flush(self) -> None:
        sink = self._sink
        if sink is not None:
            sink.backend_flush()

    def eof_received(self) -> bool | None:
        self.closed_by_peer = True
        self._fail(
            self._closed_error(f"{self.name} closed the connection before ending the request")
        )
        return None

    def _nothing_came(self) -> bool:
        head = self._head
        return (
            head is not None
            and not head.started
            and not self._buffer
            and self._current is None
            and not self._queue
        )

    # -- the response ------------------------------------------------------------------------

    def _on_stdout(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            raise BackendProtocolError(f"{self.name} sent STDOUT with no request in flight")
        head = self._head
        if head is None:
            sink.backend_body(data)
            return
        try:
            parts = head.feed_parts(data)
        except CGIResponseError as exc:
            raise BackendProtocolError(f"{self.name} sent a bad CGI response head: {exc}") from exc
        if parts is None:
            return
        self._head = None
        status, reason, headers, body = parts
        sink.backend_head(status, reason, headers)
        if body and self._sink is sink:
            sink.backend_body(body)

    def _on_stderr(self, data: bytes) -> None:
        if data:
            self._stderr_tail = (self._stderr_tail + data)[-4096:]
            for line in data.decode("utf-8", "replace").splitlines():
                # Tagged with the application: its ERROR_LOG_DIR file gets the line too.
                logger.warning("%s stderr: %s", self.name, line, extra={"app": self.name})

    def _on_end(self, content: bytes) -> None:
        sink = self._sink
        if sink is None:
            raise BackendProtocolError(f"{self.name} sent END_REQUEST with no request in flight")
        if len(content) == 8:  # (records.decode_end_request, inlined: its usual case)
            protocol_status = _END_REQUEST_UNPACK(content)[1]
        else:
            _, protocol_status = records.decode_end_request(content)  # raises
        if protocol_status != 0:
            raise BackendProtocolError(
                f"{self.name} refused the request (protocol status {protocol_status})"
            )
        if self._head is not None:
            try:
                self._head.feed(b"")
            except CGIResponseError as exc:
                raise BackendProtocolError(f"{self.name}: {exc}") from exc
        self._sink = None
        if self._held_fd >= 0:
            self._release_answer()
        if self._current is not None:
            self._current.state = Follower.ENDED
            self._current = None
        # A request body we had not finished sending leaves STDIN records in flight that the
        # backend would read as belonging to no request: do not reuse the connection then.
        reusable = self._body_done and not self._closed
        if not reusable:
            self.close()
        sink.backend_end(reusable)
        if self._queue and not self._closed:
            self._promote()
        elif sink is _DISCARD and not self._closed and self._sink is None and not self._promised:
            # The last answer on the connection was one nobody waited for, so no lease is
            # left to give the connection back: tell the pool it is free.
            drained = self._on_drained
            if drained is not None:
                drained(self)

    def _promote(self) -> None:
        """The next queued request is now the one in progress: its answer comes next."""
        follower = self._queue.popleft()
        self._current = follower
        self._rid = follower.rid
        sink = follower.sink
        # An answer nobody waits for (withdrawn, or its client gone) is dropped unparsed: a
        # withdrawn request that was skipped has an empty one.
        self._head = None if sink is _DISCARD else self._cgi
        self._cgi.reset()
        self._began = time.monotonic()
        self._sink = sink
        if follower.paused and self._transport is not None:
            self._transport.pause_reading()
        sink.backend_started()

    # -- the request -------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """The connection is closed (or closing): it cannot serve another request."""
        return self._closed

    @property
    def usable(self) -> bool:
        """Whether this connection can take a new request."""
        return not self._closed and self._sink is None and not self._queue

    @property
    def in_flight(self) -> int:
        """Requests begun on this connection and not yet ended, the queued ones included, and
        the ones ``follower()`` has promised a place to."""
        return (self._sink is not None) + len(self._queue) + self._promised

    def when_drained(self, callback: Callable[[PooledUpstream], None]) -> None:
        self._on_drained = callback

    def follower(self, depth: int, max_running: float) -> Follower | None:
        """A handle for one more request queued behind those in flight (pipelining), when
        the connection is busy with requests whose bodies are all sent, fewer than ``depth``
        are in flight, and the one in progress began less than ``max_running`` s ago (a slow
        request would hold the queued ones up). Only for a responder that queues requests on
        a connection (Corral's worker advertises it: ``CORRAL_PIPELINE``). None otherwise."""
        in_flight = self.in_flight
        if (
            not in_flight
            or in_flight >= min(depth, MAX_PIPELINE_DEPTH)
            or self._closed
            or not self._body_done
            or self._php_fpm
            or (self._sink is not None and time.monotonic() - self._began > max_running)
        ):
            return None
        self._promised += 1
        return Follower(self)

    def _enqueue(
        self,
        follower: Follower,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        sink: ResponseSink,
    ) -> None:
        """Write a queued request (``Follower.begin``) behind those in flight."""
        self._promised -= 1
        transport = self._transport
        if self._closed or transport is None:
            follower.state = Follower.ENDED
            sink.backend_error(BackendNotStarted(f"the connection to {self.name} is closed"))
            return
        idle = self._sink is None  # (not narrowing ``_sink``: ``begin`` below sets it)
        if idle and not self._queue:
            # The requests before it ended meanwhile (the connection kept for it): served now.
            follower.state = Follower.QUEUED
            follower.sink = sink
            follower.rid = REQUEST_ID
            self._current = follower
            self.begin(static, params, sink, BODY_NONE)
            if self._sink is sink:
                sink.backend_started()
            return
        used = {self._rid, *(queued.rid for queued in self._queue)}
        rid = 1
        while rid in used:
            rid += 1
        try:
            encoded = self._encode_params(static, params, rid)
        except FastCGIError as exc:
            sink.backend_error(BackendProtocolError(f"cannot encode the request: {exc}"))
            return
        follower.rid = rid
        follower.sink = sink
        follower.state = Follower.QUEUED
        self._queue.append(follower)
        self.write_soon(b"".join((_BEGIN_KEEP_BY_ID[rid], encoded, _STDIN_END_BY_ID[rid])))

    def withdraw_stuck(self, limit: float) -> int:
        """Requests queued behind one that has run longer than ``limit`` s are withdrawn: the
        responder is told (ABORT_REQUEST: Corral's worker then skips a request it has not
        begun) and each one's sink hears ``BackendNotStarted``, so that the front serves it
        elsewhere. (Only requests of safe methods are queued: if one began just as it was
        withdrawn, running it twice is what RFC 9110 9.2.2 allows a retry of.) Their answers,
        whatever comes, are dropped. Returns how many were withdrawn."""
        queue = self._queue
        transport = self._transport
        if not queue or self._closed or transport is None or self._sink is None:
            return 0
        if time.monotonic() - self._began <= limit:
            return 0
        sinks: list[ResponseSink] = []
        aborts: list[bytes] = []
        for follower in queue:
            if follower.state != Follower.QUEUED:
                continue
            follower.state = Follower.WITHDRAWN
            aborts.append(records.encode_abort_request(follower.rid))
            if follower.sink is not _DISCARD:
                sinks.append(follower.sink)
                follower.sink = _DISCARD
        if aborts:
            self.write_now(b"".join(aborts))
        if sinks:
            asyncio.get_running_loop().call_soon(self._tell_not_started, sinks, "")
        return len(aborts)

    def _tell_not_started(self, sinks: list[ResponseSink], why: str) -> None:
        """``why`` the requests never began; empty: they were withdrawn."""
        for sink in sinks:
            sink.backend_error(
                BackendNotStarted(
                    f"{self.name}: {why or 'withdrawn from behind a slow request'}",
                    withdrawn=not why,
                )
            )

    def _detach(self, follower: Follower) -> None:
        """A queued request's client went away: its answer, when it comes, is dropped (and
        read at full speed: its client's pause no longer applies)."""
        follower.sink = _DISCARD
        follower.paused = False

    def _fail(self, exc: BackendError) -> None:
        super()._fail(exc)
        self._fail_queue()

    def close(self) -> None:
        self.flush_writes()
        super().close()
        self._fail_queue()

    def _fail_queue(self) -> None:
        """The connection is gone with requests queued behind the one in progress: none of
        them has started (the responder serves them in order), so each may go elsewhere."""
        queue = self._queue
        if not queue:
            return
        self._queue = deque()
        sinks = []
        for follower in queue:
            follower.state = Follower.ENDED
            if follower.sink is not _DISCARD:
                sinks.append(follower.sink)
        # Told from the event loop, not from inside whatever closes the connection (the pool's
        # release, another request's error handling): each goes back to the pool; when the
        # responder closed it (it may be dying), a moment later, so that the pool sees it gone.
        why = "the connection closed before the request began"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs (closing at exit): nobody is left to retry
            return
        if self.closed_by_peer:
            loop.call_later(PEER_CLOSE_RETRY_DELAY, self._tell_not_started, sinks, why)
        else:
            loop.call_soon(self._tell_not_started, sinks, why)

    def _encode_params(
        self, static: bytes, pairs: list[tuple[bytes, bytes]], rid: int = REQUEST_ID
    ) -> bytes:
        if self._php_fpm:
            # php-fpm decodes PARAMS record by record: never split a pair across records.
            return records.encode_params(
                rid,
                records.decode_pairs(static) + pairs,
                split_params=False,
                pad_empty=False,
            )
        encoded = _encode_pairs_remembered(pairs)
        length = len(static) + len(encoded)
        if length > 0xFFFF:
            return records.encode_stream(RecordType.PARAMS, rid, static + encoded, end=True)
        padding = -length & 7
        return b"".join(
            (
                _HEADER_PACK(1, _PARAMS, rid, length, padding),
                static,
                encoded,
                _ZEROS[padding],
                _PARAMS_END_BY_ID[rid],
            )
        )

    def begin(
        self,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        sink: ResponseSink,
        has_body: int,
    ) -> None:
        """Send BEGIN_REQUEST and PARAMS (and the empty STDIN when there is no body).

        ``static`` holds pairs already encoded (``encode_pairs``: the ones fixed per application
        and per client connection); ``params`` the rest. ``has_body`` is one of the
        ``corral.backends.BODY_*`` values: any but ``BODY_NONE`` leaves STDIN open until
        ``end_body()`` (``BODY_TUNNEL``: after a ``Status: 101`` head, STDIN and STDOUT carry the
        upgraded connection's raw bytes).
        """
        transport = self._transport
        if self._closed or transport is None or transport.is_closing():
            sink.backend_error(
                BackendNotReached(f"the connection to {self.name} is closed", written=False)
            )
            return
        self._sink = sink
        head = self._head = self._cgi
        head.reset()
        self._buffer = b""
        self._stdout_left = self._skip_left = 0
        self._rid = REQUEST_ID
        self._began = time.monotonic()
        try:
            encoded = self._encode_params(static, params)
        except FastCGIError as exc:
            self._sink = None
            self.close()
            sink.backend_error(BackendProtocolError(f"cannot encode the request: {exc}"))
            return
        self._body_done = not has_body
        if has_body:
            self._hold_answer()
            self.write_now(_BEGIN_KEEP + encoded)
        else:
            self.write_soon(b"".join((_BEGIN_KEEP, encoded, _STDIN_END)))
        if self._paused_by_peer:
            sink.backend_pause_writing()

    def send_body(self, data: bytes) -> None:
        """Send a piece of the request body as STDIN records."""
        if not data or self._sink is None or self._transport is None:
            return
        if self._held is not None:
            self.flush_writes()  # (what waited for the turn's end goes first)
        size = len(data)
        if size <= 0xFFFF:
            padding = -size & 7
            self._transport.writelines(
                (_HEADER_PACK(1, _STDIN, self._rid, size, padding), data, _ZEROS[padding])
            )
            return
        # Records of at most 65528 bytes (a multiple of 8: no padding), as views: no copy.
        view = memoryview(data)
        parts: list[bytes | memoryview] = []
        for offset in range(0, size, _STDIN_PIECE):
            piece = view[offset : offset + _STDIN_PIECE]
            padding = -len(piece) & 7
            parts.append(_HEADER_PACK(1, _STDIN, self._rid, len(piece), padding))
            parts.append(piece)
            if padding:
                parts.append(_ZEROS[padding])
        self._transport.writelines(parts)

    def end_body(self) -> None:
        """End the request body (the empty STDIN record)."""
        if self._body_done:
            return
        self._body_done = True
        if self._sink is None or self._transport is None:
            return
        self.write_now(_STDIN_END_BY_ID[self._rid])

    @property
    def stderr_tail(self) -> bytes:
        return self._stderr_tail


class Follower:
    """A request queued on a busy connection behind those in flight (``follower()``): the
    ``Upstream`` the front drives for it. Until it is the connection's request in
    progress, pausing is remembered and giving up (``abort``/``close``) only drops its
    answer; after that, both act on the connection as for any request."""

    NEW: Final = 0
    QUEUED: Final = 1
    WITHDRAWN: Final = 2
    ENDED: Final = 3

    __slots__ = ("conn", "paused", "rid", "sink", "state")

    def __init__(self, conn: FastCGIClientConnection) -> None:
        self.conn = conn
        self.rid = 0
        self.sink: ResponseSink = _DISCARD
        self.paused = False
        self.state = Follower.NEW

    @property
    def _in_progress(self) -> bool:
        return self.conn._current is self

    def begin(
        self,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        sink: ResponseSink,
        has_body: int,
    ) -> None:
        if has_body != BODY_NONE or self.state != Follower.NEW:
            raise ValueError("a queued request has no body and begins once")
        self.conn._enqueue(self, static, params, sink)

    def send_body(self, data: bytes) -> None:
        if self._in_progress:
            self.conn.send_body(data)

    def end_body(self) -> None:
        pass  # (queued requests have no body)

    def pause_reading(self) -> None:
        self.paused = True
        if self._in_progress:
            self.conn.pause_reading()

    def resume_reading(self) -> None:
        self.paused = False
        if self._in_progress:
            self.conn.resume_reading()

    def abort(self) -> None:
        if self._in_progress:
            self.conn.abort()
        else:
            self.conn._detach(self)

    def close(self) -> None:
        """Give the handle back: a request never begun frees its place, a queued one's answer
        will be dropped, and the one in progress closes the connection (as ``abort``)."""
        state = self.state
        if self._in_progress:
            self.conn.close()
        elif state == Follower.QUEUED:
            self.conn._detach(self)
        elif state == Follower.NEW:
            self.conn._promised -= 1
        self.state = Follower.ENDED

    @property
    def is_closed(self) -> bool:
        return self.conn.is_closed

    @property
    def stderr_tail(self) -> bytes:
        return self.conn.stderr_tail


__all__ = [
    "Address",
    "FastCGIClientConnection",
    "Follower",
    "ResponseSink",
    "connect",
    "encode_pairs",
    "parse_address",
]
