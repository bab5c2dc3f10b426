"""A large response body moved from a FastCGI responder's socket to the client's with ``splice``.

Relaying a body through the front's memory costs two copies per byte (out of the responder's
Unix socket, into the client's TCP socket) plus the system calls around them; on Linux,
``splice`` moves the socket's pages into a pipe and from the pipe into the client's socket by
reference instead (bench/relay_floor.py: the relay's CPU per MiB falls by half or more).

``BodySplice`` takes over a FastCGI connection's socket in the middle of a STDOUT record
(``backends.fastcgi`` hands it over when the client's side offers a ``SpliceTarget`` and a body
record is cut by the end of a read). The transport's reading is paused; the record headers are
read from a duplicate of the socket's descriptor (eight bytes at a time: never a byte of body)
and each record's content is spliced into a pipe, and from the pipe to the client, until:

- a record that is not more of the body (END_REQUEST, STDERR, the empty STDOUT, a body longer
  than the response's Content-Length): its header, and what the socket holds after it, go
  back to the connection's ordinary reader (``SplicingReader.splice_returned``);
- the client's socket is full (a client slower than its application): what the pipe holds is
  read back and handed on as an ordinary body piece, with the rest of the record, so that the
  front's usual slow-client path (the transport's buffer, then the spill to disk that frees the
  worker) takes over exactly as without splicing;
- the responder's socket ends or breaks (the connection fails: the client's response is cut,
  as without splicing), or the client's socket breaks (``SpliceTarget.splice_broken``: the
  client is cut off, and the front gives the connection up as for any client that left).

While the responder has written nothing more, the duplicate descriptor waits in the event loop
(``add_reader``: the loop refuses a descriptor that a transport owns, hence the duplicate).
Nothing blocks, and the body never exists in the front's memory. Pipes of 1 MiB
(``F_SETPIPE_SZ``) are reused by the thread's splices once empty.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import threading

from corral.backends import BackendClosed, BackendError, SinkedProtocol, SpliceTarget
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import HEADER_LEN, RecordType
from corral.protocol.fastcgi.errors import FastCGIError

#: Whether the system can splice (Linux).
AVAILABLE = hasattr(os, "splice")
#: Bytes a pipe is asked to hold (capped by /proc/sys/fs/pipe-max-size for non-root users).
PIPE_SIZE = 1024 * 1024
#: Empty pipes kept per thread for the next splices.
KEEP_PIPES = 8
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if AVAILABLE else 0
_STDOUT = int(RecordType.STDOUT)
#: What moved the splice on, or stopped it (``BodySplice._fill``).
_FULL, _WAIT, _STOP, _EOF = 0, 1, 2, 3


class _Pipes(threading.local):
    def __init__(self) -> None:
        self.free: list[tuple[int, int]] = []


_pipes = _Pipes()


def _take_pipe() -> tuple[int, int, int]:
    """An empty pipe (read end, write end) and what it holds."""
    free = _pipes.free
    if free:
        read_end, write_end = free.pop()
    else:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # (the user's pipe quota is spent: the default size still works)
    return read_end, write_end, fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)


def _give_pipe(read_end: int, write_end: int, empty: bool) -> None:
    if empty and len(_pipes.free) < KEEP_PIPES:
        _pipes.free.append((read_end, write_end))
    else:
        os.close(read_end)
        os.close(write_end)


class BodySplice:
    """Moves one response's body records from a responder's socket to a client's socket."""

    __slots__ = (
        "_capacity",
        "_fd",
        "_header",
        "_in_pipe",
        "_loop",
        "_owner",
        "_pipe_r",
        "_pipe_w",
        "_record_left",
        "_rid",
        "_room",
        "_skip_left",
        "_target",
        "_waiting",
        "active",
    )

    def __init__(
        self,
        owner: SplicingReader,
        target: SpliceTarget,
        socket_fd: int,
        rid: int,
        record_left: int,
        skip_left: int,
    ) -> None:
        """Take over ``socket_fd`` (whose transport the caller has paused) in the middle of a
        body record of request ``rid``, with ``record_left`` bytes of content and
        ``skip_left`` of padding still in the socket. ``start()`` begins."""
        self._owner = owner
        self._target = target
        self._loop = asyncio.get_running_loop()
        self._fd = os.dup(socket_fd)
        self._rid = rid
        self._record_left = record_left
        self._skip_left = skip_left
        self._room = target.splice_room() - record_left
        self._header = b""
        self._pipe_r, self._pipe_w, self._capacity = _take_pipe()
        self._in_pipe = 0
        self._waiting = False
        #: False once ended, whichever way (the owner then holds the socket again).
        self.active = True

    def start(self) -> None:
        self._run()

    def cancel(self) -> None:
        """Stop at once (the connection is being closed): nothing is handed back."""
        if self.active:
            self._end()

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        while self.active:
            state = self._fill()
            if self._in_pipe and not self._drain():
                return  # (handed back, or the client is gone)
            if state == _FULL:
                continue
            if state == _WAIT:
                if not self._waiting:
                    self._waiting = True
                    self._loop.add_reader(self._fd, self._run)
                return
            if state == _STOP:
                self._hand_back(b"")
            else:
                self._end()
                self._owner.splice_failed(
                    BackendClosed("the responder closed the connection in the middle of a body")
                )
            return

    def _fill(self) -> int:
        """Move what the responder's socket holds into the pipe, record by record."""
        fd = self._fd
        try:
            while self._in_pipe < self._capacity:
                left = self._record_left
                if left:
                    moved = os.splice(fd, self._pipe_w, min(left, self._capacity - self._in_pipe),
                                      flags=_FLAGS)  # fmt: skip
                    if not moved:
                        return _EOF
                    self._record_left = left - moved
                    self._in_pipe += moved
                elif self._skip_left:
                    skipped = os.read(fd, self._skip_left)
                    if not skipped:
                        return _EOF
                    self._skip_left -= len(skipped)
                else:
                    data = os.read(fd, HEADER_LEN - len(self._header))
                    if not data:
                        return _EOF
                    header = self._header = self._header + data
                    if len(header) < HEADER_LEN:
                        continue
                    kind, rid, length, padding = records.header_at(header, 0)
                    if kind != _STDOUT or rid != self._rid or not length or length > self._room:
                        return _STOP
                    self._header = b""
                    self._room -= length
                    self._record_left = length
                    self._skip_left = padding
        except BlockingIOError:
            # The socket is empty, or the pipe is full (then drained, and filled again).
            return _FULL if self._in_pipe else _WAIT
        except OSError:
            return _EOF
        except FastCGIError:  # (not a FastCGI header: the ordinary reader says so)
            return _STOP
        return _FULL

    def _drain(self) -> bool:
        """Send what the pipe holds to the client; False when the splice ended meanwhile."""
        target = self._target
        while self._in_pipe:
            client = target.splice_fd()
            if client < 0:
                self._hand_back(self._read_pipe())
                return False
            try:
                sent = os.splice(self._pipe_r, client, self._in_pipe, flags=_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self._end()
                target.splice_broken(exc)
                return False
            if sent:
                self._in_pipe -= sent
                target.spliced(sent)
                continue
            # The client's socket is full: the front's slow-client path takes the rest.
            self._hand_back(self._read_pipe())
            return False
        return True

    # -- the end -------------------------------------------------------------------------------

    def _read_pipe(self) -> bytes:
        pieces = []
        while self._in_pipe:
            piece = os.read(self._pipe_r, self._in_pipe)
            if not piece:
                break
            pieces.append(piece)
            self._in_pipe -= len(piece)
        return b"".join(pieces)

    def _hand_back(self, leftover: bytes) -> None:
        """Give the socket back to the owner's reader, with what was read and not taken."""
        unread = self._header
        if unread and len(unread) == HEADER_LEN:
            # What follows (an END_REQUEST's content, usually all there is) comes along, so
            # the reader need not wait for one more read.
            try:
                unread += os.read(self._fd, 65536)
            except OSError:
                pass
        record_left, skip_left = self._record_left, self._skip_left
        self._end()
        self._owner.splice_returned(leftover, record_left, skip_left, unread)

    def _end(self) -> None:
        self.active = False
        if self._waiting:
            self._waiting = False
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        _give_pipe(self._pipe_r, self._pipe_w, not self._in_pipe)
        self._in_pipe = 0


class SplicingReader(SinkedProtocol):
    """The part of a FastCGI client connection (``backends.fastcgi``) that hands a body over to
    a ``BodySplice`` and takes the socket back from it. The connection sets ``_splice_fd`` to
    its socket when it is a Unix socket (splicing from TCP would work as well, but a remote
    responder is not worth the pipe) and calls ``_offer_splice`` after each read's flush."""

    _rid: int
    _stdout_left: int
    _skip_left: int
    _body_done: bool
    #: The splice in progress, the socket it may read (-1: none), and whether the front asked
    #: for reading to stay paused while a splice held the socket.
    _splice: BodySplice | None = None
    _splice_fd = -1
    _pause_after_splice = False

    def _flush(self) -> None:
        """Tell the sink that the events of a read are delivered (the connection's)."""
        raise NotImplementedError

    @property
    def splicing(self) -> bool:
        """A splice holds the socket."""
        splice = self._splice
        return splice is not None and splice.active

    def _offer_splice(self, target: SpliceTarget | None) -> None:
        """After a read: when a body record is cut by its end and the response offers its
        socket, the rest of the body goes by splice."""
        transport = self._transport
        if (
            target is None
            or not self._stdout_left
            or self._splice_fd < 0
            or self.splicing
            or not self._body_done
            or self._closed
            or transport is None
        ):
            return
        try:
            splice = BodySplice(
                self, target, self._splice_fd, self._rid, self._stdout_left, self._skip_left
            )
        except OSError:
            return  # (no descriptor left for the duplicate: read as usual)
        transport.pause_reading()
        self._splice = splice
        self._stdout_left = self._skip_left = 0
        splice.start()

    def splice_returned(
        self, leftover: bytes, record_left: int, skip_left: int, unread: bytes
    ) -> None:
        """The splice ended: ``leftover`` body bytes it could not send (the client is slow),
        ``record_left`` and ``skip_left`` bytes of the current record's content and padding
        still in the socket, then ``unread``: bytes of records it read and did not take."""
        self._splice = None
        self._stdout_left, self._skip_left = record_left, skip_left
        transport = self._transport
        if transport is not None and not self._closed and not self._pause_after_splice:
            transport.resume_reading()
        self._pause_after_splice = False
        sink = self._sink
        if leftover and sink is not None:
            sink.backend_body(leftover)
        if unread:
            self.data_received(unread)  # (which flushes)
        elif leftover:
            self._flush()

    def splice_failed(self, exc: BackendError) -> None:
        """The responder's socket ended or broke in the middle of the body."""
        self._splice = None
        self._fail(exc)

    def _cancel_splice(self) -> None:
        splice = self._splice
        if splice is not None:
            self._splice = None
            splice.cancel()

    def pause_reading(self) -> None:
        if self.splicing:
            self._pause_after_splice = True  # (the splice's own reading stops at its end)
        elif self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.splicing:
            self._pause_after_splice = False
        elif self._transport is not None and not self._closed:
            self._transport.resume_reading()
