"""Active health checks of a service's servers: the HTTP check against a real loopback server,
and how an engine's healthCheck is read."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.supervision.checks import CheckFailed, check_for, http_check, parse_status_line


async def _serve(answer: bytes, seen: list[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_the_http_check_wants_2xx_or_3xx_and_may_use_another_port() -> None:
    async def main() -> None:
        seen: list[bytes] = []
        good = await _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", seen)
        bad = await _serve(b"HTTP/1.1 503 Not Ready\r\n\r\n", seen)
        good_port = good.sockets[0].getsockname()[1]
        bad_port = bad.sockets[0].getsockname()[1]
        async with good, bad:
            await http_check("/readyz")(("127.0.0.1", good_port), 2.0)
            assert seen[-1].startswith(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:")
            with pytest.raises(CheckFailed, match="GET /readyz answered 503"):
                await http_check("/readyz")(("127.0.0.1", bad_port), 2.0)
            # ":PORT/path": the check goes to that port of the server's host.
            check = check_for(f":{good_port}/readyz")
            assert check is not None
            await check(("127.0.0.1", bad_port), 2.0)
        with pytest.raises(OSError):
            await http_check("/")(("127.0.0.1", good_port), 2.0)

    asyncio.run(main())


def test_a_silent_server_fails_the_check_in_time() -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            with pytest.raises(CheckFailed, match=r"no answer to GET / within 0\.2 s"):
                await http_check("/")(("127.0.0.1", server.sockets[0].getsockname()[1]), 0.2)

    asyncio.run(main())


def test_health_check_specs() -> None:
    assert check_for("") is None
    assert check_for("fastcgi") is not None
    for bad in ("readyz", ":x/readyz", ":70000/readyz", ":80", "http://x/"):
        with pytest.raises(ValueError, match="a health check is"):
            check_for(bad)


@given(st.binary(max_size=40))
def test_status_lines_are_parsed_or_refused(line: bytes) -> None:
    try:
        status = parse_status_line(line)
    except CheckFailed:
        return
    assert 100 <= status <= 599
    assert line.startswith(b"HTTP/1.")


def test_status_line_examples() -> None:
    assert parse_status_line(b"HTTP/1.1 204 No Content\r\n") == 204
    assert parse_status_line(b"HTTP/1.0 302\r\n") == 302
    with pytest.raises(CheckFailed):
        parse_status_line(b"")
    with pytest.raises(CheckFailed):
        parse_status_line(b"HTTP/2 200\r\n")
