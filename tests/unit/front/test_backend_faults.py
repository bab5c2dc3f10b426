"""A misbehaving FastCGI backend costs one request a 502/504, never the server.

In-process: a real FrontServer on a loopback port, a real FastCGIClientConnection, and a scripted
FastCGI "backend" (an asyncio server on a Unix socket) that misbehaves in one way per test.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.unit.front.prefix_router import PrefixRouter

from corral.backends import fastcgi
from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import RecordType
from corral.supervision.lease import Lease

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK_RESPONSE = records.encode_response(
    1, b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
)


@dataclass
class FakePool:
    """Connects a new backend connection per request; records how each was released."""

    path: str
    php_fpm: bool = False
    released: list[bool] = field(default_factory=list)

    name = "app"

    def lease_or_wait(self, deliver: object, queueable: bool = False, first: bool = False) -> None:
        return None  # always the awaited path

    def cancel_wait(self, waiter: object) -> None:
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        conn = await fastcgi.connect(self.path, php_fpm=self.php_fpm)
        return Lease(conn, conn, 0, 0)

    def try_acquire(self) -> None:
        return None  # always the awaited path

    def release(self, lease: Lease, reusable: bool) -> None:
        self.released.append(reusable)
        lease.conn.close()


async def _read_request(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Read records until the empty STDIN record; return (type, content) pairs."""
    got: list[tuple[int, bytes]] = []
    while True:
        header = await reader.readexactly(8)
        _, kind, _, length, padding = records.HEADER.unpack(header)
        content = await reader.readexactly(length + padding)
        got.append((kind, content[:length]))
        if kind == RecordType.STDIN and length == 0:
            return got


