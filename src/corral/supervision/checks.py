"""Active health checks of a service's servers (``tcp.service``, engine setting ``healthCheck``):
FastCGI ``FCGI_GET_VALUES`` answered, or an HTTP ``GET PATH`` answered with a 2xx or 3xx.

A check returns when the server is healthy and raises ``CheckFailed`` (or ``OSError``: nobody
listens) when it is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from corral.errors import CorralError
from corral.supervision.launch import Address
from corral.supervision.probe import get_values, open_stream

#: Checks a server at ``Address`` within the float's seconds; raises when it is unhealthy.
Check: TypeAlias = Callable[[Address, float], Awaitable[None]]

#: The longest status line and head an HTTP check reads.
_MAX_HEAD = 16384


class CheckFailed(CorralError):
    """The server answered the health check wrongly, or not in time."""


async def fastcgi_check(address: Address, within: float) -> None:
    await get_values(address, within)


def http_check(path: str, port: int | None = None) -> Check:
    """A check that sends ``GET path`` (HTTP/1.1, ``Connection: close``) and wants 2xx or 3xx;
    to ``port`` on the server's host when given (another Corral node's admin listener)."""

    async def check(address: Address, within: float) -> None:
        if port is not None and not isinstance(address, str):
            address = (address[0], port)
        try:
            async with asyncio.timeout(within):
                status = await _http_status(address, path)
        except TimeoutError:
            raise CheckFailed(f"no answer to GET {path} within {within:g} s") from None
        if not 200 <= status < 400:
            raise CheckFailed(f"GET {path} answered {status}")

    return check


async def _http_status(address: Address, path: str) -> int:
    reader, writer = await open_stream(address)
    host = "localhost" if isinstance(address, str) else _host_header(address)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corral-check\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        line = await reader.readline()
    except ConnectionError as exc:
        raise CheckFailed(f"the connection broke before the answer: {exc}") from exc
    finally:
        writer.close()
    return parse_status_line(line[:_MAX_HEAD])


def parse_status_line(line: bytes) -> int:
    """The status code of an HTTP/1.x status line; ``CheckFailed`` for anything else."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise CheckFailed(f"not an HTTP status line: {line[:80]!r}")
    status = int(parts[1])
    if not 100 <= status <= 599:
        raise CheckFailed(f"not an HTTP status: {status}")
    return status


def _host_header(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_for(spec: str) -> Check | None:
    """The check an engine's ``healthCheck`` names: "" none, "fastcgi", an HTTP path, or
    ``:PORT/path`` (the path on another port of each server's host)."""
    if not spec:
        return None
    if spec == "fastcgi":
        return fastcgi_check
    if spec.startswith("/"):
        return http_check(spec)
    number, slash, path = spec[1:].partition("/")
    if spec.startswith(":") and slash and number.isdigit() and 1 <= int(number) <= 65535:
        return http_check("/" + path, int(number))
    raise ValueError(
        f'a health check is "fastcgi", an HTTP path starting with /, or :PORT/path, not {spec!r}'
    )
