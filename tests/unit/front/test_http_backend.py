"""The front proxying to an HTTP/1.1 backend (``backends.http``): the request head it rebuilds,
X-Forwarded-* and the trusted-proxy policy, response framings, bodies both ways, keep-alive,
the Upgrade tunnel, and a misbehaving backend costing one request a 502/504.

In-process: a real FrontServer on a loopback port, real HTTPClientConnections, and a scripted
HTTP backend (an asyncio server on loopback TCP) per test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tests.unit.front.prefix_router import PrefixRouter

from corral.backends import http
from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.supervision.lease import Lease

WAIT = 10.0
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class KeepAlivePool:
    """A one-connection pool: reuses the connection when released reusable, like Pool does."""

    address: tuple[str, int]
    released: list[bool] = field(default_factory=list)
    idle: list[http.HTTPClientConnection] = field(default_factory=list)
    opened: int = 0

    name = "app"

    def lease_or_wait(self, deliver: object, queueable: bool = False, first: bool = False) -> None:
        return None  # always the awaited path

    def cancel_wait(self, waiter: object) -> None:
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        while self.idle:
            conn = self.idle.pop()
            if not conn.is_closed:
                return Lease(conn, conn, 0, 0)
        self.opened += 1
        conn = await http.connect(self.address)
        return Lease(conn, conn, 0, 0)

    def try_acquire(self) -> Lease | None:
        """A kept-alive connection at once (the front's fast path), else None."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.is_closed:
                return Lease(conn, conn, 0, 0)
        return None

    def release(self, lease: Lease, reusable: bool) -> None:
        self.released.append(reusable)
        if reusable and not lease.conn.is_closed:
            self.idle.append(lease.conn)
        else:
            lease.conn.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, list[bytes]]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0], fields


async def read_body(reader: asyncio.StreamReader, fields: dict[bytes, list[bytes]]) -> bytes:
    if fields.get(b"transfer-encoding") == [b"chunked"]:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if not size:
                await reader.readuntil(b"\r\n")
                return body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = int(fields.get(b"content-length", [b"0"])[0])
    return await reader.readexactly(length)


@asynccontextmanager
async def front_with(
    script: Script, *, settings: FrontSettings | None = None, script_name: bytes = b""
) -> AsyncIterator[tuple[int, KeepAlivePool]]:
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    pool = KeepAlivePool((str(address[0]), int(address[1])))
    route = AppRoute("node", pool, script_name=script_name, http=True, upgrade=True)
    front = FrontServer(PrefixRouter([route]), settings or FrontSettings())
    [(_, port)] = await front.listen("127.0.0.1", 0)
    try:
        yield port, pool
    finally:
        await front.stop(1)
        server.close()


