"""Requests queued on one FastCGI connection behind the one in progress (``follower()``).

In-process: the front's real ``FastCGIClientConnection`` over a Unix socket to a scripted
responder that reads every request it is sent, notes the ids, and answers them in order, all
answers in one write, as Corral's worker may when the requests were waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from corral.backends import BODY_LENGTH, BODY_NONE, BackendError, BackendNotStarted, fastcgi
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import RecordType

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Sink:
    """Collects what the client reports for one request."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.body = b""
        self.error: BackendError | None = None
        self.done = asyncio.get_running_loop().create_future()

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.events.append(f"head {status}")

    def backend_body(self, data: bytes | memoryview) -> None:
        self.body += bytes(data)

    def backend_end(self, reusable: bool) -> None:
        self.events.append(f"end {reusable}")
        self.done.set_result(None)

    def backend_error(self, exc: BackendError) -> None:
        self.error = exc
        self.events.append(f"error {type(exc).__name__}")
        if not self.done.done():
            self.done.set_result(None)

    def backend_flush(self) -> None:
        pass

    def backend_pause_writing(self) -> None:
        pass

    def backend_resume_writing(self) -> None:
        pass

    def backend_started(self) -> None:
        self.events.append("started")


async def read_requests(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` whole bodiless requests; return (request id, PATH_INFO) for each, and
    note ABORT_REQUEST records as (id, b"ABORT")."""
    got: list[tuple[int, bytes]] = []
    params: dict[int, bytes] = {}
    ended = 0
    while ended < count:
        header = await reader.readexactly(8)
        _, kind, rid, length, padding = records.HEADER.unpack(header)
        content = (await reader.readexactly(length + padding))[:length]
        if kind == RecordType.PARAMS:
            params[rid] = params.get(rid, b"") + content
        elif kind == RecordType.STDIN and not length:
            path = dict(records.decode_pairs(params.pop(rid, b""))).get(b"PATH_INFO", b"")
            got.append((rid, path))
            ended += 1
        elif kind == RecordType.ABORT_REQUEST:
            got.append((rid, b"ABORT"))
    return got


def answer(rid: int, path: bytes) -> bytes:
    body = b"answer to " + path
    head = b"Status: 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    return records.encode_response(rid, head + body)


async def with_backend(
    tmp_path: Path, script: Script, body: Callable[[str], Awaitable[None]]
) -> None:
    path = str(tmp_path / "backend.sock")
    server = await asyncio.start_unix_server(script, path)
    try:
        await asyncio.wait_for(body(path), 10)
    finally:
        server.close()
        await server.wait_closed()


def params(path: str) -> list[tuple[bytes, bytes]]:
    return [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", path.encode())]


def test_queued_requests_are_answered_in_turn_with_their_own_ids(tmp_path: Path) -> None:
    seen: list[tuple[int, bytes]] = []
    release = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.extend(await read_requests(reader, 3))
        await release.wait()
        # Every answer in one write: the client must go on past the first END_REQUEST.
        writer.write(b"".join(answer(rid, path) for rid, path in seen))
        await writer.drain()
        seen.extend(await read_requests(reader, 1))  # the connection is reusable after
        writer.write(answer(*seen[-1]))
        await writer.drain()

    async def body(path: str) -> None:
        conn = await fastcgi.connect(path)
        assert conn.follower(4, 60.0) is None  # idle: an ordinary request, not a queued one
        first, second, third = Sink(), Sink(), Sink()
        conn.begin(b"", params("/a"), first, BODY_NONE)
        followers = [conn.follower(4, 60.0), conn.follower(4, 60.0)]
        assert all(f is not None for f in followers)
        assert conn.in_flight == 3  # one in progress, two promised
        followers[0].begin(b"", params("/b"), second, BODY_NONE)  # type: ignore[union-attr]
        followers[1].begin(b"", params("/c"), third, BODY_NONE)  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first.done, second.done, third.done)
        assert first.events == ["head 200", "end True"]
        assert second.events == ["started", "head 200", "end True"]
        assert third.events == ["started", "head 200", "end True"]
        assert (first.body, second.body, third.body) == (
            b"answer to /a",
            b"answer to /b",
            b"answer to /c",
        )
        assert conn.in_flight == 0 and conn.usable
        again = Sink()
        conn.begin(b"", params("/d"), again, BODY_NONE)
        await again.done
        assert again.body == b"answer to /d"
        conn.close()

    asyncio.run(with_backend(tmp_path, script, body))
    ids = [rid for rid, _ in seen[:3]]
    assert len(set(ids)) == 3, ids  # distinct ids while they are in flight together
    assert seen[3][0] == 1  # a fresh request on the idle connection uses id 1 again


def test_no_room_for_a_queued_request(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def body(path: str) -> None:
        conn = await fastcgi.connect(path)
        conn.begin(b"", params("/a"), Sink(), BODY_NONE)
        taken = [conn.follower(3, 60.0), conn.follower(3, 60.0)]
        assert all(f is not None for f in taken)
        assert conn.follower(3, 60.0) is None  # three in flight: depth reached
        taken[1].close()  # type: ignore[union-attr]  # a place given back...
        assert conn.follower(3, 60.0) is not None  # ...is free again
        assert conn.follower(16, 0.0) is None  # the one in progress has run too long
        with_body = await fastcgi.connect(path)
        with_body.begin(b"", params("/upload"), Sink(), BODY_LENGTH)
        assert with_body.follower(4, 60.0) is None  # its body is not all sent
        php = await fastcgi.connect(path, php_fpm=True)
        php.begin(b"", params("/a"), Sink(), BODY_NONE)
        assert php.follower(4, 60.0) is None  # other responders serve one at a time
        for each in (conn, with_body, php):
            each.close()

    asyncio.run(with_backend(tmp_path, script, body))


def test_a_lost_connection_fails_the_request_in_progress_and_sends_the_queued_back(
    tmp_path: Path,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_requests(reader, 3)
        writer.close()  # dies before answering anything

    async def body(path: str) -> None:
        conn = await fastcgi.connect(path)
        sinks = [Sink(), Sink(), Sink()]
        conn.begin(b"", params("/a"), sinks[0], BODY_NONE)
        for sink, name in zip(sinks[1:], ("/b", "/c"), strict=True):
            follower = conn.follower(4, 60.0)
            assert follower is not None
            follower.begin(b"", params(name), sink, BODY_NONE)
        await asyncio.gather(*(sink.done for sink in sinks))
        assert sinks[0].events == ["error BackendClosed"]
        for sink in sinks[1:]:
            assert sink.events == ["error BackendNotStarted"]
            assert isinstance(sink.error, BackendNotStarted) and not sink.error.withdrawn

    asyncio.run(with_backend(tmp_path, script, body))


def test_requests_behind_a_slow_one_are_withdrawn_and_their_answers_dropped(
    tmp_path: Path,
) -> None:
    seen: list[tuple[int, bytes]] = []
    aborted = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.extend(await read_requests(reader, 3))
        # The two ABORT_REQUESTs for the queued ones (8 bytes each), then the slow answer.
        for _ in range(2):
            header = await reader.readexactly(8)
            _, kind, rid, _, _ = records.HEADER.unpack(header)
            assert kind == RecordType.ABORT_REQUEST
            seen.append((rid, b"ABORT"))
        aborted.set()
        first_rid, first_path = seen[0]
        # The worker skips what it has not begun: an empty answer for each.
        writer.write(
            answer(first_rid, first_path)
            + records.encode_response(seen[1][0], b"")
            + records.encode_response(seen[2][0], b"")
        )
        await writer.drain()
        await reader.read()

    async def body(path: str) -> None:
        conn = await fastcgi.connect(path)
        slow, queued, gone = Sink(), Sink(), Sink()
        conn.begin(b"", params("/slow"), slow, BODY_NONE)
        follower = conn.follower(4, 60.0)
        left = conn.follower(4, 60.0)
        assert follower is not None and left is not None
        follower.begin(b"", params("/b"), queued, BODY_NONE)
        left.begin(b"", params("/c"), gone, BODY_NONE)
        left.abort()  # its client went away while it waited: nothing will be said to it
        assert conn.withdraw_stuck(60.0) == 0  # the one in progress has not run that long
        await asyncio.sleep(0.02)
        assert conn.withdraw_stuck(0.01) == 2
        await queued.done
        assert queued.events == ["error BackendNotStarted"]
        assert isinstance(queued.error, BackendNotStarted) and queued.error.withdrawn
        await aborted.wait()
        await slow.done
        assert slow.body == b"answer to /slow"
        for _ in range(50):  # the two empty answers are read and dropped
            if conn.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert conn.in_flight == 0 and conn.usable
        assert gone.events == []
        conn.close()

    asyncio.run(with_backend(tmp_path, script, body))
    assert [(rid, what) for rid, what in seen[3:]] == [
        (seen[1][0], b"ABORT"),
        (seen[2][0], b"ABORT"),
    ]


@pytest.mark.parametrize("has_body", [BODY_LENGTH])
def test_a_queued_request_has_no_body(tmp_path: Path, has_body: int) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def body(path: str) -> None:
        conn = await fastcgi.connect(path)
        conn.begin(b"", params("/a"), Sink(), BODY_NONE)
        follower = conn.follower(4, 60.0)
        assert follower is not None
        with pytest.raises(ValueError, match="no body"):
            follower.begin(b"", params("/b"), Sink(), has_body)
        conn.close()

    asyncio.run(with_backend(tmp_path, script, body))
