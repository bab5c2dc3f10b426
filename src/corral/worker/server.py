"""The worker's FastCGI server: one connection from the front (``Connection``, served by one
thread at a time), what the threads share (``ServeState``), and the liveness watch. The threads
themselves, their accept loop and the graceful stop are ``corral.worker.threads``.

Blocking sockets, one ``recv_into`` buffer per connection, and one ``sendall`` per response
when it is small (head + body + END_REQUEST leave together).
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from corral.errors import WORKER_LINE_START, WORKER_NOTICE_TAG, ExitCode
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.connection import SERVER, FastCGIConnection
from corral.protocol.fastcgi.constants import (
    CORRAL_ELASTIC,
    CORRAL_PIPELINE,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    HEADER_LEN,
    ProtocolStatus,
    RecordType,
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
    Stderr,
    Stdin,
    UnknownManagementRecord,
    UnknownType,
)
from corral.worker import wsgi
from corral.worker.environ import build_environ, environ_from_params
from corral.worker.wsgi import ClientDisconnected, WSGIApp

RECV_SIZE = 256 * 1024
#: Bytes of a thread's receive buffer kept when its connection ends (ThreadBuffers.shrink).
KEEP_PAGES = 64 * 1024
MADV_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None)
#: STDIN bytes held for an app that streams its response without reading its body: past this,
#: the worker stops looking ahead for ABORT_REQUEST (the front's data waits in the socket).
MAX_LOOKAHEAD = 1 << 20
#: File blocks: a multiple of 8 that fits one record, so full blocks need no padding.
FILE_BLOCK = 65528
#: Output at least this long (the pieces of one flush together) is framed without copying or
#: joining its pieces (sendmsg of record headers and slices of each piece).
ZERO_COPY_MIN = 128 * 1024
#: Buffers per sendmsg call (Linux and macOS allow 1024).
IOV_BATCH = 512
#: How often a thread waiting on an idle kept-alive connection checks for a new connection
#: that no free thread takes (seconds): the longest such a connection waits.
IDLE_CHECK = 0.05
IDLE_TIMEVAL = struct.pack(
    "@li4x" if sys.platform == "darwin" else "@ll", 0, int(IDLE_CHECK * 1_000_000)
)
#: While a response streams, how often the worker looks for ABORT_REQUEST (seconds).
POLL_INTERVAL = 0.005
#: The send buffer asked for on each connection from the front (the kernel caps it at
#: net.core.wmem_max): a large response then leaves in fewer, larger writes, and the front
#: reads it in fewer wake-ups. `bench/run.py --scenarios 1mib` on a machine whose cap allows
#: it: 551-585 -> 500-510 µs of CPU per 1 MiB response.
SEND_BUFFER = 1024 * 1024
#: How long a closing connection waits for the front to finish sending a body nobody read.
LINGER_SECONDS = 2.0
#: A request that begins this long (seconds) after the previous one on its connection began
#: may have been withdrawn while it waited (the front sends ABORT_REQUEST for requests queued
#: behind a slow one and serves them elsewhere): the worker looks before it runs it.
WITHDRAWN_CHECK_AFTER = 0.001
#: ``Connection.looked`` when the socket was read just before the next request begins.
JUST_READ = -1.0

_STDOUT = RecordType.STDOUT
_PADDING = tuple(bytes(n) for n in range(8))
_BAD_LENGTH = (
    b"Status: 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 26\r\n\r\nmalformed Content-Length.\n"
)


def log(message: str, *, notice: bool = False) -> None:
    """A line to stderr (the host logs it); ``notice``: news rather than a problem. Never
    raises: with the host gone, stderr may be a pipe nobody reads, and logging must not stop
    what comes next."""
    tag = WORKER_NOTICE_TAG if notice else ": "
    try:
        sys.stderr.write(f"{WORKER_LINE_START}{os.getpid()}]{tag}{message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class ServeState:
    """What the threads share: the app, the settings, the count of requests in flight, and the
    threads' own bookkeeping (``corral.worker.threads``)."""

    def __init__(
        self,
        app: WSGIApp,
        threads: int,
        stderr_to_front: bool,
        max_threads: int | None = None,
        thread_idle_timeout: float = 10.0,
    ) -> None:
        self.app = app
        #: Threads always kept; and at most (``max_threads`` above ``threads``: elastic, a
        #: thread per connection started on demand, see ``corral.worker.threads``).
        self.threads = threads
        self.max_threads = max(threads, max_threads or threads)
        self.thread_idle_timeout = thread_idle_timeout
        self.stderr_to_front = stderr_to_front
        self.environ_base = wsgi.environ_base(multithread=self.max_threads > 1)
        self.values = {
            FCGI_MAX_CONNS: str(self.max_threads).encode(),
            FCGI_MAX_REQS: str(self.max_threads).encode(),
            FCGI_MPXS_CONNS: b"0",
            CORRAL_PIPELINE: b"1",  # requests queued on a connection: see Connection.later
            CORRAL_ELASTIC: b"1" if self.max_threads > threads else b"0",
        }
        self.stopping = False
        #: The listening socket (non-blocking; threads wait on it with poll).
        self.listener: socket.socket | None = None
        #: Threads waiting in accept (a hint for idle connections), threads alive, and the
        #: slots of ``current`` no thread holds; all under ``free_lock``.
        self.free_threads = 0
        self.alive = 0
        self.free_slots = list(range(self.max_threads - 1, -1, -1))
        self.free_lock = threading.Lock()
        #: The connection each serving thread is on (None between connections); a connection
        #: with a request in progress has a non-zero ``rid``. Read when stopping, without a
        #: lock: each thread writes only its own slot.
        self.current: list[Connection | None] = [None] * self.max_threads

    def busy(self) -> bool:
        return any(conn is not None and conn.rid for conn in self.current)


