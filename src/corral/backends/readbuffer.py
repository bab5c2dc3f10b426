"""The buffer the front's FastCGI connections read their responders' answers into.

uvloop hands a plain ``asyncio.Protocol`` each read as a new ``bytes``, copied out of its own
256 KiB buffer: for a large response, one more copy of every byte in the front (and a large
allocation per read). A ``BufferedProtocol`` names the buffer to read into instead, and the body
pieces it passes on are views of that buffer, with no copy.

Reads are synchronous on the event loop (the buffer is asked for, filled and handed over in one
callback), so every connection of the loop can share one buffer. A view of it may outlive the
read, though: a client transport that could not send a piece at once keeps it, and so does an
HTTP/2 stream waiting for a window. A buffer is therefore reused only when nothing exports it
any more (Python's buffer protocol counts every live view; resizing a ``bytearray`` that has
any raises ``BufferError``, a check of a few nanoseconds on the byte kept spare for it). Until
then its holders keep it alive and the next read goes to another one: one from the few kept
that have come back, else a new one. Never written while anyone can see it, so no holder ever
sees its bytes change.
"""

from __future__ import annotations

import threading

#: Bytes per read: uvloop's own 256 KiB, and 4 KiB more for the FastCGI framing around a body
#: (a record header per 64 KiB, the head's record, END_REQUEST), so that a body of a power of
#: two (1 MiB: four reads and four client writes) does not leave a read and a write of a few
#: hundred bytes at its end (bench/README.md, "Performance II (session 7)"). 1 MiB reads (a
#: worker's 1 MiB answer in one or two reads, one client write) measured no better in
#: bench/run.py's 1mib: the copies into and out of a buffer larger than the CPU's cache then
#: miss it (bench/README.md, "Performance II (continued)").
READ_SIZE = 260 * 1024
#: Buffers still held elsewhere that are looked at again for reuse; past this many, the oldest
#: is left to its holders (the garbage collector frees it with them).
KEEP_LENT = 4


def _free(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` is alive (it may be written again)."""
    try:
        buffer.append(0)  # (into the spare byte: no reallocation)
    except BufferError:
        return False
    del buffer[-1]
    return True


def _new(size: int) -> bytearray:
    buffer = bytearray(size + 1)
    del buffer[-1]  # one spare byte of capacity, for _free's probe
    return buffer


class ReadBuffers:
    """The read buffer of one event loop's connections (``get`` before each read)."""

    __slots__ = ("_current", "_lent", "_size")

    def __init__(self, size: int = READ_SIZE) -> None:
        self._size = size
        self._current: bytearray | None = None
        self._lent: list[bytearray] = []

    def get(self) -> bytearray:
        """A buffer that no one else can see, to read into now."""
        current = self._current
        if current is not None:
            if _free(current):
                return current
            lent = self._lent
            lent.append(current)
            for index, buffer in enumerate(lent):
                if buffer is not current and _free(buffer):
                    del lent[index]
                    self._current = buffer
                    return buffer
            if len(lent) > KEEP_LENT:
                del lent[0]
        current = self._current = _new(self._size)
        return current

    @property
    def lent(self) -> int:
        """Buffers still seen elsewhere and kept for reuse (tests, diagnostics)."""
        return len(self._lent)


_local = threading.local()


def read_buffers() -> ReadBuffers:
    """This thread's read buffers (an event loop runs in one thread: its reads never overlap)."""
    try:
        buffers: ReadBuffers = _local.buffers
    except AttributeError:
        buffers = _local.buffers = ReadBuffers()
    return buffers
