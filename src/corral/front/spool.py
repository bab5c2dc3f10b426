"""Bytes kept aside for a slow party: request bodies spooled before they are sent (request
buffering), and responses spilled to disk for a client that reads slower than its backend writes.

``BodySpool``: a request body, in memory up to a threshold, the rest in a temporary file. The
exchange reads the body whole into it before it leases a worker (so a slow uploader holds no
worker), then sends it with its CONTENT_LENGTH (php-cgi and php-fpm read up to CONTENT_LENGTH:
a chunked body without it reaches them empty). ``pieces`` hands it out in order, from memory
then from the file.

``Spill``: a response's framed bytes that the client's transport has no room for (it is above
``write_buffer_high``), appended to a temporary file and read back as the client drains; the
backend is read at full speed meanwhile and its worker released at the end of its response.
Where the client's socket is a plain one (not TLS), the file goes back out with ``os.sendfile``
(``send_to``), not through this process's memory.

Temporary files are made in a private folder (mode 0700) of the system's temporary directory
(TMPDIR), created once per process, and unlinked at once: nothing is left on disk by a crash,
and the space is the kernel's to reclaim when the file is closed (or the object freed). Reads
and writes are ``os.pwrite``/``os.pread`` at offsets, from the page cache: like the static
files' reads, a few microseconds per piece on the event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile

from corral.backends import Upstream

#: How much one read from a spool or a spill hands out (the static files' piece size).
PIECE = 256 * 1024
#: What a spill drained with ``send_to`` writes through the transport when the socket is full:
#: just enough for the transport to say when the client has taken it (see Http1Response).
NOTIFY_PIECE = 16 * 1024

_folder: str | None = None


def _private_folder() -> str:
    """This process's private folder for temporary files (made once, removed at exit)."""
    global _folder
    if _folder is None or not os.path.isdir(_folder):
        _folder = tempfile.mkdtemp(prefix="corral-spool-")
        atexit.register(_remove_folder, _folder)
    return _folder


def _remove_folder(folder: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def temporary_file() -> int:
    """A new temporary file's descriptor, already unlinked (only this process can reach it)."""
    fd, path = tempfile.mkstemp(dir=_private_folder())
    os.unlink(path)
    return fd


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]


class _TempFile:
    """A temporary file that closes its descriptor when it is freed (or closed)."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd = -1
        self.fd = temporary_file()

    def close(self) -> None:
        fd = self.fd
        if fd >= 0:
            self.fd = -1
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class BodySpool:
    """One request body read whole before it is sent: memory up to ``memory_limit`` bytes,
    then a temporary file; read back in order by ``next``."""

    __slots__ = (
        "_file",
        "_index",
        "_memory",
        "_memory_limit",
        "_memory_size",
        "_offset",
        "paused",
        "size",
    )

    def __init__(self, memory_limit: int) -> None:
        self._memory_limit = memory_limit
        self._memory: list[bytes] = []
        self._memory_size = 0
        self._file: _TempFile | None = None
        #: Bytes received.
        self.size = 0
        #: The backend's send buffer is full: sending waits for it to drain.
        self.paused = False
        # Where reading back has got to: the memory pieces, then the file.
        self._index = 0
        self._offset = 0

    def write(self, data: bytes) -> None:
        size = self.size
        self.size = size + len(data)
        if self._file is None:
            if self._memory_size + len(data) <= self._memory_limit:
                self._memory.append(data)
                self._memory_size += len(data)
                return
            self._file = _TempFile()
        _pwrite_all(self._file.fd, data, size - self._memory_size)

    def next(self) -> bytes | None:
        """The next piece of the body (from its start), or None at its end."""
        memory = self._memory
        index = self._index
        if index < len(memory):
            self._index = index + 1
            return memory[index]
        file = self._file
        remaining = self.size - self._memory_size - self._offset
        if file is None or remaining <= 0:
            return None
        data = os.pread(file.fd, min(PIECE, remaining), self._offset)
        if not data:
            raise OSError("the request body's spool file ended early")
        self._offset += len(data)
        return data

    def send(self, backend: Upstream) -> bool:
        """Send the rest of the body to ``backend`` while it takes it (until ``paused``: its
        send buffer is full); True once all of it is sent and the body ended. ``OSError`` when
        the file cannot be read back."""
        self.paused = False
        while not self.paused:  # (close() also stops it: the exchange was dropped meanwhile)
            data = self.next()
            if data is None:
                self.close()
                backend.end_body()
                return True
            backend.send_body(data)
        return False

    def close(self) -> None:
        self.paused = True
        self._memory = []
        self._index = 0
        if self._file is not None:
            self._file.close()
            self._file = None


#: Bytes held by every response spill of this process (``response_spill_total`` bounds it).
_spilled_total = 0


def spilled_total() -> int:
    """Bytes of responses waiting on disk for slow clients, in this process."""
    return _spilled_total


class Spill:
    """A response's bytes waiting on disk for a slow client: appended at the end, read from
    the start; ``full`` past ``limit`` bytes held by this response, or ``total_limit`` held by
    every spill of the process."""

    __slots__ = ("_file", "_read", "_written", "limit", "total_limit")

    def __init__(self, limit: int, total_limit: int) -> None:
        self._written = 0
        self._read = 0
        self._file = _TempFile()
        self.limit = limit
        self.total_limit = total_limit

    @property
    def held(self) -> int:
        """Bytes written and not read back yet."""
        return self._written - self._read

    @property
    def full(self) -> bool:
        return self._written - self._read >= self.limit or _spilled_total >= self.total_limit

    def add(self, pieces: list[bytes | memoryview]) -> None:
        global _spilled_total
        fd = self._file.fd
        offset = self._written
        try:
            for piece in pieces:
                _pwrite_all(fd, piece, offset)
                offset += len(piece)
        finally:
            _spilled_total += offset - self._written
            self._written = offset

    def take(self, most: int = PIECE) -> bytes:
        """The next piece for the client, at most ``most`` bytes (empty once everything was
        read)."""
        global _spilled_total
        size = min(most, self._written - self._read)
        if size <= 0:
            return b""
        data = os.pread(self._file.fd, size, self._read)
        if not data:
            raise OSError("response spill file ended early")
        self._read += len(data)
        _spilled_total -= len(data)
        return data

    def send_to(self, out_fd: int) -> int:
        """Send what waits straight from the file to the non-blocking socket ``out_fd``
        (``os.sendfile``: the bytes do not pass through this process) until it is all sent or
        the socket is full; the bytes sent. ``OSError`` when the socket fails or the system
        cannot send from this file (the caller then reads and writes instead)."""
        global _spilled_total
        sent_total = 0
        while self._read < self._written:
            try:
                sent = os.sendfile(out_fd, self._file.fd, self._read, self._written - self._read)
            except BlockingIOError:
                break
            if not sent:
                raise OSError("response spill file ended early")
            self._read += sent
            _spilled_total -= sent
            sent_total += sent
        return sent_total

    def close(self) -> None:
        """Give the file and its share of ``response_spill_total`` back (again: nothing)."""
        global _spilled_total
        _spilled_total -= self._written - self._read
        self._read = self._written
        self._file.close()

    def __del__(self) -> None:
        # (A connection lost while its response waited on disk; or no file could be made.)
        if hasattr(self, "_file"):
            self.close()