class ThreadBuffers:
    """A serving thread's I/O buffers, reused by each connection it serves (allocating and
    zeroing 256 KiB per connection would cost more than a small request).

    The receive buffer is an anonymous mapping, not a ``bytearray``: the kernel gives it pages
    only where a read wrote, so a thread that serves small requests holds a page or two of it
    rather than 256 KiB zeroed up front (with adaptive concurrency a worker may run a hundred
    threads: 25 MiB of zeros). ``shrink`` gives back the pages a large upload touched."""

    __slots__ = ("_file", "recv", "recv_view")

    def __init__(self) -> None:
        self.recv = mmap.mmap(-1, RECV_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.recv_view = memoryview(self.recv)
        self._file: memoryview | None = None

    def shrink(self) -> None:
        """Return the receive buffer's pages past the first KEEP_PAGES bytes to the kernel (a
        connection ended: the next one may never need them). They read as zeros again."""
        if MADV_DONTNEED is not None:
            self.recv.madvise(MADV_DONTNEED, KEEP_PAGES, RECV_SIZE - KEEP_PAGES)

    def file_view(self) -> memoryview:
        """The buffer file_wrapper blocks are read into: a record header, then the block."""
        if self._file is None:
            self._file = memoryview(bytearray(HEADER_LEN + FILE_BLOCK + 8))
        return self._file


class Connection:
    """One FastCGI connection from the front; implements ``wsgi.Channel`` for its request."""

    def __init__(
        self, sock: socket.socket, state: ServeState, buffers: ThreadBuffers | None = None
    ) -> None:
        self.sock = sock
        self.state = state
        self.fcgi = FastCGIConnection(SERVER)
        if buffers is None:
            buffers = ThreadBuffers()
        self.buffers = buffers
        self.buf = buffers.recv
        self.view = buffers.recv_view
        self.gone = False  # the front closed the connection, or it broke
        self.broken = False  # the front broke the protocol
        # The request in progress (0: none).
        self.rid = 0
        self.aborted = False
        self.stdin: deque[bytes] = deque()
        self.stdin_held = 0
        self.stdin_done = False
        self.next_poll = 0.0  # when poll_aborted may next look at the socket
        #: Events of requests that began while another was in progress (FCGI_MPXS_CONNS=0: one
        #: request at a time), served in turn. Corral's front queues short requests this way
        #: so that the worker finds its next request waiting instead of sleeping for it.
        self.later: deque[Any] = deque()
        self.later_bytes = 0
        #: When the socket was last read (``time.monotonic()``), to know whether a request
        #: about to run may have been withdrawn since (see ``_withdrawn_whole``); JUST_READ
        #: after ``_idle_wait``'s read (the next request to begin takes its own start).
        self.looked = 0.0

    # ---------------------------------------------------------------- I/O

    def _recv(self) -> None:
        """Block until the socket has bytes; feed them (or the EOF) to the codec."""
        while True:
            try:
                n = self.sock.recv_into(self.buf, RECV_SIZE)
            except BlockingIOError:
                continue  # IDLE_CHECK elapsed (SO_RCVTIMEO) in the middle of a request: wait on
            except OSError:
                n = 0
            break
        if not n:
            self.gone = True
            self.fcgi.receive_data(b"")
            return
        # Parsed in place: the codec copies each record's content out once, and lets go of
        # the buffer before it asks for more (a request body is not copied into a bytes per
        # read first).
        self.looked = time.monotonic()
        self.fcgi.receive_view(self.view[:n])

    def _sendall(self, data: bytes | memoryview) -> None:
        if self.gone:
            raise ClientDisconnected("the front closed the connection")
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.gone = True
            self.aborted = True
            raise ClientDisconnected(f"the front closed the connection ({exc})") from None

    def _event(self) -> Any:
        """The next event (or NEED_DATA): held ones first (see ``later``), then the codec's;
        CLOSED when the front closed the connection, even in the middle of a request (a
        disconnect, not a protocol error)."""
        if self.later:
            event = self._take_later()
            if event is not None:
                return event
        try:
            return self.fcgi.next_event()
        except RemoteProtocolError:
            if self.gone:
                self.aborted = True
                return CLOSED
            raise

    def _take_later(self) -> Any:
        """The oldest held event for the request in progress, or between requests the oldest
        of all (a BEGIN_REQUEST); None when none applies."""
        later = self.later
        rid = self.rid
        for index, event in enumerate(later):
            if event.request_id == rid if rid else type(event) is BeginRequest:
                del later[index]
                if type(event) is Stdin:
                    self.later_bytes -= len(event.data)
                return event
        return None

    def _drop_held(self, rid: int) -> None:
        """Request ``rid`` has ended: what is still held of it (the ABORT_REQUEST that withdrew
        it, the end of its input) is dropped; the id may begin a new request next."""
        kept: deque[Any] = deque()
        for event in self.later:
            if event.request_id != rid:
                kept.append(event)
            elif type(event) is Stdin:
                self.later_bytes -= len(event.data)
        self.later = kept

    def _hold(self, event: Any) -> None:
        """Keep an event of a request that waits its turn."""
        self.later.append(event)
        if type(event) is Stdin:
            self.later_bytes += len(event.data)
            if self.later_bytes > MAX_LOOKAHEAD:
                raise RemoteProtocolError(
                    f"more than {MAX_LOOKAHEAD} bytes of body for requests waiting their turn"
                )

    def _next(self) -> Any:
        """The next event, reading the socket as needed (blocking); CLOSED at EOF."""
        while True:
            event = self._event()
            if event is not NEED_DATA:
                return event
            self._recv()

    def _poll_socket(self) -> bool:
        """Non-blocking read; True if bytes arrived (or EOF was seen)."""
        if self.gone:
            return False
        try:
            n = self.sock.recv_into(self.buf, RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            n = 0
        if not n:
            self.gone = True
            self.fcgi.receive_data(b"")
            return True
        self.looked = time.monotonic()
        self.fcgi.receive_view(self.view[:n])
        return True

    # ---------------------------------------------------------------- events

    def _side_event(self, event: Any) -> None:
        """Handle an event that is not the current request's next step."""
        kind = type(event)
        if kind is Stdin:
            if event.request_id == self.rid:
                if event.data:
                    self.stdin.append(event.data)
                    self.stdin_held += len(event.data)
                else:
                    self.stdin_done = True
            else:
                self._hold(event)
        elif kind is AbortRequest:
            if event.request_id == self.rid:
                self.aborted = True
            else:
                self._hold(event)
        elif kind is BeginRequest or kind is Params:
            # Another request while one is in progress: one at a time per connection
            # (FCGI_MPXS_CONNS=0), so it waits its turn (the codec has checked its id).
            self._hold(event)
        elif kind is GetValues:
            values = self.state.values
            answer = [(name, values[name]) for name in event.names if name in values]
            self._send_event(GetValuesResult(answer))
        elif kind is UnknownManagementRecord:
            self._send_event(UnknownType(event.record_type))
        else:
            # DATA (filter role only)...: the codec's state table already rejected what is
            # illegal; nothing to do.
            pass

    def _send_event(self, event: Any) -> None:
        self._sendall(self.fcgi.send(event))

    # ---------------------------------------------------------------- wsgi.Channel

    def read_stdin(self) -> bytes:
        while True:
            if self.stdin:
                data = self.stdin.popleft()
                self.stdin_held -= len(data)
                return data
            if self.aborted:
                raise ClientDisconnected("the front aborted the request")
            if self.stdin_done:
                return b""
            try:
                event = self._next()
            except RemoteProtocolError as exc:
                self.broken = self.aborted = True
                log(f"FastCGI protocol error from the front; closing its connection: {exc}")
                raise ClientDisconnected("the front broke the FastCGI protocol") from None
            if event is CLOSED:
                self.aborted = True
                raise ClientDisconnected("the front closed the connection")
            if type(event) is Stdin and event.request_id == self.rid:
                if event.data:
                    return event.data
                self.stdin_done = True
                return b""
            self._side_event(event)

    def send_stdout(self, pieces: list[bytes]) -> None:
        if self.aborted:
            raise ClientDisconnected("the request was aborted")
        total = 0
        for piece in pieces:
            total += len(piece)
        if total < ZERO_COPY_MIN:
            data = b"".join(pieces) if len(pieces) > 1 else pieces[0]
            self._sendall(self.fcgi.send_response(self.rid, data, end=False))
            return
        # Large output: record headers and slices of each piece go out with sendmsg, so the
        # body is neither joined to the head nor copied into a framed buffer first (a small
        # piece, such as the head, is a record of its own).
        rid = self.rid
        # Full records (FILE_BLOCK, a multiple of 8: no padding) share one header.
        full = records.pack_header(_STDOUT, rid, FILE_BLOCK)
        parts: list[bytes | memoryview] = []
        for piece in pieces:
            view = memoryview(piece)
            size = len(piece)
            whole = size - size % FILE_BLOCK
            for start in range(0, whole, FILE_BLOCK):
                parts += (full, view[start : start + FILE_BLOCK])
            if whole < size:
                size -= whole
                pad = -size & 7
                parts += (records.pack_header(_STDOUT, rid, size, pad), view[whole:])
                if pad:
                    parts.append(_PADDING[pad])
        self._sendmsg_all(parts)

    def _sendmsg_all(self, parts: list[bytes | memoryview]) -> None:
        """Send every buffer of ``parts``, in order, with as few system calls as possible."""
        if self.gone:
            raise ClientDisconnected("the front closed the connection")
        sendmsg = self.sock.sendmsg
        left = sum(map(len, parts))
        index = 0
        try:
            while True:
                batch = (
                    parts
                    if not index and len(parts) <= IOV_BATCH
                    else parts[index : index + IOV_BATCH]
                )
                sent = sendmsg(batch)
                left -= sent
                if not left:
                    return  # (usually at once: the send buffer holds a MiB)
                while sent:
                    size = len(parts[index])
                    if sent >= size:
                        sent -= size
                        index += 1
                    else:
                        parts[index] = memoryview(parts[index])[sent:]
                        sent = 0
        except OSError as exc:
            self.gone = True
            self.aborted = True
            raise ClientDisconnected(f"the front closed the connection ({exc})") from None

    def send_file(self, readinto: Callable[[memoryview], int | None], limit: int | None) -> int:
        if self.aborted:
            raise ClientDisconnected("the request was aborted")
        view = self.buffers.file_view()
        sent = 0
        rid = self.rid
        first = True
        while limit is None or sent < limit:
            want = FILE_BLOCK if limit is None else min(FILE_BLOCK, limit - sent)
            n = readinto(view[HEADER_LEN : HEADER_LEN + want])
            if not n:
                break
            pad = -n & 7
            view[:HEADER_LEN] = records.pack_header(_STDOUT, rid, n, pad)
            end = HEADER_LEN + n + pad
            if pad:
                view[HEADER_LEN + n : end] = bytes(pad)
            self._sendall(view[:end])
            sent += n
            if first:
                first = False
            elif self.poll_aborted():
                break
        return sent

    def poll_aborted(self) -> bool:
        if self.aborted:
            return True
        # Looking costs a system call: at most once per POLL_INTERVAL while blocks stream fast
        # (a block after a pause, as in a slow stream, always looks).
        now = time.monotonic()
        if now < self.next_poll:
            return False
        self.next_poll = now + POLL_INTERVAL
        while True:
            event = self._event()
            if event is NEED_DATA:
                if self.stdin_held > MAX_LOOKAHEAD or not self._poll_socket():
                    break
                continue
            if event is CLOSED:
                self.aborted = True
                break
            self._side_event(event)
        return self.aborted

    def _stderr_to_front(self, text: str) -> None:
        if self.rid and not self.aborted and not self.gone:
            try:
                self._sendall(self.fcgi.send(Stderr(self.rid, text.encode("utf-8", "replace"))))
            except (ClientDisconnected, FastCGIError):
                pass

    # ---------------------------------------------------------------- the loop

    def serve(self) -> socket.socket | None:
        """Serve requests until the front closes the connection or asks to. Returns a newly
        accepted connection when this idle one gave its thread to it (see ``_idle_wait``)."""
        handoff: socket.socket | None = None
        try:
            fcgi = self.fcgi
            while True:
                if not self.later:
                    if not fcgi.buffered and not self.gone:
                        # Nothing received is left to read: wait for the next request.
                        handoff = self._idle_wait()
                        if handoff is not None:
                            return handoff
                    # The next request received (one of several that came in one read, say)
                    # taken whole when it has no body.
                    whole = fcgi.next_whole_request()
                    if whole is not None:
                        self._whole_request(whole[0], whole[2])
                        if self.gone or self.broken or fcgi.must_close or self.state.stopping:
                            return None
                        continue
                event = self._event()
                if event is NEED_DATA:
                    handoff = self._idle_wait()
                    if handoff is not None:
                        return handoff
                    continue
                if event is CLOSED:
                    return None
                if type(event) is BeginRequest:
                    self._request(event)
                    if self.gone or self.broken or self.fcgi.must_close or self.state.stopping:
                        return None
                else:
                    self._side_event(event)
        except RemoteProtocolError as exc:
            self.broken = True
            log(f"FastCGI protocol error from the front; closing its connection: {exc}")
        except ClientDisconnected:
            pass
        finally:
            self._close(linger=handoff is None)
        return None

    def _idle_wait(self) -> socket.socket | None:
        """Between requests, wait for the front's next record (and feed it to the codec), or
        give this thread to a new connection.

        A front may keep this connection idle while it opens another (nginx does, with
        upstream keepalive, when requests overlap): a thread parked here would leave the new
        connection waiting forever. The socket's receive timeout (SO_RCVTIMEO, IDLE_CHECK)
        wakes the wait now and then, at no cost to a busy connection; when no thread is free
        and a connection waits, this thread takes it, and the idle one is closed (no request
        is in flight, so nothing is lost)."""
        state = self.state
        while True:
            try:
                n = self.sock.recv_into(self.buf, RECV_SIZE)
            except BlockingIOError:
                listener = state.listener
                if listener is None or state.free_threads > 0:
                    continue
                try:
                    return listener.accept()[0]
                except OSError:  # none waiting (or another thread took it)
                    continue
            except OSError:
                n = 0
            if not n:
                self.gone = True
                self.fcgi.receive_data(b"")
                return None
            self.looked = JUST_READ
            # (As bytes: the requests without a body in it are then taken whole, each in turn,
            # by the codec's ``next_whole_request``.)
            self.fcgi.receive_data(self.buf[:n])
            return None

    def _whole_request(self, rid: int, params: bytes) -> None:
        """Serve a request the codec took whole (``next_whole_request``): its PARAMS and its
        (empty) STDIN have all arrived."""
        try:
            self.rid = rid
            self.aborted = False
            self.stdin_done = True
            self.next_poll = 0.0
            if self._withdrawn_whole(rid):
                # Served elsewhere by now: the app must not run it (an empty, aborted answer).
                self._sendall(self.fcgi.send_response(rid, b"", app_status=1))
                return
            self._respond(rid, environ_from_params(self.state.environ_base, params))
        finally:
            self.rid = 0
            self.stdin.clear()
            self.stdin_held = 0
            if self.later:
                self._drop_held(rid)

    def _request(self, begin: BeginRequest) -> None:
        rid = begin.request_id
        if begin.role != Role.RESPONDER:
            self._send_event(EndRequest(rid, 0, ProtocolStatus.UNKNOWN_ROLE))
            return
        try:
            self.rid = rid
            self.aborted = False
            self.stdin_done = False
            self.next_poll = 0.0
            params = None
            while params is None:
                event = self._next()
                if event is CLOSED:
                    return
                if type(event) is Params and event.request_id == rid:
                    params = event.params
                else:
                    self._side_event(event)
                    if self.aborted:
                        self._sendall(self.fcgi.send_response(rid, b"", app_status=1))
                        return
            self._run(rid, params)
        finally:
            self.rid = 0
            self.stdin.clear()
            self.stdin_held = 0
            if self.later:
                self._drop_held(rid)

    def _run(self, rid: int, params: list[tuple[bytes, bytes]]) -> None:
        now = time.monotonic()
        looked = self.looked
        look = looked != JUST_READ and now - looked > WITHDRAWN_CHECK_AFTER
        if looked == JUST_READ:
            self.looked = now
        if (look or self.later) and self._withdrawn(rid, look):
            # Served elsewhere by now: the app must not run it (an empty, aborted answer).
            self._sendall(self.fcgi.send_response(rid, b"", app_status=1))
            return
        self._respond(rid, build_environ(self.state.environ_base, params))

    def _withdrawn_whole(self, rid: int) -> bool:
        """Whether the front withdrew request ``rid``, taken whole, while it waited its turn
        (the front sends ABORT_REQUEST for requests queued behind a slow one and serves them
        elsewhere): among the held events, or the records received after it, which stay
        unread (the next requests keep the fast path). The socket is read first (without
        blocking) when it was last read more than WITHDRAWN_CHECK_AFTER ago."""
        now = time.monotonic()
        looked = self.looked
        if looked == JUST_READ:
            self.looked = now  # (read just before this request began)
        elif now - looked > WITHDRAWN_CHECK_AFTER:
            self._read_ahead()
            if self.gone:
                return True
        if self.later and self._withdrawn(rid, False):
            return True
        return self.fcgi.abort_ahead(rid)

    def _read_ahead(self) -> None:
        """Feed what the front sent since the last read to the codec, without blocking and
        without reading it into events (``receive_more``: the requests in it are still taken
        whole)."""
        self.looked = time.monotonic()
        if self.fcgi.buffered > MAX_LOOKAHEAD:
            return
        try:
            n = self.sock.recv_into(self.buf, RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if not n:
            self.gone = True
            self.fcgi.receive_data(b"")
            return
        self.fcgi.receive_more(self.buf[:n])

    def _withdrawn(self, rid: int, look: bool) -> bool:
        """Whether the front withdrew request ``rid`` (ABORT_REQUEST) while it waited its
        turn: among the held events, and with ``look``, among what has arrived since."""
        if look:
            self.next_poll = 0.0
            return self.poll_aborted()
        return any(type(event) is AbortRequest and event.request_id == rid for event in self.later)

    def _respond(self, rid: int, environ: dict[str, Any]) -> None:
        state = self.state
        length = None
        if "CONTENT_LENGTH" in environ:
            try:
                length = wsgi.content_length(environ)
            except ValueError as exc:
                log(f"bad request from the front: {exc}")
                self._sendall(self.fcgi.send_response(rid, _BAD_LENGTH))
                return
        if length is None and "HTTP_UPGRADE" in environ:
            # An Upgrade request without a body: the front keeps its STDIN open in case the
            # answer is a 101 (a tunnel), which a WSGI app never gives. Its body is empty, not
            # "until the end of STDIN" (that end comes only after the answer).
            length = 0
        if not length and self.stdin_done and not self.stdin:
            environ["wsgi.input"] = wsgi.EMPTY_INPUT  # (no body, and all of it has arrived)
        else:
            environ["wsgi.input"] = wsgi.InputStream(self.read_stdin, length)
        if state.stderr_to_front:
            environ["wsgi.errors"] = wsgi.ErrorStream(self._stderr_to_front)
        try:
            app_status, tail = wsgi.run(state.app, environ, self)
        except ClientDisconnected:
            if not (self.gone or self.broken):
                # ABORT_REQUEST: the app has stopped and been closed; end the request.
                self._sendall(self.fcgi.send_response(rid, b"", app_status=1))
            return
        # Look at what is already received (no system call): usually the end of STDIN.
        while not self.stdin_done:
            event = self._event()
            if event is NEED_DATA or event is CLOSED:
                break
            self._side_event(event)
        self._sendall(self.fcgi.send_response(rid, tail, app_status=app_status))

    def _close(self, linger: bool = True) -> None:
        sock = self.sock
        try:
            if linger and not (self.gone or self.broken or self.stdin_done or self.aborted):
                # The front may still be sending a body the app did not read: closing with
                # unread data would reset the connection and could destroy our response.
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(LINGER_SECONDS)
                deadline = time.monotonic() + LINGER_SECONDS
                while time.monotonic() < deadline and sock.recv_into(self.buf):
                    pass
        except OSError:
            pass
        finally:
            sock.close()


# -------------------------------------------------------------------- threads and the process


def watch_liveness(fd: int) -> None:
    """Block on the host's liveness pipe; at EOF the host is gone, and so are we."""

    def watch() -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                try:
                    log("the host went away (liveness pipe closed); exiting")
                finally:
                    os._exit(ExitCode.ORPHANED)

    threading.Thread(target=watch, name="corral-liveness", daemon=True).start()
