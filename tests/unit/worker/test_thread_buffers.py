"""A serving thread's receive buffer: an anonymous mapping whose pages past the first
KEEP_PAGES bytes go back to the kernel when a connection ends."""

from __future__ import annotations

import sys

import pytest

from corral.worker.server import KEEP_PAGES, MADV_DONTNEED, RECV_SIZE, ThreadBuffers


def test_the_buffer_is_writable_through_its_view_and_recv_into() -> None:
    buffers = ThreadBuffers()
    assert len(buffers.recv) == len(buffers.recv_view) == RECV_SIZE
    buffers.recv_view[:5] = b"hello"
    assert bytes(buffers.recv_view[:5]) == b"hello"


@pytest.mark.skipif(MADV_DONTNEED is None, reason=f"no MADV_DONTNEED on {sys.platform}")
def test_shrink_keeps_the_first_pages_and_gives_back_the_rest() -> None:
    buffers = ThreadBuffers()
    buffers.recv_view[:] = b"x" * RECV_SIZE  # a large upload went through it
    buffers.shrink()
    assert bytes(buffers.recv_view[:KEEP_PAGES]) == b"x" * KEEP_PAGES
    # The pages past KEEP_PAGES were dropped: an anonymous mapping's pages read as zeros.
    assert bytes(buffers.recv_view[KEEP_PAGES:]) == bytes(RECV_SIZE - KEEP_PAGES)
