"""The front's Upgrade tunnel over a FastCGI backend (the contract Corral's worker uses for
WebSocket): the backend answers ``Status: 101``, then STDIN and STDOUT carry raw bytes both ways.

In-process: a real FrontServer on a loopback port, a real FastCGIClientConnection, and a scripted
FastCGI backend (an asyncio server on a Unix socket) that echoes what it reads.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from test_backend_faults import FakePool, Script
from tests.unit.front.prefix_router import PrefixRouter

from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import RecordType

WAIT = 10.0
UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"
    b"Sec-WebSocket-Key: abc\r\n\r\n"
)


async def read_record(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(8)
    _, kind, _, length, padding = records.HEADER.unpack(header)
    content = await reader.readexactly(length + padding)
    return kind, content[:length]


async def read_params(reader: asyncio.StreamReader) -> dict[bytes, bytes]:
    data = b""
    while True:
        kind, content = await read_record(reader)
        if kind == RecordType.PARAMS:
            if not content:
                return dict(records.decode_pairs(data))
            data += content


def stdout(data: bytes) -> bytes:
    return records.encode_stream(RecordType.STDOUT, 1, data)


async def echo_backend(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[dict[bytes, bytes]]
) -> None:
    """101, then every STDIN piece comes back as STDOUT; the end of STDIN ends the request."""
    params = await read_params(reader)
    seen.append(params)
    if params.get(b"HTTP_UPGRADE") != b"echo":
        writer.write(stdout(b"Status: 200 OK\r\nContent-Length: 5\r\n\r\nplain"))
        writer.write(records.encode_end_request(1))
        await writer.drain()
        return
    writer.write(stdout(b"Status: 101 Switching Protocols\r\nUpgrade: echo\r\nX-App: yes\r\n\r\n"))
    while True:
        kind, content = await read_record(reader)
        if kind != RecordType.STDIN:
            continue
        if not content:
            writer.write(stdout(b"bye"))
            writer.write(records.encode_end_request(1))
            await writer.drain()
            return
        if content == b"quit":
            writer.write(records.encode_end_request(1))
            await writer.drain()
            return
        writer.write(stdout(content))
        await writer.drain()


@asynccontextmanager
async def front_with(
    tmp_path: Path, script: Script, *, upgrade: bool = True, settings: FrontSettings | None = None
) -> AsyncIterator[tuple[int, FakePool]]:
    path = str(tmp_path / "backend.sock")
    server = await asyncio.start_unix_server(script, path)
    pool = FakePool(path)
    route = AppRoute("app", pool, upgrade=upgrade)
    front = FrontServer(PrefixRouter([route]), settings or FrontSettings())
    [(_, port)] = await front.listen("127.0.0.1", 0)
    try:
        yield port, pool
    finally:
        await front.stop(1)
        server.close()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)


def test_101_opens_a_byte_tunnel_both_ways(tmp_path: Path) -> None:
    seen: list[dict[bytes, bytes]] = []

    async def main() -> None:
        async with front_with(tmp_path, lambda r, w: echo_backend(r, w, seen)) as (port, pool):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # Bytes sent right behind the head, before the 101, reach the backend too.
            writer.write(UPGRADE + b"early;")
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"\r\nConnection: Upgrade\r\n" in head
            assert b"\r\nUpgrade: echo\r\n" in head
            assert b"\r\nX-App: yes\r\n" in head
            assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
            assert await asyncio.wait_for(reader.readexactly(6), WAIT) == b"early;"
            for n in range(5):
                message = b"message %d" % n
                writer.write(message)
                assert await asyncio.wait_for(reader.readexactly(len(message)), WAIT) == message
            # A client half-close reaches the backend as the end of STDIN; its last words and
            # END_REQUEST close the client's connection.
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), WAIT) == b"bye"
            writer.close()
            assert pool.released == [False]

    asyncio.run(main())
    assert seen[0][b"HTTP_CONNECTION"] == b"Upgrade"
    assert seen[0][b"HTTP_UPGRADE"] == b"echo"
    assert seen[0][b"HTTP_SEC_WEBSOCKET_KEY"] == b"abc"


def test_a_large_transfer_passes_with_back_pressure(tmp_path: Path) -> None:
    """Megabytes each way through the tunnel arrive whole and in order."""
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def main() -> None:
        async with front_with(tmp_path, lambda r, w: echo_backend(r, w, [])) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            await read_head(reader)

            async def send() -> None:
                for offset in range(0, size, 65536):
                    writer.write(payload[offset : offset + 65536])
                    await writer.drain()

            sender = asyncio.create_task(send())
            got = await asyncio.wait_for(reader.readexactly(size), 60)
            await sender
            assert got == payload
            writer.close()

    asyncio.run(main())


def test_the_backend_ending_the_tunnel_closes_the_client(tmp_path: Path) -> None:
    async def main() -> None:
        async with front_with(tmp_path, lambda r, w: echo_backend(r, w, [])) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            await read_head(reader)
            writer.write(b"quit")
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            writer.close()

    asyncio.run(main())


def test_a_route_that_cannot_tunnel_serves_upgrade_as_plain_http(tmp_path: Path) -> None:
    seen: list[dict[bytes, bytes]] = []

    async def main() -> None:
        script: Script = lambda r, w: echo_backend(r, w, seen)  # noqa: E731
        async with front_with(tmp_path, script, upgrade=False) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await asyncio.wait_for(reader.readexactly(5), WAIT) == b"plain"
            writer.close()

    asyncio.run(main())
    assert b"HTTP_UPGRADE" not in seen[0]
    assert b"HTTP_CONNECTION" not in seen[0]


def test_a_backend_that_declines_the_upgrade_answers_normally(tmp_path: Path) -> None:
    async def decline(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_params(reader)
        # The request stream was left open for a tunnel: the front ends it on a non-101 head.
        writer.write(stdout(b"Status: 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno"))
        await writer.drain()
        while True:
            kind, content = await read_record(reader)
            if kind == RecordType.STDIN and not content:
                break
        writer.write(records.encode_end_request(1))
        await writer.drain()

    async def main() -> None:
        async with front_with(tmp_path, decline) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 426 ")
            assert await asyncio.wait_for(reader.read(), WAIT) == b"no"
            writer.close()

    asyncio.run(main())


def test_an_idle_tunnel_is_closed(tmp_path: Path) -> None:
    async def main() -> None:
        settings = FrontSettings(tunnel_idle_timeout=1.0)
        script: Script = lambda r, w: echo_backend(r, w, [])  # noqa: E731
        async with front_with(tmp_path, script, settings=settings) as (port, pool):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            await read_head(reader)
            writer.write(b"hi")
            assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"hi"
            # Nothing either way: the sweep closes the tunnel (bounded wait, no timing asserted).
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            writer.close()
            assert pool.released == [False]

    asyncio.run(main())


def test_a_101_to_a_request_that_is_not_tunnelled_is_a_502(tmp_path: Path) -> None:
    async def always_101(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_params(reader)
        writer.write(stdout(b"Status: 101 Switching Protocols\r\nUpgrade: echo\r\n\r\n"))
        await writer.drain()
        await reader.read()

    async def main() -> None:
        async with front_with(tmp_path, always_101, upgrade=False) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 502 ")
            writer.close()

    asyncio.run(main())


def test_a_tunnel_the_client_closes_still_gets_its_access_log_line(tmp_path: Path) -> None:
    lines: list[str] = []

    async def main() -> None:
        path = str(tmp_path / "backend.sock")
        server = await asyncio.start_unix_server(lambda r, w: echo_backend(r, w, []), path)
        front = FrontServer(PrefixRouter([AppRoute("app", FakePool(path), upgrade=True)]))
        front.access_log = True
        front.access_write = lines.append
        [(_, port)] = await front.listen("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)
            await read_head(reader)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), WAIT) == b"hello"
            # Gone with a reset, not a half-close: the front only sees the connection end
            # (the backend is not told "end of input" and does not end the tunnel).
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            for _ in range(100):
                if lines:
                    break
                await asyncio.sleep(0.02)
        finally:
            await front.stop(1)
            server.close()

    asyncio.run(main())
    assert len(lines) == 1, lines
    assert '"GET /chat HTTP/1.1" 101 5 ' in lines[0], lines[0]  # (5 bytes: "hello" back)
