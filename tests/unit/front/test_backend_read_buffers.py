"""The front's FastCGI read buffer (``backends.readbuffer``): a buffer is read into again only
when no view of it is alive, and the FastCGI client reads through it as a BufferedProtocol."""

from __future__ import annotations

import asyncio
import threading

from corral.backends.fastcgi import FastCGIClientConnection
from corral.backends.readbuffer import KEEP_LENT, ReadBuffers, read_buffers


def test_a_buffer_nobody_sees_is_read_into_again() -> None:
    buffers = ReadBuffers(64)
    first = buffers.get()
    view = memoryview(first)[:10]
    view.release()
    assert buffers.get() is first
    assert len(first) == 64


def test_a_buffer_with_a_live_view_is_left_to_its_holder() -> None:
    buffers = ReadBuffers(64)
    first = buffers.get()
    first[:3] = b"abc"
    held = memoryview(first)[:3]  # (a transport that could not send it yet)
    second = buffers.get()
    assert second is not first
    second[:3] = b"xyz"
    assert bytes(held) == b"abc"
    assert buffers.lent == 1
    # Still held: a third read goes elsewhere again.
    third = buffers.get()
    assert third is not first
    del held
    # Let go of: the first buffer is used again (the read buffer was not held).
    assert buffers.get() is third
    fourth_holder = memoryview(third)
    assert buffers.get() is first
    del fourth_holder


def test_only_a_few_lent_buffers_are_remembered() -> None:
    buffers = ReadBuffers(16)
    holders = []
    for _ in range(KEEP_LENT + 5):
        holders.append(memoryview(buffers.get()))
    assert buffers.lent <= KEEP_LENT + 1
    assert len({id(view.obj) for view in holders}) == len(holders)


def test_each_thread_has_its_own() -> None:
    mine = read_buffers()
    assert read_buffers() is mine
    other: list[ReadBuffers] = []
    thread = threading.Thread(target=lambda: other.append(read_buffers()))
    thread.start()
    thread.join()
    assert other[0] is not mine


def test_the_fastcgi_client_is_a_buffered_protocol() -> None:
    # uvloop and asyncio read into get_buffer() only for a protocol that is not an
    # asyncio.Protocol.
    conn = FastCGIClientConnection("app")
    assert isinstance(conn, asyncio.BufferedProtocol)
    assert not isinstance(conn, asyncio.Protocol)
    buffer = conn.get_buffer(-1)
    assert len(buffer) >= 64 * 1024
