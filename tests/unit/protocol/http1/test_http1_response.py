"""The sans-IO pieces that read an HTTP backend's response: the head and chunked bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.protocol.http1.response import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    ChunkedDecoder,
    ResponseError,
    parse_head,
)


def test_a_head_with_a_length() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: b \r\nSet-Cookie: c=1")
    assert (head.status, head.reason, head.version) == (200, b"OK", 1)
    assert head.headers == [(b"Content-Length", b"12"), (b"X-A", b"b"), (b"Set-Cookie", b"c=1")]
    assert head.framing(False) == LENGTH and head.content_length == 12
    assert not head.close
    assert head.framing(True) == NO_BODY  # a response to HEAD


@pytest.mark.parametrize(
    ("raw", "framing", "close"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9",
            CHUNKED,
            False,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", UNTIL_CLOSE, True),
        (b"HTTP/1.1 200 OK", UNTIL_CLOSE, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1", LENGTH, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive", LENGTH, False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close", LENGTH, True),
        (b"HTTP/1.1 204 No Content", NO_BODY, True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5", NO_BODY, False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3", LENGTH, False),
    ],
)
def test_framing(raw: bytes, framing: int, close: bool) -> None:
    head = parse_head(raw)
    assert head.framing(False) == framing
    assert head.close is close


def test_content_length_is_not_relayed_next_to_transfer_encoding() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked")
    assert [name for name, _ in head.headers] == [b"Transfer-Encoding"]


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 200 OK\r\nNo colon",
        b"HTTP/1.1 200 OK\r\nBad Name: x",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nA: b\x00c",
    ],
)
def test_malformed_heads(raw: bytes) -> None:
    with pytest.raises(ResponseError):
        parse_head(raw)


def _decode_in_pieces(wire: bytes, cuts: list[int]) -> tuple[bytes, int, bool]:
    decoder = ChunkedDecoder()
    body = b""
    used_total = 0
    start = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        if cut <= start or decoder.done:
            continue
        piece = wire[start:cut]
        out: list[memoryview] = []
        used = decoder.feed(memoryview(piece), out)
        body += b"".join(bytes(view) for view in out)
        used_total += used
        start = cut
    return body, used_total, decoder.done


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_chunked_bodies_decode_whole_however_split(chunks: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(b"%x;name=value\r\n%s\r\n" % (len(c), c) for c in chunks)
    wire += b"0\r\nTrailer: x\r\n\r\n"
    body, used, done = _decode_in_pieces(wire + b"NEXT", cuts)
    assert done
    assert body == b"".join(chunks)
    assert used == len(wire)  # the bytes after the body are not consumed


@pytest.mark.parametrize(
    "wire",
    [b"zz\r\n", b"5\r\nhelloXX\r\n", b"\r\n", b"1" * 40 + b"\r\n", b"5" + b" " * 5000],
)
def test_malformed_chunked_bodies(wire: bytes) -> None:
    with pytest.raises(ResponseError):
        ChunkedDecoder().feed(memoryview(wire), [])
