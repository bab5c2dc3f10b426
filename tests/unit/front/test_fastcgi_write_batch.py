"""Requests to a worker leave once per turn of the event loop (``backends/writebatch.py``).

The front's real ``FastCGIClientConnection`` over a real Unix socket pair, on uvloop (the
front's loop) and on asyncio's own: requests begun in one turn reach the worker's socket
together, in one write, after the turn's callbacks; records written at once (ABORT_REQUEST, a
body) come after those held; a connection that closes sends what it held. And a property of the
mixin alone: whatever the mix of held and immediate writes, the bytes leave in order.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import BODY_LENGTH, BODY_NONE, fastcgi
from corral.backends.discard import Discard
from corral.backends.writebatch import BatchedWriter, WriteBatch
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import RecordType

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


#: The answers are not what these tests look at: the backends' own null sink takes them.
Sink = Discard


def params(path: str) -> list[tuple[bytes, bytes]]:
    return [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", path.encode())]


def parse(data: bytes) -> list[tuple[str, int, bytes]]:
    """The records in ``data`` as (kind, request id, PATH_INFO for PARAMS / content)."""
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while pos < len(data):
        _, kind, rid, length, padding = records.HEADER.unpack_from(data, pos)
        content = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + padding
        if kind == RecordType.PARAMS and content:
            content = dict(records.decode_pairs(content)).get(b"PATH_INFO", b"")
        out.append((RecordType(kind).name, rid, content))
    return out


def pending(peer: socket.socket) -> bytes:
    """Everything the peer has received so far (without waiting)."""
    got = b""
    while True:
        try:
            chunk = peer.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got += chunk


def run(
    loop_name: str,
    body: Callable[[fastcgi.FastCGIClientConnection, socket.socket, list[int]], Awaitable[None]],
) -> None:
    async def main() -> None:
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_unix_connection(
            lambda: fastcgi.FastCGIClientConnection("w"), sock=ours
        )
        # Count the connection's writes to its transport (each is one system call when the
        # socket takes it all, as here).
        writes: list[int] = []
        transport = conn._transport
        assert transport is not None
        real_write = transport.write

        class Counting:
            def __getattr__(self, name: str) -> object:
                return getattr(transport, name)

            def write(self, data: bytes) -> None:
                writes.append(len(data))
                real_write(data)

        conn._transport = Counting()  # type: ignore[assignment]
        try:
            await asyncio.wait_for(body(conn, peer, writes), 10)
        finally:
            conn._transport = transport
            conn.close()
            peer.close()

    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_requests_begun_in_one_turn_leave_in_one_write(loop_name: str) -> None:
    async def body(
        conn: fastcgi.FastCGIClientConnection, peer: socket.socket, writes: list[int]
    ) -> None:
        conn.begin(b"", params("/a"), Sink(), BODY_NONE)
        followers = [conn.follower(8, 60.0) for _ in range(3)]
        for follower, path in zip(followers, ("/b", "/c", "/d"), strict=True):
            assert follower is not None
            follower.begin(b"", params(path), Sink(), BODY_NONE)
        # Nothing has left yet: the turn's other callbacks may still add to it.
        assert pending(peer) == b""
        assert writes == []
        await next_turn()
        got = parse(pending(peer))
        assert len(writes) == 1, writes  # four requests, one write
        begun = [(rid, path) for kind, rid, path in got if kind == "PARAMS" and path]
        assert begun == [(1, b"/a"), (2, b"/b"), (3, b"/c"), (4, b"/d")]
        # Each request whole: BEGIN_REQUEST, PARAMS, empty PARAMS, empty STDIN, in turn.
        kinds = [kind for kind, rid, _ in got if rid == 3]
        assert kinds == ["BEGIN_REQUEST", "PARAMS", "PARAMS", "STDIN"]

    run(loop_name, body)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_an_abort_written_at_once_follows_the_requests_held(loop_name: str) -> None:
    async def body(
        conn: fastcgi.FastCGIClientConnection, peer: socket.socket, writes: list[int]
    ) -> None:
        conn.begin(b"", params("/a"), Sink(), BODY_NONE)
        follower = conn.follower(8, 60.0)
        assert follower is not None
        follower.begin(b"", params("/b"), Sink(), BODY_NONE)
        # Withdrawn in the same turn (a negative limit: the one in progress is "too slow").
        assert conn.withdraw_stuck(-1.0) == 1
        got = parse(pending(peer))
        assert [(kind, rid) for kind, rid, _ in got][-1] == ("ABORT_REQUEST", 2)
        assert ("PARAMS", 2, b"/b") in got  # its request came before its abort
        assert len(writes) == 2  # the held requests, then the abort
        await next_turn()
        assert pending(peer) == b""  # nothing left to write at the turn's end

    run(loop_name, body)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_body_follows_its_head_and_what_was_held(loop_name: str) -> None:
    async def body(
        conn: fastcgi.FastCGIClientConnection, peer: socket.socket, writes: list[int]
    ) -> None:
        conn.begin(b"", params("/a"), Sink(), BODY_LENGTH)  # a body: written at once
        assert [kind for kind, _, _ in parse(pending(peer))] == [
            "BEGIN_REQUEST",
            "PARAMS",
            "PARAMS",
        ]
        conn.send_body(b"xyz")
        conn.end_body()
        got = parse(pending(peer))
        assert got == [("STDIN", 1, b"xyz"), ("STDIN", 1, b"")]

    run(loop_name, body)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_connection_closed_in_the_turn_sends_what_it_held(loop_name: str) -> None:
    async def body(
        conn: fastcgi.FastCGIClientConnection, peer: socket.socket, writes: list[int]
    ) -> None:
        conn.begin(b"", params("/a"), Sink(), BODY_NONE)
        conn.close()
        await next_turn()
        peer.settimeout(5)
        data = b""
        while chunk := peer.recv(65536):
            data += chunk
        assert ("PARAMS", 1, b"/a") in parse(data)  # then the end of the stream

    run(loop_name, body)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing


def _writer(batch: WriteBatch) -> BatchedWriter:
    """A ``BatchedWriter`` over a fake transport (set on one, not subclassed: a compiled build's
    classes take no interpreted subclasses)."""
    writer = BatchedWriter()
    writer._transport = FakeTransport()  # type: ignore[assignment]
    writer._batch = batch
    return writer


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["soon", "now", "turn"]),
            st.integers(0, 2),
            st.binary(min_size=1, max_size=4),
        ),
        max_size=40,
    )
)
def test_held_and_immediate_writes_keep_their_order(steps: list[tuple[str, int, bytes]]) -> None:
    """Any mix of writes to three connections, with ends of turns in between: each
    connection's bytes leave in the order they were written, and held ones in one write per
    connection per turn."""
    loop = asyncio.new_event_loop()
    try:
        batch = WriteBatch(loop)
        writers = [_writer(batch) for _ in range(3)]
        sent: list[list[bytes]] = [[], [], []]
        now_writes = [0, 0, 0]
        turns = 0
        for what, index, data in steps:
            writer = writers[index]
            if what == "turn":
                loop.run_until_complete(asyncio.sleep(0))
                turns += 1
                continue
            sent[index].append(data)
            if what == "soon":
                writer.write_soon(data)
            else:
                writer.write_now(data)
                now_writes[index] += 1
        loop.run_until_complete(asyncio.sleep(0))
        for index, writer in enumerate(writers):
            transport = writer._transport
            assert isinstance(transport, FakeTransport)
            assert b"".join(transport.writes) == b"".join(sent[index])
            # At most one write per immediate write (with what was held before it), plus one
            # per turn for the held ones.
            assert len(transport.writes) <= 2 * now_writes[index] + turns + 1
    finally:
        loop.close()
