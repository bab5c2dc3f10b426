"""CGIResponseParser: the CGI/1.1 response head at the start of FastCGI STDOUT."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.cgi import CGIResponseError, CGIResponseHead, CGIResponseParser


def parse_whole(data: bytes, max_head_size: int = 65536) -> CGIResponseHead:
    head = CGIResponseParser(max_head_size).feed(data)
    assert head is not None
    return head


def parse_bytewise(data: bytes, max_head_size: int = 65536) -> CGIResponseHead:
    parser = CGIResponseParser(max_head_size)
    for i in range(len(data)):
        head = parser.feed(data[i : i + 1])
        if head is not None:
            assert parser.complete
            # The rest of the input is body, which the caller now streams itself.
            return CGIResponseHead(
                head.status, head.reason, head.headers, data[i + 1 - len(head.body) :]
            )
    raise AssertionError("head never completed")


def parse_in_pairs(data: bytes, max_head_size: int = 65536) -> CGIResponseHead:
    parser = CGIResponseParser(max_head_size)
    for i in range(0, len(data), 2):
        head = parser.feed(data[i : i + 2])
        if head is not None:
            return CGIResponseHead(
                head.status, head.reason, head.headers, head.body + data[i + 2 :]
            )
    raise AssertionError("head never completed")


Parse = Callable[..., CGIResponseHead]
parsers = pytest.mark.parametrize(
    "parse", [parse_whole, parse_bytewise, parse_in_pairs], ids=lambda f: f.__name__
)


@parsers
def test_status_header_sets_the_status_and_is_consumed(parse: Parse) -> None:
    head = parse(b"Status: 404 Not Found\r\nContent-Type: text/html\r\nX-A:  b c \r\n\r\n<html>")
    assert head == CGIResponseHead(
        404, b"Not Found", [(b"Content-Type", b"text/html"), (b"X-A", b"b c")], b"<html>"
    )


@parsers
def test_bare_lf_and_mixed_line_ends_are_accepted(parse: Parse) -> None:
    assert parse(b"Content-Type: text/plain\nstatus: 201\n\nbody\r\n\r\nmore") == CGIResponseHead(
        201, b"Created", [(b"Content-Type", b"text/plain")], b"body\r\n\r\nmore"
    )
    assert parse(b"A: 1\r\nB: 2\n\r\nx").headers == [(b"A", b"1"), (b"B", b"2")]
    assert parse(b"A: 1\nB: 2\r\n\nx").body == b"x"


@parsers
def test_without_status_it_is_200(parse: Parse) -> None:
    head = parse(b"Content-Type: text/plain\r\n\r\n")
    assert (head.status, head.reason, head.body) == (200, b"OK", b"")


@parsers
@pytest.mark.parametrize("location", [b"http://example.com/", b"/local/path"])
def test_location_without_status_is_a_302(parse: Parse, location: bytes) -> None:
    head = parse(b"Location: " + location + b"\r\n\r\n")
    assert (head.status, head.reason, head.headers) == (302, b"Found", [(b"Location", location)])


@parsers
def test_an_explicit_status_wins_over_location(parse: Parse) -> None:
    head = parse(b"Location: /x\r\nStatus: 301 Moved\r\n\r\n")
    assert (head.status, head.reason) == (301, b"Moved")


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        (b"200", 200, b"OK"),
        (b"418", 418, b"I'm a Teapot"),
        (b"299", 299, b""),
        (b"503  Busy ", 503, b"Busy"),
        (b"200\tFine", 200, b"Fine"),
        (b"599 Custom reason, with: colon", 599, b"Custom reason, with: colon"),
    ],
)
def test_status_values(value: bytes, status: int, reason: bytes) -> None:
    head = parse_whole(b"Status: " + value + b"\r\n\r\n")
    assert (head.status, head.reason) == (status, reason)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Content-Type text/html\r\n\r\n", "without a colon"),
        (b"Bad Name: x\r\n\r\n", "invalid CGI response header name"),
        (b"Name : x\r\n\r\n", "invalid CGI response header name"),
        (b": x\r\n\r\n", "invalid CGI response header name"),
        (b"A: b\r\n folded\r\n\r\n", "folded"),
        (b"A: b\rX: y\r\n\r\n", "bare CR"),
        (b"A: b\x00\r\n\r\n", "control character"),
        (b"A: b\x7f\n\n", "control character"),
        (b"Status: abc\r\n\r\n", "invalid CGI Status"),
        (b"Status: 20\r\n\r\n", "invalid CGI Status"),
        (b"Status: 2000 OK\r\n\r\n", "invalid CGI Status"),
        (b"Status: 200OK\r\n\r\n", "invalid CGI Status"),
        (b"Status:\r\n\r\n", "invalid CGI Status"),
        (b"Status: 100 Continue\r\n\r\n", "outside 200..599"),
        (b"Status: 600 Nope\r\n\r\n", "outside 200..599"),
        (b"Status: 200\r\nStatus: 404\r\n\r\n", "two Status fields"),
        (b"\r\nbody", "no header fields"),
        (b"\nbody", "no header fields"),
    ],
)
def test_malformed_heads_are_cgi_response_errors(data: bytes, message: str) -> None:
    for parse in (parse_whole, parse_bytewise):
        with pytest.raises(CGIResponseError, match=message):
            parse(data)


def test_a_head_larger_than_the_limit_is_an_error_whole_or_bytewise() -> None:
    head = b"X-Big: " + b"b" * 200 + b"\r\n\r\n"
    assert parse_whole(head, max_head_size=300).status == 200
    for parse in (parse_whole, parse_bytewise):
        with pytest.raises(CGIResponseError, match="exceeds 100 bytes"):
            parse(head, max_head_size=100)
    # Without an end in sight, the parser stops at the limit instead of buffering forever.
    parser = CGIResponseParser(max_head_size=1000)
    with pytest.raises(CGIResponseError, match="exceeds 1000"):
        for _ in range(100):
            parser.feed(b"X-Endless: " + b"e" * 50 + b"\r\n")


def test_the_stream_ending_before_the_head_is_an_error() -> None:
    parser = CGIResponseParser()
    with pytest.raises(CGIResponseError, match="empty"):
        parser.feed(b"")
    parser = CGIResponseParser()
    assert parser.feed(b"Status: 200 OK\r\n") is None
    assert not parser.complete
    with pytest.raises(CGIResponseError, match="ended before the end of its header block"):
        parser.feed(b"")


def test_feeding_after_the_head_is_misuse() -> None:
    parser = CGIResponseParser()
    assert parser.feed(b"A: b\n\nbody") is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"more body")


def test_the_head_end_is_found_across_feed_boundaries() -> None:
    for split in range(1, 12):
        data = b"A: b\r\n\r\nbody"
        parser = CGIResponseParser()
        assert parser.feed(data[:split]) is None or split >= 8
        if split < 8:
            head = parser.feed(data[split:])
            assert head is not None and head.body == b"body" and head.headers == [(b"A", b"b")]


header_name = st.from_regex(rb"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}\Z").filter(
    lambda n: n.lower() not in (b"status", b"location")
)
header_value = st.from_regex(rb"\A[\x21-\x7e]([\x20-\x7e\x80-\xff]{0,30}[\x21-\x7e])?\Z")


@settings(max_examples=200)
@given(
    st.lists(st.tuples(header_name, header_value), min_size=1, max_size=10),
    st.sampled_from([b"\r\n", b"\n"]),
    st.binary(max_size=50),
    st.integers(1, 20),
)
def test_well_formed_heads_parse_the_same_in_any_chunking(
    headers: list[tuple[bytes, bytes]], eol: bytes, body: bytes, chunk: int
) -> None:
    data = b"".join(n + b": " + v + eol for n, v in headers) + eol + body
    expected = CGIResponseHead(200, b"OK", headers, body)
    assert parse_whole(data) == expected
    parser = CGIResponseParser()
    for i in range(0, len(data), chunk):
        head = parser.feed(data[i : i + chunk])
        if head is not None:
            assert CGIResponseHead(200, b"OK", head.headers, head.body + data[i + chunk :]) == (
                expected
            )
            break
    else:
        raise AssertionError("head never completed")


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.booleans())
def test_arbitrary_bytes_only_ever_raise_cgi_response_error(chunks: list[bytes], eof: bool) -> None:
    parser = CGIResponseParser(max_head_size=128)
    try:
        for chunk in chunks:
            head = parser.feed(chunk)
            if head is not None:
                assert 200 <= head.status <= 599
                return
        if eof:
            parser.feed(b"")
    except CGIResponseError:
        pass


_line_piece = st.sampled_from(
    [
        b"A",
        b"Status",
        b"location",
        b"x-y",
        b":",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\r\n",
        b"200",
        b"404 Not",
        b"\x00",
        b"\x80",
        b"v",
        b"a b",
    ]
)


@settings(max_examples=500)
@given(st.lists(_line_piece, min_size=1, max_size=25))
def test_the_fast_path_and_the_line_by_line_path_agree(pieces: list[bytes]) -> None:
    from corral.protocol import cgi

    head = b"".join(pieces)
    if not head.endswith(b"\n"):
        head += b"\n"

    # Whatever the fast path accepts, the careful path accepts identically.
    def outcome(parse: Callable[[], CGIResponseHead]) -> CGIResponseHead | str:
        try:
            return parse()
        except CGIResponseError as exc:
            return str(exc)

    lines = head.split(b"\n")
    lines.pop()
    fast = outcome(lambda: cgi._fields(lines, b"") or "refused")
    if fast != "refused":
        assert fast == outcome(lambda: cgi._parse_head_slowly(head[:-1], b""))
        # Again, from the lines it remembered (``_LINES``): the same answer.
        assert outcome(lambda: cgi._fields(lines, b"") or "refused") == fast
    elif b"\n\n" not in head and b"\n\r\n" not in head and not head.startswith((b"\n", b"\r\n")):
        # ...and what the fast path rejects, the careful path rejects too.
        with pytest.raises(CGIResponseError):
            cgi._parse_head_slowly(head[:-1], b"")


def test_remembered_lines_are_bounded_and_short() -> None:
    """The fast path remembers short well-formed lines only, within a bound: a table full of
    junk lines is emptied, and lines are remembered again; a bad line is still refused."""
    from corral.protocol import cgi

    long_value = b"x" * 200
    head = b"Status: 201 Created\r\nX-Long: " + long_value + b"\r\nX-Short: 1\r\n\r\n"
    parsed = CGIResponseParser().feed(head)
    assert parsed is not None
    assert (parsed.status, parsed.reason) == (201, b"Created")
    assert parsed.headers == [(b"X-Long", long_value), (b"X-Short", b"1")]
    assert b"X-Short: 1\r" in cgi._LINES
    assert b"X-Long: " + long_value + b"\r" not in cgi._LINES
    saved = dict(cgi._LINES)
    try:
        cgi._LINES.clear()
        junk = b"".join(b"K%d: v\n" % i for i in range(cgi._LINES_MAX))
        parsed = CGIResponseParser().feed(junk + b"\n")
        assert parsed is not None and len(parsed.headers) == cgi._LINES_MAX
        assert len(cgi._LINES) == cgi._LINES_MAX
        parsed = CGIResponseParser().feed(b"X-New: 2\n\n")
        assert parsed is not None and parsed.headers == [(b"X-New", b"2")]
        assert list(cgi._LINES) == [b"X-New: 2"]  # full: emptied, then this one
        with pytest.raises(CGIResponseError, match="header name"):
            CGIResponseParser().feed(b"X-Bad : 3\n\n")
        assert list(cgi._LINES) == [b"X-New: 2"]
    finally:
        cgi._LINES.clear()
        cgi._LINES.update(saved)


def test_remembered_status_values_are_bounded() -> None:
    """Status values are remembered within a bound: a backend that fills the table with
    junk reasons empties it, and the usual value is remembered again."""
    from corral.protocol import cgi

    saved = dict(cgi._STATUSES)
    try:
        cgi._STATUSES.clear()
        for i in range(cgi._STATUSES_MAX):
            parsed = CGIResponseParser().feed(b"Status: 200 Junk %d\n\n" % i)
            assert parsed is not None and parsed.reason == b"Junk %d" % i
        assert len(cgi._STATUSES) == cgi._STATUSES_MAX
        parsed = CGIResponseParser().feed(b"Status: 404 Not Found\nX: 1\n\n")
        assert parsed is not None and (parsed.status, parsed.reason) == (404, b"Not Found")
        assert cgi._STATUSES == {b"404 Not Found": (404, b"Not Found")}
    finally:
        cgi._STATUSES.clear()
        cgi._STATUSES.update(saved)


def test_one_parser_serves_response_after_response_when_reset() -> None:
    """A client keeps one parser per connection: ``reset`` makes it ready for the next
    answer whatever the last one left (a head cut across feeds, a finished head), and
    ``feed_parts`` gives what ``feed`` gives, as a plain tuple."""
    parser = CGIResponseParser()
    assert parser.feed_parts(b"Status: 404 Nope\r\nX-A: 1\r\n") is None  # (cut: buffered)
    parser.reset()
    assert not parser.started
    parts = parser.feed_parts(b"Content-Type: text/plain\r\n\r\nbody")
    assert parts == (200, b"OK", [(b"Content-Type", b"text/plain")], b"body")
    assert parser.complete
    parser.reset()
    assert parser.feed_parts(b"Location: /x\n") is None
    assert parser.feed_parts(b"\nrest") == (302, b"Found", [(b"Location", b"/x")], b"rest")
    parser.reset()
    head = parser.feed(b"Status: 201\r\n\r\n")
    assert head == CGIResponseHead(201, b"Created", [], b"")
