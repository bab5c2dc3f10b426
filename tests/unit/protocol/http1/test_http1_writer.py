"""Response writer helpers: status lines, header blocks, chunks, the Date value."""

from __future__ import annotations

import pytest

from corral.protocol.http1 import LAST_CHUNK, DateCache, chunk, format_date, response_head


def test_standard_status_line_and_headers() -> None:
    head = response_head(200, None, [(b"Content-Length", b"2"), (b"X", b"y")])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\n"


def test_reason_override_unknown_code_and_http10() -> None:
    assert response_head(404, b"Gone Fishing", []) == b"HTTP/1.1 404 Gone Fishing\r\n\r\n"
    assert response_head(599, None, []) == b"HTTP/1.1 599 \r\n\r\n"
    assert response_head(503, None, [], "1.0") == b"HTTP/1.0 503 Service Unavailable\r\n\r\n"
    assert response_head(799, None, []) == b"HTTP/1.1 799 \r\n\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X", b"a\r\nSet-Cookie: evil=1")],
        [(b"X", b"a\nb")],
        [(b"X", b"a\rb")],
        [(b"X\r\nY", b"a")],
        [(b"X", b"a\x00b")],
    ],
)
def test_response_splitting_is_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ValueError):
        response_head(200, None, headers)


def test_bad_status_reason_or_version() -> None:
    with pytest.raises(ValueError):
        response_head(99, b"x", [])
    with pytest.raises(ValueError):
        response_head(200, b"OK\r\nX: y", [])
    with pytest.raises(ValueError):
        response_head(200, None, [], "2.0")


def test_chunks() -> None:
    assert chunk(b"hello world, 16!") == b"10\r\nhello world, 16!\r\n"
    assert chunk(b"") == b""
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_date() -> None:
    assert format_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    cache = DateCache()
    first = cache.get(784111777.2)
    assert first == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert cache.get(784111777.9) is first  # same second: cached object
    assert cache.get(784111778.0) == b"Sun, 06 Nov 1994 08:49:38 GMT"