async def client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one response (Content-Length or chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    fields = {}
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = [value.strip()]
    if head.startswith((b"HTTP/1.1 204", b"HTTP/1.1 304")):
        return head, b""
    body = await asyncio.wait_for(read_body(reader, fields), WAIT)
    return head, body


def test_get_is_forwarded_with_x_forwarded_fields_and_the_connection_is_kept_alive() -> None:
    seen: list[tuple[bytes, dict[bytes, list[bytes]]]] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line, fields = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append((line, fields))
            body = b"hello %d" % len(seen)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-B: 1\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()

    async def main() -> None:
        async with front_with(backend) as (port, pool):
            reader, writer = await client(port)
            for n in (1, 2):
                writer.write(
                    b"GET /app/x?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
                    b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\n"
                    b"Connection: keep-alive, X-Hop\r\nX-Hop: drop me\r\nCookie: a=1\r\n\r\n"
                )
                head, body = await response(reader)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"\r\nX-B: 1\r\n" in head
                assert body == b"hello %d" % n
            writer.close()
            assert pool.opened == 1  # the second request reused the kept-alive connection
            assert pool.released == [True, True]

    asyncio.run(main())
    line, fields = seen[0]
    assert line == b"GET /app/x?q=1 HTTP/1.1"
    assert fields[b"host"] == [b"example.com:8080"]
    # From a client that is not a trusted proxy, X-Forwarded-* are Corral's own.
    assert fields[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert fields[b"x-forwarded-host"] == [b"example.com:8080"]
    assert fields[b"x-forwarded-proto"] == [b"http"]
    assert fields[b"cookie"] == [b"a=1"]
    assert b"x-hop" not in fields and b"connection" not in fields


def test_a_trusted_proxy_keeps_its_forwarded_fields() -> None:
    seen: list[dict[bytes, list[bytes]]] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, fields = await read_request(reader)
        seen.append(fields)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        settings = FrontSettings(trusted_proxies=("127.0.0.0/8",))
        async with front_with(backend, settings=settings) as (port, _):
            reader, writer = await client(port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: inner\r\nX-Forwarded-For: 203.0.113.9\r\n"
                b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.org\r\n\r\n"
            )
            head, _ = await response(reader)
            assert head.startswith(b"HTTP/1.1 204 ")
            writer.close()

    asyncio.run(main())
    assert seen[0][b"x-forwarded-for"] == [b"203.0.113.9, 127.0.0.1"]
    assert seen[0][b"x-forwarded-proto"] == [b"https"]
    assert seen[0][b"x-forwarded-host"] == [b"example.org"]


def test_bodies_both_ways_in_every_framing() -> None:
    """Content-Length and chunked uploads arrive whole; chunked and close-delimited responses
    reach the client whole."""

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, fields = await read_request(reader)
            body = await read_body(reader, fields)
            if line.startswith(b"POST /chunked"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for offset in range(0, len(body), 70000):
                    piece = body[offset : offset + 70000]
                    writer.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
                await writer.drain()
            else:
                writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + body)
                await writer.drain()
                writer.close()
                return

    payload = bytes(range(256)) * 4096  # 1 MiB

    async def main() -> None:
        async with front_with(backend) as (port, pool):
            reader, writer = await client(port)
            writer.write(
                b"POST /chunked HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(payload)
            )
            writer.write(payload)
            head, body = await response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert body == payload
            # A chunked upload, answered by a close-delimited HTTP/1.0 response.
            writer.write(b"POST /close HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            for offset in range(0, len(payload), 100000):
                piece = payload[offset : offset + 100000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
            head, body = await response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Transfer-Encoding: chunked" in head  # the client gets a framed body
            assert body == payload
            writer.close()
            assert pool.released == [True, False]

    asyncio.run(main())


def test_head_and_interim_responses() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line, fields = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await read_body(reader, fields)
            if line.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def main() -> None:
        async with front_with(backend) as (port, pool):
            reader, writer = await client(port)
            writer.write(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Content-Length: 1234\r\n" in head
            writer.write(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
            head, body = await response(reader)
            assert head.startswith(b"HTTP/1.1 201 Created\r\n")
            assert body == b"ok"
            writer.close()
            assert pool.opened == 1

    asyncio.run(main())


def test_upgrade_is_tunnelled_over_http() -> None:
    seen: list[dict[bytes, list[bytes]]] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, fields = await read_request(reader)
        seen.append(fields)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Accept: xyz\r\n\r\nhello;"
        )
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data.upper())
            await writer.drain()
        writer.write(b"bye")
        writer.close()

    async def main() -> None:
        async with front_with(backend) as (port, pool):
            reader, writer = await client(port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"\r\nSec-WebSocket-Accept: xyz\r\n" in head
            assert b"\r\nUpgrade: websocket\r\n" in head
            assert await asyncio.wait_for(reader.readexactly(6), WAIT) == b"hello;"
            writer.write(b"abc")
            assert await asyncio.wait_for(reader.readexactly(3), WAIT) == b"ABC"
            writer.write_eof()  # the half-close reaches the backend, which ends the tunnel
            assert await asyncio.wait_for(reader.read(), WAIT) == b"bye"
            writer.close()
            assert pool.released == [False]

    asyncio.run(main())
    assert seen[0][b"connection"] == [b"Upgrade"]
    assert seen[0][b"upgrade"] == [b"websocket"]
    assert seen[0][b"sec-websocket-key"] == [b"k"]


def test_a_garbage_answer_is_a_502_and_the_next_request_is_served() -> None:
    calls: list[int] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        calls.append(1)
        if len(calls) == 1:
            writer.write(b"SMTP ready\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def main() -> None:
        async with front_with(backend) as (port, pool):
            for expected in (b"HTTP/1.1 502 ", b"HTTP/1.1 200 "):
                reader, writer = await client(port)
                writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                head, _ = await response(reader)
                assert head.startswith(expected)
                writer.close()
            assert pool.released == [False, True]

    asyncio.run(main())


def test_a_backend_closing_mid_body_cuts_only_that_response() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with front_with(backend) as (port, pool):
            reader, writer = await client(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), WAIT)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert data.endswith(b"only part")  # then the connection is cut, short
            writer.close()
            assert pool.released == [False]

    asyncio.run(main())


def test_a_backend_that_never_answers_is_a_504() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    async def main() -> None:
        async with front_with(backend, settings=FrontSettings(response_timeout=1.0)) as (port, _):
            reader, writer = await client(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            head, _ = await response(reader)
            assert head.startswith(b"HTTP/1.1 504 ")
            writer.close()

    asyncio.run(main())


def test_a_conflicting_content_length_is_a_502() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
        await writer.drain()

    async def main() -> None:
        async with front_with(backend) as (port, _):
            reader, writer = await client(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            head, _ = await response(reader)
            assert head.startswith(b"HTTP/1.1 502 ")
            writer.close()

    asyncio.run(main())
