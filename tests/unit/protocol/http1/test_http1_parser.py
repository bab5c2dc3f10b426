"""RequestParser: events, pipelining pause, limits, smuggling vectors, upgrades, EOF."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.http1 import (
    NEED_DATA,
    PAUSED,
    Body,
    ConnectionClosed,
    EndOfMessage,
    HTTPProtocolError,
    Limits,
    LocalProtocolError,
    Request,
    RequestParser,
)


def events(parser: RequestParser, *, resume: bool = True) -> list[Any]:
    """Drain events; resume after each PAUSED; stop at NEED_DATA / ConnectionClosed."""
    out: list[Any] = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            return out
        if event is PAUSED:
            if not resume:
                out.append(PAUSED)
                return out
            parser.start_next()
            continue
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


def parse(data: bytes, limits: Limits | None = None, eof: bool = False) -> list[Any]:
    parser = RequestParser(limits)
    parser.receive_data(data)
    if eof:
        parser.receive_data(b"")
    return events(parser)


def error_of(data: bytes, limits: Limits | None = None, eof: bool = False) -> HTTPProtocolError:
    with pytest.raises(HTTPProtocolError) as info:
        parse(data, limits, eof)
    return info.value


GET = b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def test_simple_get() -> None:
    request, end = parse(GET)
    assert isinstance(request, Request)
    assert request.method == b"GET"
    assert request.target == b"/a/b?x=1&y=2"
    assert (request.path, request.query) == (b"/a/b", b"x=1&y=2")
    assert request.http_version == "1.1"
    assert request.headers == [(b"Host", b"example.com"), (b"Accept", b"*/*")]
    assert request.host == b"example.com"
    assert request.keep_alive and not request.chunked and not request.expect_continue
    assert request.content_length is None and request.upgrade is None
    assert request.get(b"accept") == b"*/*" and request.get(b"missing") is None
    assert isinstance(end, EndOfMessage) and end.trailers == ()


def test_header_values_lose_trailing_whitespace_and_keep_inner() -> None:
    (request, _) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX:  a  b \t\r\nY:\t\r\n\r\n")
    assert request.headers == [(b"Host", b"h"), (b"X", b"a  b"), (b"Y", b"")]


def test_get_all_and_case_insensitive_lookup() -> None:
    (request, _) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nIf-Match: a\r\nif-match: b\r\n\r\n")
    assert request.get_all(b"if-match") == [b"a", b"b"]


def test_fragment_and_query_split() -> None:
    (request, _) = parse(b"GET /p?q=1#frag?x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (request.path, request.query) == (b"/p", b"q=1")
    (request, _) = parse(b"GET /p#f?q HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (request.path, request.query) == (b"/p", b"")


def test_absolute_form_and_asterisk_and_connect() -> None:
    (request, _) = parse(b"GET http://u:p@example.com:8080/x?y HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (request.path, request.query) == (b"/x", b"y")
    (request, _) = parse(b"GET http://[::1] HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request.path == b"/"
    (request, _) = parse(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request.path == b"*"
    request, _end, closed = parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (request.path, request.query) == (b"", b"")
    assert isinstance(closed, ConnectionClosed)


@pytest.mark.parametrize(
    "line",
    [
        b"GET * HTTP/1.1",  # asterisk only with OPTIONS
        b"GET example.com:443 HTTP/1.1",  # authority only with CONNECT
        b"CONNECT /x HTTP/1.1",
        b"CONNECT example.com HTTP/1.1",  # port required
        b"GET s://]ufd/: HTTP/1.1",
        b"GET foo HTTP/1.1",  # relative
    ],
)
def test_bad_target_forms(line: bytes) -> None:
    assert error_of(line + b"\r\n\r\n").status_hint == 400


def test_content_length_body_in_pieces() -> None:
    parser = RequestParser()
    parser.receive_data(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123")
    request, body = events(parser)
    assert request.content_length == 10 and body == Body(b"0123")
    parser.receive_data(b"456789")
    assert events(parser, resume=False) == [Body(b"456789"), EndOfMessage(), PAUSED]


def test_chunked_body_and_trailers() -> None:
    data = (
        b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )
    request, *rest = parse(data)
    assert request.chunked and request.content_length is None
    assert b"".join(e.data for e in rest if isinstance(e, Body)) == b"hello world"
    assert rest[-1] == EndOfMessage(((b"X-Checksum", b"abc"),))


@pytest.mark.parametrize("name", [b"Content-Length", b"Transfer-Encoding", b"Host", b"Trailer"])
def test_forbidden_trailers(name: bytes) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + name
        + b": 1\r\n\r\n"
    )
    assert error_of(data).status_hint == 400


def test_pipelining_pauses_until_start_next() -> None:
    parser = RequestParser()
    parser.receive_data(GET + b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n" + b"GET /thi")
    first = parser.next_event()
    assert isinstance(first, Request) and first.path == b"/a/b"
    assert isinstance(parser.next_event(), EndOfMessage)
    assert parser.next_event() is PAUSED
    # While paused, new bytes are held raw and not parsed.
    parser.receive_data(b"rd HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parser.buffered_bytes == len(b"rd HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parser.next_event() is PAUSED
    parser.start_next()
    second = parser.next_event()
    assert isinstance(second, Request) and second.path == b"/second"
    assert isinstance(parser.next_event(), EndOfMessage)
    parser.start_next()
    assert parser.buffered_bytes == 0
    third = parser.next_event()
    assert isinstance(third, Request) and third.path == b"/third"


def test_start_next_only_after_end_of_message() -> None:
    parser = RequestParser()
    with pytest.raises(LocalProtocolError):
        parser.start_next()
    parser.receive_data(GET)
    parser.next_event()
    with pytest.raises(LocalProtocolError):
        parser.start_next()


def test_error_in_pipelined_request_comes_after_the_first() -> None:
    parser = RequestParser()
    parser.receive_data(GET + b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n")
    assert isinstance(parser.next_event(), Request)
    assert isinstance(parser.next_event(), EndOfMessage)
    parser.start_next()
    with pytest.raises(HTTPProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 400
    with pytest.raises(HTTPProtocolError):  # sticky
        parser.next_event()


def test_keep_alive_rules_and_close_ignores_later_bytes() -> None:
    request, _, closed = parse(b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.1\r\nHost: h\r\n\r\n")
    assert not request.keep_alive and isinstance(closed, ConnectionClosed)
    request, _ = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert request.keep_alive
    request, _, closed = parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGARBAGE")
    assert not request.keep_alive and isinstance(closed, ConnectionClosed)


def test_expect_continue_only_for_http11() -> None:
    (request, _) = parse(
        b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 0\r\n\r\n"
    )
    assert request.expect_continue
    request = parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")[0]
    assert not request.expect_continue  # RFC 9110 10.1.1: ignored in HTTP/1.0


def test_eof_between_requests_and_inside_one() -> None:
    assert parse(GET, eof=True)[-1] == ConnectionClosed()
    assert parse(b"\r\n", eof=True) == [ConnectionClosed()]
    assert error_of(b"GET / HTTP/1.1\r\nHost: a\r\n", eof=True).status_hint == 400
    assert (
        error_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", eof=True).status_hint
        == 400
    )


def test_eof_while_paused_is_seen_after_start_next() -> None:
    parser = RequestParser()
    parser.receive_data(GET)
    assert len(events(parser, resume=False)) == 3
    parser.receive_data(b"")
    parser.start_next()
    assert parser.next_event() == ConnectionClosed()


def test_upgrade_then_tunnel_bytes() -> None:
    parser = RequestParser()
    parser.receive_data(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nfr"
    )
    parser.receive_data(b"ame")
    request, end = events(parser, resume=False)[:2]
    assert request.upgrade == b"websocket" and isinstance(end, EndOfMessage)
    assert parser.trailing_data == b"frame"
    parser.start_next()
    assert parser.next_event() == ConnectionClosed()


def test_upgrade_request_body_is_delivered_before_the_switch() -> None:
    parser = RequestParser()
    parser.receive_data(
        b"POST / HTTP/1.1\r\n"
        b"Host: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 6\r\n\r\nab"
    )
    parser.receive_data(b"cdefNEW")
    got = events(parser, resume=False)
    assert got[1:] == [Body(b"ab"), Body(b"cdef"), EndOfMessage(), PAUSED]
    assert parser.trailing_data == b"NEW"


def test_eof_inside_upgrade_body() -> None:
    parser = RequestParser()
    parser.receive_data(
        b"POST / HTTP/1.1\r\n"
        b"Host: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 6\r\n\r\nab"
    )
    parser.receive_data(b"")
    with pytest.raises(HTTPProtocolError):
        events(parser)


# -- smuggling vectors and strictness ----------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"Content-Length: 3\r\nTransfer-Encoding: chunked", 400),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 3", 400),
        (b"Content-Length: 3\r\nContent-Length: 4", 400),
        (b"Content-Length: 3\r\nContent-Length: 3", 400),
        (b"Content-Length: 3, 3", 400),
        (b"Content-Length: +3", 400),
        (b"Content-Length: -1", 400),
        (b"Content-Length: 0x10", 400),
        (b"Transfer-Encoding: gzip", 400),
        (b"Transfer-Encoding: chunked, gzip", 400),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
        (b"Transfer-Encoding: gzip, chunked", 501),
        (b"Transfer-Encoding: identity, chunked", 501),
        (b"Transfer-Encoding: xchunked", 400),
        (b"Host: a\r\nHost: b", 400),
        (b"Content-Type: a\r\nContent-Type: b", 400),
        (b"X: a\r\n b", 400),  # obs-fold
        (b"X: a\r\n\tb", 400),
        (b"X : a", 400),  # whitespace before colon
        (b"X\t: a", 400),
        (b"X(y): a", 400),  # non-token name
        (b": a", 400),
        (b"X: a\rb", 400),  # bare CR
        (b"X: a\x00b", 400),
        (b"X: a\x7fb", 400),
        (b" X: a", 400),  # whitespace before the first field
    ],
)
def test_rejected_heads(head: bytes, status: int) -> None:
    data = b"POST / HTTP/1.1\r\n"
    if not head.startswith(b"Host"):
        data += b"Host: h\r\n"
    assert error_of(data + head + b"\r\n\r\n0\r\n\r\n").status_hint == status


def test_transfer_encoding_on_http10_is_refused() -> None:
    data = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert error_of(data).status_hint == 400


@pytest.mark.parametrize(
    "chunks",
    [
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ],
)
def test_invalid_chunks(chunks: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    assert 400 <= error_of(data).status_hint <= 413


def test_bare_lf_line_endings_are_refused() -> None:
    assert error_of(b"GET / HTTP/1.1\nHost: a\n\n").status_hint == 400


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET / HTTP/2.0", 505),
        (b"GET / HTTP/0.9", 505),
        (b"GET / HTTP/1.2", 505),
        (b"GET /", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM", 505),  # the HTTP/2 connection preface
        (b"DESCRIBE rtsp://a/b RTSP/1.0", 400),
        (b"GET / HTTP/1.10", 400),
        (b"GET / http/1.1", 400),
        (b"get / HTTP/1.1", 400),
        (b"GET\t/ HTTP/1.1", 400),
        (b"GET /a\x01 HTTP/1.1", 400),
        (b"GET /\xc3\xa9 HTTP/1.1", 400),
    ],
)
def test_request_line_errors(line: bytes, status: int) -> None:
    assert error_of(line + b"\r\n\r\n").status_hint == status


# -- limits ------------------------------------------------------------------------------------


def test_request_line_limit_is_414_even_when_incomplete() -> None:
    limits = Limits(max_request_line=100)
    assert parse(b"GET /" + b"a" * 98 + b" HTTP/1.1\r\nHost: h\r\n\r\n", limits)
    parser = RequestParser(limits)
    parser.receive_data(b"GET /")
    for _ in range(20):
        parser.receive_data(b"a" * 10)
    with pytest.raises(HTTPProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 414


def test_header_field_limit_counts_the_line() -> None:
    # name + value + 4 (": " and CRLF), like gunicorn's limit_request_field_size
    limits = Limits(max_header_field=22)
    assert parse(b"GET / HTTP/1.1\r\nHost: h\r\nName: 12345678901234\r\n\r\n", limits)
    error = error_of(b"GET / HTTP/1.1\r\nHost: h\r\nName: 123456789012345\r\n\r\n", limits)
    assert error.status_hint == 431


def test_header_limits_are_431() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\n"
    one = head + b"X: " + b"a" * 30 + b"\r\n\r\n"
    assert error_of(one, Limits(max_header_field=20)).status_hint == 431
    many = head + b"".join(b"X%d: a\r\n" % i for i in range(11)) + b"\r\n"
    assert error_of(many, Limits(max_header_count=10)).status_hint == 431
    big = head + b"".join(b"X%d: %s\r\n" % (i, b"a" * 50) for i in range(10)) + b"\r\n"
    assert error_of(big, Limits(max_header_bytes=300)).status_hint == 431


def test_partial_header_line_cannot_grow_without_bound() -> None:
    limits = Limits(max_request_line=100, max_header_bytes=1000, max_header_field=10**9)
    parser = RequestParser(limits)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX: ")
    for _ in range(50):
        parser.receive_data(b"a" * 100)
    with pytest.raises(HTTPProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 431


def test_body_limits_are_413() -> None:
    limits = Limits(max_body_size=10)
    assert (
        error_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", limits).status_hint
        == 413
    )
    _request, body, _end = parse(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", limits
    )
    assert body == Body(b"0123456789")
    chunked = (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n"
    )
    parser = RequestParser(limits)
    parser.receive_data(chunked)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == Body(b"012345")
    with pytest.raises(HTTPProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 413
    huge = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"
    assert error_of(huge).status_hint == 413


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(max_request_line=0)
    with pytest.raises(ValueError):
        Limits(max_body_size=-1)


# -- split invariance --------------------------------------------------------------------------

STREAM = (
    GET + b"POST /upload?x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"
    + b"PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
    + b"\r\nGET /last HTTP/1.0\r\n\r\n"
)


def _normalise(evs: list[Any]) -> list[Any]:
    """Join adjacent Body events (their split depends on how bytes arrived)."""
    out: list[Any] = []
    for event in evs:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


REFERENCE = _normalise(parse(STREAM))


def test_reference_stream() -> None:
    kinds = [type(e).__name__ for e in REFERENCE]
    assert kinds == [
        "Request", "EndOfMessage",
        "Request", "Body", "EndOfMessage",
        "Request", "Body", "EndOfMessage",
        "Request", "EndOfMessage", "ConnectionClosed",
    ]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=20))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    parser = RequestParser()
    got: list[Any] = []
    for a, b in itertools.pairwise(bounds):
        parser.receive_data(STREAM[a:b])
        got += events(parser)
    parser.receive_data(b"")
    assert parser.next_event() == ConnectionClosed()  # sticky
    assert _normalise(got) == REFERENCE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_garbage_never_escapes_as_another_exception(data: bytes, step: int) -> None:
    parser = RequestParser(Limits(max_request_line=64, max_header_bytes=256))
    try:
        for i in range(0, len(data), step):
            parser.receive_data(data[i : i + step])
            events(parser)
        parser.receive_data(b"")
        events(parser)
    except HTTPProtocolError as exc:
        assert 400 <= exc.status_hint <= 505 and exc.status_hint != 500, exc


def test_host_comes_from_an_absolute_target_or_connect() -> None:
    (request, _) = parse(b"GET http://user@real.example:81/x HTTP/1.1\r\nHost: other\r\n\r\n")
    assert request.host == b"real.example:81"
    assert request.get(b"host") == b"other"
    request = parse(b"CONNECT tunnel.example:443 HTTP/1.1\r\nHost: h\r\n\r\n")[0]
    assert request.host == b"tunnel.example:443"
    (request, _) = parse(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
    assert request.host == b"[::1]:8080"
    (request, _) = parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
    assert request.host == b""


@pytest.mark.parametrize(
    "host", [b"a/b", b"a b", b"..\\x", b"user@host", b"h:8o", b"[::1", b"a?b", b"a#b"]
)
def test_invalid_host_is_400(host: bytes) -> None:
    assert error_of(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").status_hint == 400


def test_head_trickled_byte_by_byte() -> None:
    data = b"GET /" + b"u" * 8000 + b" HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 8000 + b"\r\n\r\n"
    parser = RequestParser()
    for i in range(len(data)):
        parser.receive_data(data[i : i + 1])
        assert parser.buffered_bytes < 4096
    request, end = events(parser)
    assert len(request.target) == 8001 and request.get(b"x-long") == b"v" * 8000
    assert isinstance(end, EndOfMessage)


def test_eof_flushes_a_held_partial_line() -> None:
    assert error_of(b"GET / HTTP/1.1\r\nHost: a", eof=True).status_hint == 400
    assert error_of(b"G\x01T", eof=True).status_hint == 400
    assert parse(GET + b"\r", eof=True)[-1] == ConnectionClosed()


def test_trailer_cannot_grow_without_bound_but_long_chunked_uploads_can() -> None:
    limits = Limits(max_request_line=100, max_header_bytes=1000)
    parser = RequestParser(limits)
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(1000):  # 6 bytes of framing per body byte, 6000 bytes in all
        parser.receive_data(b"1\r\nx\r\n")
    parser.receive_data(b"0\r\nX-Trailer: ")
    for _ in range(20):
        parser.receive_data(b"y" * 100)
    got = []
    with pytest.raises(HTTPProtocolError) as info:
        while True:
            got.append(parser.next_event())
    assert info.value.status_hint == 431
    assert sum(len(e.data) for e in got if isinstance(e, Body)) == 1000


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(STREAM) - 1), st.binary(max_size=3)),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_mutated_stream_is_parsed_or_refused(edits: list[tuple[int, bytes]], step: int) -> None:
    data = bytearray(STREAM)
    for position, replacement in edits:
        data[position : position + 1] = replacement
    parser = RequestParser()
    try:
        for i in range(0, len(data), step):
            parser.receive_data(bytes(data[i : i + step]))
            events(parser)
        parser.receive_data(b"")
        events(parser)
    except HTTPProtocolError as exc:
        assert 400 <= exc.status_hint <= 505 and exc.status_hint != 500, exc


def test_a_failing_callback_is_a_500_not_a_400(monkeypatch: pytest.MonkeyPatch) -> None:
    import corral.protocol.http1.parser as parser_module

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(parser_module, "Request", broken)
    error = error_of(GET)
    assert error.status_hint == 500 and "RuntimeError" in error.reason


# -- RFC 9112 3.2: Host; 2.3: the protocol name; 5.6.3: OWS may be a tab ----------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET http://example.com/ HTTP/1.1\r\n\r\n",  # the target's authority is no excuse
        b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
    ],
)
def test_http11_without_host_or_with_two_is_400(head: bytes) -> None:
    assert error_of(head).status_hint == 400


def test_http10_without_host_is_served() -> None:
    (request, _end, closed) = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert request.http_version == "1.0" and request.host is None
    assert closed == ConnectionClosed()


def test_a_pipelined_request_without_host_is_refused_after_the_first_is_served() -> None:
    parser = RequestParser()
    parser.receive_data(GET + b"GET /next HTTP/1.1\r\n\r\n")
    request, end = events(parser, resume=False)[:2]
    assert request.target == b"/a/b?x=1&y=2" and isinstance(end, EndOfMessage)
    parser.start_next()
    with pytest.raises(HTTPProtocolError) as info:
        events(parser)
    assert info.value.status_hint == 400


@pytest.mark.parametrize(
    "line",
    [
        b"GET / RTSP/1.0",
        b"GET / RTSP/1.1",
        b"POST / RTSP/1.0",
        b"OPTIONS * RTSP/1.0",
        b"SOURCE / ICE/1.0",
        b"DESCRIBE / RTSP/1.0",
        b"GET /" + b"x" * 6000 + b" RTSP/1.0",  # given to llhttp in pieces (over 4 KiB)
    ],
)
def test_a_protocol_other_than_http_is_400(line: bytes) -> None:
    data = line + b"\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    assert error_of(data).status_hint == 400
    assert error_of(b"\r\n\r\n" + data).status_hint == 400  # blank lines first
    parser = RequestParser()
    for i in range(len(data)):  # whatever the split
        parser.receive_data(data[i : i + 1])
    with pytest.raises(HTTPProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 400
    # After a served request, started with start_next():
    parser = RequestParser()
    parser.receive_data(GET)
    assert isinstance(events(parser, resume=False)[0], Request)
    parser.receive_data(data)
    parser.start_next()
    with pytest.raises(HTTPProtocolError) as info:
        events(parser)
    assert info.value.status_hint == 400


RTSP_GET = b"GET /x RTSP/1.0\r\nHost: a\r\n\r\n"
GOOD_GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
#: A request whose body is the text of a request line with another protocol name.
POST_RTSP_TEXT = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (
    len(RTSP_GET),
    RTSP_GET,
)
CHUNKED_RTSP_TEXT = (
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"%x\r\n%s\r\n0\r\n\r\n" % (len(RTSP_GET), RTSP_GET)
)


def outcome(chunks: list[bytes]) -> list[Any]:
    """What a connection sees, Body events joined (their split follows the reads)."""
    parser = RequestParser()
    for chunk in chunks:
        parser.receive_data(chunk)
    out: list[Any] = []
    while True:
        try:
            event = parser.next_event()
        except HTTPProtocolError as error:
            return [*out, error.status_hint]
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return out
        if event is PAUSED:
            parser.start_next()
        elif isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)


@pytest.mark.parametrize("line", [b"GET /x RTSP/1.0", b"SOURCE /x ICE/1.0", b"GET /x RTSP/1.1"])
@pytest.mark.parametrize("before", [GET, GET + GET, b"\r\n" + GET + b"\r\n"])
def test_a_pipelined_request_with_another_protocol_is_400(line: bytes, before: bytes) -> None:
    out = outcome([before + line + b"\r\nHost: a\r\n\r\n"])
    assert out[-1] == 400
    assert [type(e) for e in out[:-1]] == [Request, EndOfMessage] * before.count(b"GET")


@pytest.mark.parametrize(
    "before",
    [GET, POST_RTSP_TEXT, CHUNKED_RTSP_TEXT, GET + POST_RTSP_TEXT],
    ids=["get", "post", "chunked", "get-post"],
)
def test_a_pipelined_request_line_split_across_reads_is_checked(before: bytes) -> None:
    data = before + RTSP_GET
    start = len(before)
    for cut in range(start, start + RTSP_GET.index(b"\n") + 1):  # the line, at every byte
        out = outcome([data[:cut], data[cut:]])
        assert out[-1] == 400, cut
        assert isinstance(out[-2], EndOfMessage), cut
    for cut in range(1, len(data)):  # any split before it, too
        assert outcome([data[:cut], data[cut:]])[-1] == 400, cut


@pytest.mark.parametrize(
    "body_first", [POST_RTSP_TEXT, CHUNKED_RTSP_TEXT], ids=["content-length", "chunked"]
)
def test_a_body_with_the_text_of_a_foreign_request_line_is_not_refused(
    body_first: bytes,
) -> None:
    data = body_first + GOOD_GET
    whole = outcome([data])
    post, body, _end, following, end = whole
    assert isinstance(post, Request) and body.data == RTSP_GET
    assert following.target == b"/x" and isinstance(end, EndOfMessage)
    for cut in range(1, len(data)):
        assert outcome([data[:cut], data[cut:]]) == whole, cut


_PIECES = [
    GET,
    GOOD_GET,
    POST_RTSP_TEXT,
    CHUNKED_RTSP_TEXT,
    # Several chunks, an extension, a trailer field:
    b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
    b"\r\n" + GET,
    b"GET /" + b"z" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    # De-chunked by the second parser (see test_chunked_followed_by_a_tab_is_dechunked):
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4),
    st.booleans(),
    st.lists(st.integers(min_value=1, max_value=6000), max_size=6),
)
def test_pipelined_requests_are_judged_alike_whatever_the_reads(
    pieces: list[bytes], foreign_last: bool, cuts: list[int]
) -> None:
    data = b"".join(pieces) + (RTSP_GET if foreign_last else GOOD_GET)
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)]) if b > a]
    whole = outcome([data])
    assert outcome(chunks) == whole
    if foreign_last:
        assert whole[-1] == 400
    else:
        assert isinstance(whole[-1], EndOfMessage) and whole[-2].target == b"/x"


def test_http_in_a_target_or_a_field_does_not_make_a_request_line_look_wrong() -> None:
    (request, _) = parse(b"GET /RTSP/1.0 HTTP/1.1\r\nHost: a\r\nX: GET / RTSP/1.0\r\n\r\n")
    assert request.target == b"/RTSP/1.0"
    long_target = b"/" + b"y" * 6000 + b"/ICE/1.0"
    data = b"GET " + long_target + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    parser = RequestParser()
    for i in range(0, len(data), 7):
        parser.receive_data(data[i : i + 7])
    assert events(parser)[0].target == long_target


CHUNKED_TAB = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"
)


@pytest.mark.parametrize("ows", [b"\t", b" \t", b"\t ", b"\t\t"])
@pytest.mark.parametrize("step", [len(CHUNKED_TAB), 1, 3, 50])
def test_chunked_followed_by_a_tab_is_dechunked(ows: bytes, step: int) -> None:
    data = CHUNKED_TAB.replace(b"chunked\t", b"chunked" + ows) + GET
    parser = RequestParser()
    for i in range(0, len(data), step):
        parser.receive_data(data[i : i + step])
    out = events(parser)
    request, end, following = out[0], out[-3], out[-2]
    assert request.chunked and request.get(b"transfer-encoding") == b"chunked"
    assert b"".join(e.data for e in out if isinstance(e, Body)) == b"hello world"
    assert end == EndOfMessage(((b"X-Sum", b"11"),))
    assert following.target == b"/a/b?x=1&y=2"  # the pipelined request after it
    assert isinstance(out[-1], EndOfMessage)


def test_chunked_followed_by_a_tab_keeps_every_check_on_the_body() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n"
    assert error_of(head + b"zz\r\nhello\r\n0\r\n\r\n").status_hint == 400  # chunk size
    assert error_of(head + b"0\r\nHost: b\r\n\r\n").status_hint == 400  # forbidden trailer
    assert error_of(head + b"5\r\nhello\r\n0\r\n\r\n", Limits(max_body_size=4)).status_hint == 413
    assert error_of(head + b"5\r\nhel", eof=True).status_hint == 400  # cut short
    with_length = head.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n")
    assert error_of(with_length + b"5\r\nhello\r\n0\r\n\r\n").status_hint == 400
    # Connection: close still ends the connection after the body; later bytes are ignored.
    close = head.replace(b"Host: a", b"Host: a\r\nConnection: close")
    out = parse(close + b"5\r\nhello\r\n0\r\n\r\nGARBAGE")
    assert [type(e) for e in out] == [Request, Body, EndOfMessage, ConnectionClosed]
    # The next request on the connection may use the same spelling.
    out = parse(head + b"1\r\na\r\n0\r\n\r\n" + head + b"1\r\nb\r\n0\r\n\r\n")
    assert [e.data for e in out if isinstance(e, Body)] == [b"a", b"b"]


@pytest.mark.parametrize("foreign_last", [True, False], ids=["foreign", "http"])
def test_a_request_pipelined_after_a_chunked_tab_body_is_checked_whatever_the_reads(
    foreign_last: bool,
) -> None:
    # The body is de-chunked by the second parser (_rechunk); the request line after it
    # is found where its chunks end, in one read or split anywhere, as after plain chunked.
    data = CHUNKED_TAB + CHUNKED_TAB + (RTSP_GET if foreign_last else GOOD_GET)
    whole = outcome([data])
    if foreign_last:
        assert whole[-1] == 400 and isinstance(whole[-2], EndOfMessage)
    else:
        assert whole[-2].target == b"/x" and isinstance(whole[-1], EndOfMessage)
    for cut in range(1, len(data)):
        assert outcome([data[:cut], data[cut:]]) == whole, cut
    for step in (1, 7):
        assert outcome([data[i : i + step] for i in range(0, len(data), step)]) == whole


def test_host_values_found_valid_are_remembered_within_a_bound() -> None:
    """A Host value checked once is looked up afterwards (no regular expression per request);
    an invalid one is never remembered. A client that fills the table with junk does not
    switch the shortcut off: the table is emptied, and the good value is remembered again."""
    from corral.protocol.http1 import parser as module

    saved = dict(module._GOOD_HOSTS)
    try:
        module._GOOD_HOSTS.clear()
        parse(b"GET / HTTP/1.1\r\nHost: remembered.example:81\r\n\r\n")
        assert b"remembered.example:81" in module._GOOD_HOSTS
        assert len(module._GOOD_HOSTS) == 1
        assert error_of(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n").status_hint == 400
        assert b"a b" not in module._GOOD_HOSTS
        module._GOOD_HOSTS.clear()
        for i in range(module._GOOD_HOSTS_MAX):  # a client sending junk Host values
            parse(b"GET / HTTP/1.1\r\nHost: h%d\r\n\r\n" % i)
        assert len(module._GOOD_HOSTS) == module._GOOD_HOSTS_MAX
        (request, _) = parse(b"GET / HTTP/1.1\r\nHost: remembered.example:81\r\n\r\n")
        assert request.host == b"remembered.example:81"
        assert list(module._GOOD_HOSTS) == [b"remembered.example:81"]  # full: emptied, then it
        assert error_of(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n").status_hint == 400
        assert b"a/b" not in module._GOOD_HOSTS
    finally:
        module._GOOD_HOSTS.clear()
        module._GOOD_HOSTS.update(saved)


def test_field_names_kinds_are_remembered_within_a_bound() -> None:
    """A field name is lower-cased once (``_KINDS``); a table full of junk names is emptied,
    and names are still recognised: a second Host spelled another way is refused either way."""
    from corral.protocol.http1 import parser as module

    saved = dict(module._KINDS)
    try:
        module._KINDS.clear()
        (request, _) = parse(b"GET / HTTP/1.1\r\nHOST: h\r\nX-Other: 1\r\n\r\n")
        assert request.host == b"h"
        assert module._KINDS == {b"HOST": module._K_HOST, b"X-Other": module._NOT_SPECIAL}
        junk = b"".join(b"X-%d: 1\r\n" % i for i in range(module._KINDS_MAX - 3))
        parse(b"GET / HTTP/1.1\r\nHost: h\r\n" + junk + b"\r\n", Limits(max_header_count=2000))
        assert len(module._KINDS) == module._KINDS_MAX
        assert error_of(b"GET / HTTP/1.1\r\nhOsT: a\r\nHoSt: b\r\n\r\n").status_hint == 400
        assert module._KINDS == {b"hOsT": module._K_HOST, b"HoSt": module._K_HOST}
        (request, _) = parse(b"GET / HTTP/1.1\r\nHOST: h2\r\n\r\n")
        assert request.host == b"h2" and module._KINDS[b"HOST"] == module._K_HOST
    finally:
        module._KINDS.clear()
        module._KINDS.update(saved)
