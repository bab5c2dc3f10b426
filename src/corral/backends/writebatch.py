"""Requests to a worker written once per turn of the event loop, not once per request.

Under load the front serves many clients in one turn of its event loop (one ``epoll_wait``'s
events): several of them may begin a request on the same worker connection in that turn (queued
behind each other: ``Dispatcher.try_follow``), and one read of a worker's answers ends several
requests whose releases hand the connection to the next waiters at once. Written as they come,
each of those requests is a system call of its own (uvloop writes at once when its buffer is
empty), and the worker may read them one by one. Held until the turn's events are all handled,
they leave in one write and arrive in one read (bench/README.md, "Performance II (session 7)").

``WriteBatch`` is the loop's list of connections with records waiting; its first entry of a turn
schedules one ``call_soon`` that writes them all (uvloop runs it once the turn's I/O callbacks
are done, before it polls again: the wait adds no latency beyond the turn). ``BatchedWriter`` is
what a connection mixes in: ``write_soon`` for what may wait for the turn's end, and
``write_now`` for the rest (a request body, ABORT_REQUEST), which writes whatever waits first so
that the connection's records keep their order. A connection that closes writes what waits
first, as if it had been written at once (the transport sends it before it closes).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Protocol


class Flushable(Protocol):
    def flush_writes(self) -> None: ...


class WriteBatch:
    """One event loop's connections with writes held for the end of the current turn."""

    __slots__ = ("_dirty", "_flush_soon", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._dirty: list[Flushable] = []
        #: (The bound method made once, not at every turn that writes.)
        self._flush_soon = self._flush

    def add(self, conn: Flushable) -> None:
        """``conn`` holds writes: flush it at the end of this turn (it is added once per
        turn: by its first held write)."""
        dirty = self._dirty
        if not dirty:
            self.loop.call_soon(self._flush_soon)
        dirty.append(conn)

    def _flush(self) -> None:
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            conn.flush_writes()


_local = threading.local()


def write_batch(loop: asyncio.AbstractEventLoop) -> WriteBatch:
    """The write batch of ``loop`` (one per loop; an event loop runs in one thread)."""
    batch: WriteBatch | None = getattr(_local, "batch", None)
    if batch is None or batch.loop is not loop:
        batch = _local.batch = WriteBatch(loop)
    return batch


class BatchedWriter:
    """Mixed into a backend connection: its writes, held for the end of the loop's turn or
    written at once, in order. ``_transport`` is the connection's; ``_batch`` is set when the
    connection is made (``write_batch``)."""

    _transport: asyncio.Transport | None
    _batch: WriteBatch | None = None
    #: What waits for the end of the turn (None: nothing).
    _held: list[bytes] | None = None

    def write_soon(self, data: bytes) -> None:
        """Write ``data`` at the end of this turn of the loop, with what else waits."""
        held = self._held
        if held is not None:
            held.append(data)
            return
        batch = self._batch
        if batch is None:  # (no loop seen: write at once)
            self.write_now(data)
            return
        self._held = [data]
        batch.add(self)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` now, after whatever waits for the end of the turn."""
        if self._held is not None:
            self.flush_writes()
        transport = self._transport
        if transport is not None:
            transport.write(data)

    def flush_writes(self) -> None:
        """Write what waits, in one system call (nothing when the connection has closed
        meanwhile: its requests' sinks hear of it from the connection)."""
        held = self._held
        if held is None:
            return
        self._held = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(held[0] if len(held) == 1 else b"".join(held))