async def _exchange(
    tmp_path: Path,
    script: Script,
    request: bytes,
    *,
    settings: FrontSettings | None = None,
    php_fpm: bool = False,
) -> tuple[bytes, FakePool]:
    path = str(tmp_path / "backend.sock")
    server = await asyncio.start_unix_server(script, path)
    pool = FakePool(path, php_fpm=php_fpm)
    front = FrontServer(PrefixRouter([AppRoute("app", pool)]), settings or FrontSettings())
    [(host, port)] = await front.listen("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data, pool
    finally:
        await front.stop(1)
        server.close()


def run(coro: Awaitable[tuple[bytes, FakePool]]) -> tuple[bytes, FakePool]:
    return asyncio.run(coro)  # type: ignore[arg-type]


GET = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def test_garbage_from_the_backend_is_a_502(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nnot fastcgi at all")
        await writer.drain()

    data, pool = run(_exchange(tmp_path, script, GET))
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert pool.released == [False]


def test_a_bad_cgi_head_is_a_502(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(records.encode_response(1, b"no colon here\r\n\r\nbody"))
        await writer.drain()

    data, _ = run(_exchange(tmp_path, script, GET))
    assert data.startswith(b"HTTP/1.1 502 ")


def test_eof_before_end_request_is_a_502(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(records.encode_stream(RecordType.STDOUT, 1, b"Status: 200 OK\r\n"))
        await writer.drain()
        writer.close()

    data, pool = run(_exchange(tmp_path, script, GET))
    assert data.startswith(b"HTTP/1.1 502 ")
    assert pool.released == [False]


def test_eof_after_the_head_aborts_the_response(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            records.encode_stream(RecordType.STDOUT, 1, b"Content-Type: text/plain\r\n\r\npart")
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    data, _ = run(_exchange(tmp_path, script, GET))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in data
    assert data.endswith(b"4\r\npart\r\n")  # no last chunk: the client sees the truncation


def test_a_hanging_backend_is_a_504(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    data, pool = run(_exchange(tmp_path, script, GET, settings=FrontSettings(response_timeout=0.5)))
    assert data.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert pool.released == [False]


def test_refused_request_is_a_502(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(records.encode_end_request(1, 0, 2))  # FCGI_OVERLOADED
        await writer.drain()

    data, _ = run(_exchange(tmp_path, script, GET))
    assert data.startswith(b"HTTP/1.1 502 ")


def test_stderr_records_are_logged_and_the_response_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(records.encode_stream(RecordType.STDERR, 1, b"something odd\n"))
        writer.write(OK_RESPONSE)
        await writer.drain()

    with caplog.at_level(logging.WARNING, logger="corral.backend"):
        data, pool = run(_exchange(tmp_path, script, GET))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nok")
    assert pool.released == [True]
    assert any("something odd" in r.getMessage() for r in caplog.records)


def test_php_fpm_mode_sends_whole_pairs_and_no_padding_on_empty_records(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = b""
        while not raw.endswith(records.encode_stream(RecordType.STDIN, 1, b"")):
            raw += await reader.read(65536)
        seen.append(raw)
        writer.write(OK_RESPONSE)
        await writer.drain()

    fields = b"".join(b"X-Long-%d: %s\r\n" % (i, b"v" * 5000) for i in range(16))
    request = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + fields + b"\r\n"
    settings = FrontSettings(max_header_size=200_000)
    data, _ = run(_exchange(tmp_path, script, request, php_fpm=True, settings=settings))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    raw = seen[0]
    # Walk the records: every PARAMS record holds whole pairs; empty records carry no padding.
    pos = 0
    params_records = []
    while pos < len(raw):
        _, kind, _, length, padding = records.HEADER.unpack_from(raw, pos)
        if length == 0:
            assert padding == 0
        if kind == RecordType.PARAMS and length:
            params_records.append(raw[pos + 8 : pos + 8 + length])
        pos += 8 + length + padding
    assert len(params_records) >= 2
    for content in params_records:
        records.decode_pairs(content)  # raises if a pair were split across records


def test_the_client_going_away_drops_the_backend_connection(tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, FakePool]:
        path = str(tmp_path / "backend.sock")
        started = asyncio.Event()

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            started.set()
            await asyncio.sleep(5)

        server = await asyncio.start_unix_server(script, path)
        pool = FakePool(path)
        front = FrontServer(PrefixRouter([AppRoute("app", pool)]))
        [(host, port)] = await front.listen("127.0.0.1", 0)
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.write(GET)
            await asyncio.wait_for(started.wait(), 5)
            # Gone for good: a reset, not a half-close (after a FIN the front still answers).
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            for _ in range(250):
                if pool.released:
                    break
                await asyncio.sleep(0.02)
            # Dropped while the front still runs (not by its stop(), which closes everything).
            assert pool.released == [False]
            return b"", pool
        finally:
            await front.stop(1)
            server.close()

    _, pool = run(scenario())
    assert pool.released == [False]


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 9))  # a UDP connect sends no packet
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


@dataclass
class FailingPool:
    error: Exception

    name = "app"

    def lease_or_wait(self, deliver: object, queueable: bool = False, first: bool = False) -> None:
        return None  # always the awaited path

    def cancel_wait(self, waiter: object) -> None:
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        raise self.error

    def try_acquire(self) -> None:
        return None  # always the awaited path

    def release(self, lease: Lease, reusable: bool) -> None:
        raise AssertionError("nothing was leased")


async def _ask(pool: object, listen: str, connect: str) -> bytes:
    front = FrontServer(PrefixRouter([AppRoute("app", pool)]))  # type: ignore[arg-type]
    [(_, port)] = await front.listen(listen, 0)
    try:
        reader, writer = await asyncio.open_connection(connect, port)
        writer.write(GET)
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data
    finally:
        await front.stop(1)


def test_cannot_start_page_shows_the_traceback_to_loopback_clients_only() -> None:
    from corral.supervision.lease import PoolUnavailable

    pool = FailingPool(PoolUnavailable("app", "exited with code 4", "Traceback: SECRET_DETAIL"))
    local = asyncio.run(_ask(pool, "127.0.0.1", "127.0.0.1"))
    assert local.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 5" in local
    assert b"SECRET_DETAIL" in local
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    remote = asyncio.run(_ask(pool, address, address))
    assert remote.startswith(b"HTTP/1.1 503 ")
    assert b"cannot start" in remote
    assert b"SECRET_DETAIL" not in remote


def test_overload_and_unexpected_pool_failures_are_503s() -> None:
    from corral.supervision.lease import PoolOverloaded

    data = asyncio.run(_ask(FailingPool(PoolOverloaded("app", 100)), "127.0.0.1", "127.0.0.1"))
    assert data.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 5" in data
    data = asyncio.run(_ask(FailingPool(RuntimeError("bug")), "127.0.0.1", "127.0.0.1"))
    assert data.startswith(b"HTTP/1.1 503 ")


def _record_bounds(wire: bytes) -> list[int]:
    """The offsets at which each record of ``wire`` starts, and its end."""
    bounds, offset = [], 0
    while offset < len(wire):
        bounds.append(offset)
        _, _, _, length, padding = records.HEADER.unpack_from(wire, offset)
        offset += records.HEADER.size + length + padding
    return [*bounds, offset]


#: With small pieces, the bytes this close to a record's start or end (its header, the CGI head,
#: the start and end of its content, its padding) go piece by piece; the middle of a long
#: record's content goes whole. Every way of cutting a header, a content's edge or padding is
#: still exercised, in a few thousand writes instead of one per byte of a 300 KB response.
_EDGE = 256


def _pieces(wire: bytes, piece: int) -> list[tuple[int, int]]:
    """Cut ``wire`` every ``piece`` bytes (only near record edges when ``piece`` is small)."""
    if piece >= 64:
        return [(i, min(i + piece, len(wire))) for i in range(0, len(wire), piece)]
    cuts = set()
    for bound in _record_bounds(wire):
        first = max(bound - _EDGE, 0) // piece * piece  # the same cuts as every `piece` bytes
        cuts.update(range(first, min(bound + _EDGE, len(wire)), piece))
    return list(itertools.pairwise(sorted({0, *cuts, len(wire)})))


@pytest.mark.parametrize("piece", [1, 3, 7, 8, 9, 4096, 65543, 300_000])
def test_records_split_anywhere_across_reads_arrive_whole(tmp_path: Path, piece: int) -> None:
    body = bytes(range(256)) * 1200 + b"tail!"  # 307205 bytes: several records, with padding
    head = b"Content-Type: application/octet-stream\r\n\r\n"
    wire = records.encode_response(1, head + body[:1000], end=False)
    wire += records.encode_stream(RecordType.STDERR, 1, b"a warning\n")
    wire += records.encode_response(1, body[1000:])

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        for start, end in _pieces(wire, piece):
            writer.write(wire[start:end])
            await writer.drain()
            if piece < 64:
                await asyncio.sleep(0)

    data, pool = run(_exchange(tmp_path, script, GET))
    head_end = data.index(b"\r\n\r\n") + 4
    response_head, payload = data[:head_end], data[head_end:]
    assert response_head.startswith(b"HTTP/1.1 200 OK\r\n")
    if b"Transfer-Encoding: chunked" in response_head:
        decoded = b""
        while True:
            line_end = payload.index(b"\r\n")
            size = int(payload[:line_end], 16)
            if size == 0:
                break
            decoded += payload[line_end + 2 : line_end + 2 + size]
            payload = payload[line_end + 2 + size + 2 :]
        payload = decoded
    assert payload == body
    assert pool.released == [True]


def test_a_request_error_after_the_response_head_cuts_the_connection(tmp_path: Path) -> None:
    """The app answers while the body is still coming; then the body turns out malformed: no
    error page may follow the response already under way: the connection is cut."""

    async def scenario() -> tuple[bytes, FakePool]:
        path = str(tmp_path / "backend.sock")
        answered = asyncio.Event()

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(8)  # BEGIN_REQUEST (the rest: whatever comes)
            writer.write(
                records.encode_stream(RecordType.STDOUT, 1, b"Content-Type: text/plain\r\n\r\nhi")
            )
            await writer.drain()
            answered.set()
            await asyncio.sleep(5)

        server = await asyncio.start_unix_server(script, path)
        pool = FakePool(path)
        front = FrontServer(PrefixRouter([AppRoute("app", pool)]))
        [(host, port)] = await front.listen("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"
            )
            await writer.drain()
            await asyncio.wait_for(answered.wait(), 5)
            await asyncio.sleep(0.2)
            writer.write(b"zz-not-a-chunk-size\r\n")
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return data, pool
        finally:
            await front.stop(1)
            server.close()

    data, pool = run(scenario())
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"HTTP/1.1") == 1
    assert b"2\r\nhi\r\n" in data
    assert not data.endswith(b"0\r\n\r\n")
    assert pool.released == [False]
