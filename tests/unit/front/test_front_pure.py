"""The front's pure pieces: request targets, CGI variables, response framing, pages, log lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import encode_params
from corral.backends.fastcgi import encode_pairs
from corral.front import accesslog, errorpages
from corral.front.cgienv import HOP_BY_HOP, header_params, script_params
from corral.front.proxy import BadBackendHead, body_allowed, filter_headers
from corral.front.target import BadTarget, OutsideRoot, decode_path, remove_dot_segments, split_host
from corral.protocol.fastcgi import records
from corral.protocol.http1.events import Request
from corral.protocol.http1.writer import DateCache, chunk, chunk_size, status_line, switching_head


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/caf%C3%A9", "/café".encode()),
        (b"/a%2Fb", b"/a/b"),
        (b"/a/./b/../c", b"/a/c"),
        (b"/a/%2e%2e/b", b"/b"),
        (b"/a/b/..", b"/a/"),
        (b"/a/.", b"/a/"),
        (b"*", b"*"),
        (b"/%ff", b"/\xff"),
    ],
)
def test_decode_path(raw: bytes, path: bytes) -> None:
    assert decode_path(raw) == path


@pytest.mark.parametrize("raw", [b"/..", b"/a/../..", b"/%2e%2e/x", b"/a%00b", b"relative"])
def test_decode_path_rejects(raw: bytes) -> None:
    with pytest.raises(BadTarget):
        decode_path(raw)


@pytest.mark.parametrize("raw", [b"/..", b"/a/../..", b"/%2e%2e/x", b"/a/%2E%2E/../../b"])
def test_climbing_above_the_root_is_a_404_not_a_malformed_request(raw: bytes) -> None:
    with pytest.raises(OutsideRoot) as caught:
        decode_path(raw)
    assert caught.value.status == 404


def test_remove_dot_segments_keeps_plain_dots_in_names() -> None:
    assert remove_dot_segments(b"/a/.hidden/..x/b.") == b"/a/.hidden/..x/b."


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"example.test", (b"example.test", b"80")),
        (b"example.test:8443", (b"example.test", b"8443")),
        (b"[::1]:9000", (b"[::1]", b"9000")),
        (b"[::1]", (b"[::1]", b"80")),
        (b"example.test:bad", (b"example.test", b"80")),
    ],
)
def test_split_host(host: bytes, expected: tuple[bytes, bytes]) -> None:
    assert split_host(host, b"80") == expected


def test_header_params_policy() -> None:
    out: list[tuple[bytes, bytes]] = []
    host, referer, agent, connection = header_params(
        [
            (b"Host", b"h"),
            (b"Referer", b"r"),
            (b"User-Agent", b"u"),
            (b"Connection", b"keep-alive, X-Private"),
            (b"X-Private", b"p"),
            (b"X_Spoof", b"s"),
            (b"Proxy", b"http://evil"),
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"3"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Accept", b"a"),
            (b"accept", b"b"),
            (b"Cookie", b"x=1"),
            (b"Cookie", b"y=2"),
        ],
        out,
    )
    assert (host, referer, agent, connection) == (b"h", b"r", b"u", b"keep-alive, X-Private")
    assert dict(out) == {
        b"HTTP_HOST": b"h",
        b"HTTP_REFERER": b"r",
        b"HTTP_USER_AGENT": b"u",
        b"CONTENT_TYPE": b"text/plain",
        b"HTTP_ACCEPT": b"a, b",
        b"HTTP_COOKIE": b"x=1; y=2",
    }
    assert len(out) == len(dict(out))


def test_filter_headers_drops_hop_by_hop_and_checks_length() -> None:
    lines, length, has_date = filter_headers(
        [
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"14"),
            (b"Connection", b"close"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Date", b"Mon"),
        ]
    )
    assert lines == [b"Content-Type: text/plain\r\n", b"Content-Length: 14\r\n", b"Date: Mon\r\n"]
    assert (length, has_date) == (14, True)
    with pytest.raises(BadBackendHead):
        filter_headers([(b"Content-Length", b"1"), (b"Content-Length", b"2")])
    with pytest.raises(BadBackendHead):
        filter_headers([(b"Content-Length", b"-1")])


def test_status_line_and_body_rules() -> None:
    assert status_line(200, b"OK") == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404, b"") == b"HTTP/1.1 404 Not Found\r\n"
    assert not body_allowed(200, b"HEAD")
    assert not body_allowed(204, b"GET")
    assert not body_allowed(304, b"GET")
    assert body_allowed(200, b"GET")


def test_the_writer_pieces_the_front_writes_with() -> None:
    assert status_line(599, b"") == b"HTTP/1.1 599 Unknown\r\n"
    assert chunk_size(255) == b"ff\r\n"
    assert chunk(b"abc") == chunk_size(3) + b"abc\r\n"
    dates = DateCache()
    field = dates.field(784111777.5)
    assert field == b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    assert dates.field(784111777.9) is field  # the same second: the same bytes, not rebuilt
    head = switching_head(
        b"",
        [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Accept", b"x"), (b"Keep-Alive", b"5")],
        b"h2c",
        field,
        HOP_BY_HOP,
    )
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"
        + field
        + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )


def test_error_page_escapes_details_and_sets_headers() -> None:
    page = errorpages.error_response(
        503, details="<script>boom</script>", extra_headers=(("Retry-After", "5"),)
    )
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 5" in head
    assert b"Connection: close" in head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert b"&lt;script&gt;" in body
    assert b"<script>" not in body
    assert errorpages.canned(400, head_only=True).endswith(b"\r\n\r\n")
    # The head's fields, in order, as the front has always sent them (now through the writer).
    dated = errorpages.error_response(404, date=b"Sun, 06 Nov 1994 08:49:37 GMT", head_only=True)
    assert dated == (
        b"HTTP/1.1 404 Not Found\r\nServer: Corral\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        % len(errorpages.error_body(404))
    )


def test_access_log_line_is_combined_format_and_escaped() -> None:
    request = Request(
        b"GET", b'/a"b\x01', b'/a"b\x01', b"", "1.1", [], True, False, None, False, None, b"h"
    )
    line = accesslog.combined("127.0.0.1", request, 200, 14, None, b"curl/8 \xff", "", 0.1, None)
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('] "GET /a\\x22b\\x01 HTTP/1.1" 200 14 "-" "curl/8 \\xff"')


def test_encode_pairs_is_the_codecs() -> None:
    pairs = [(b"A", b"1"), (b"B" * 200, b"x" * 300)]
    assert encode_pairs(pairs) == records.encode_pairs(pairs)
    assert records.decode_pairs(encode_pairs(pairs)) == pairs
    # The front's neutral name for the same encoding (what it pre-encodes routes with).
    assert encode_params(pairs) == records.encode_pairs(pairs)


def test_script_params_name_the_script_file_and_its_path_info() -> None:
    assert script_params(b"/blog", b"/index.php", b"/extra/x", b"/srv/blog") == [
        (b"SCRIPT_NAME", b"/blog/index.php"),
        (b"SCRIPT_FILENAME", b"/srv/blog/index.php"),
        (b"PATH_INFO", b"/extra/x"),
        (b"REDIRECT_STATUS", b"200"),
        (b"PATH_TRANSLATED", b"/srv/blog/extra/x"),
    ]
    # No path info: none translated.
    assert dict(script_params(b"", b"/docs/index.php", b"", b"/srv/site")) == {
        b"SCRIPT_NAME": b"/docs/index.php",
        b"SCRIPT_FILENAME": b"/srv/site/docs/index.php",
        b"PATH_INFO": b"",
        b"REDIRECT_STATUS": b"200",
    }


def _reference_filter_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[bytes], int | None, bool]:
    """``filter_headers`` spelled out plainly (as it was before its table of fields)."""
    from corral.front.proxy import content_length

    lines: list[bytes] = []
    length: int | None = None
    has_date = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            value, number = content_length(value, length)
            if length is None:
                lines.append(b"Content-Length: " + value + b"\r\n")
            length = number
            continue
        if lower in HOP_BY_HOP:
            continue
        if lower == b"date":
            has_date = True
        lines.append(name + b": " + value + b"\r\n")
    return lines, length, has_date


_BACKEND_FIELDS = st.tuples(
    st.sampled_from(
        [b"Content-Length", b"content-length", b"Date", b"DATE", b"Connection", b"X-A", b"TE"]
    ),
    st.sampled_from([b"14", b" 14 ", b"15", b"x", b"", b"Mon", b"v" * 140]),
)


@given(st.lists(_BACKEND_FIELDS, max_size=6))
def test_filter_headers_matches_the_plain_rules(headers: list[tuple[bytes, bytes]]) -> None:
    def outcome() -> object:
        try:
            return filter_headers(headers)
        except BadBackendHead as exc:
            return str(exc)

    try:
        expected: object = _reference_filter_headers(headers)
    except BadBackendHead as exc:
        expected = str(exc)
    assert outcome() == expected
    assert outcome() == expected  # (now from the table)


def test_a_table_of_backend_fields_full_of_junk_is_emptied() -> None:
    """A backend's fields are looked up in a bounded table; one full of junk fields is
    emptied, and the usual fields are remembered again."""
    from corral.front import proxy

    saved = dict(proxy._FIELDS)
    try:
        proxy._FIELDS.clear()
        junk = [(b"X-Junk", b"%d" % i) for i in range(proxy._FIELDS_MAX)]
        assert len(filter_headers(junk)[0]) == len(proxy._FIELDS) == proxy._FIELDS_MAX
        lines, length, _ = filter_headers([(b"Content-Length", b"14")])
        assert (lines, length) == ([b"Content-Length: 14\r\n"], 14)
        assert list(proxy._FIELDS) == [(b"Content-Length", b"14")]
    finally:
        proxy._FIELDS.clear()
        proxy._FIELDS.update(saved)


def test_a_table_of_status_lines_full_of_junk_is_emptied() -> None:
    """Status lines are remembered within a bound; a backend that sends endless reasons
    empties the table, and the usual line is remembered again."""
    from corral.protocol.http1 import writer

    saved = dict(writer._STATUS_CACHE)
    try:
        writer._STATUS_CACHE.clear()
        for i in range(writer._STATUS_CACHE_MAX):
            assert status_line(200, b"R%d" % i) == b"HTTP/1.1 200 R%d\r\n" % i
        assert len(writer._STATUS_CACHE) == writer._STATUS_CACHE_MAX
        assert status_line(200, b"OK") == b"HTTP/1.1 200 OK\r\n"
        assert writer._STATUS_CACHE == {(200, b"OK"): b"HTTP/1.1 200 OK\r\n"}
    finally:
        writer._STATUS_CACHE.clear()
        writer._STATUS_CACHE.update(saved)


@given(
    st.lists(
        st.binary(max_size=12).map(lambda b: b"/" + b)
        | st.sampled_from([b"/a/%2e%2e/b", b"/%00", b"/../x", b"*", b"", b"x", b"/%41"]),
        max_size=12,
    )
)
def test_remembered_paths_decode_as_decode_path(raws: list[bytes]) -> None:
    """``decode_path_remembered`` (and ``PATHS``, which the exchange reads first) answers as
    ``decode_path`` does, twice in a row; a refused path is never remembered."""
    from corral.front import target

    for raw in raws + raws:
        try:
            expected: object = decode_path(raw)
        except BadTarget as exc:
            expected = type(exc)
            assert raw not in target.PATHS
        try:
            got: object = target.PATHS.get(raw) or target.decode_path_remembered(raw)
        except BadTarget as exc:
            got = type(exc)
        assert got == expected


def test_a_table_of_paths_full_of_junk_is_emptied() -> None:
    from corral.front import target

    saved = dict(target.PATHS)
    try:
        target.PATHS.clear()
        for i in range(target._PATHS_MAX):
            target.decode_path_remembered(b"/junk/%d" % i)
        assert len(target.PATHS) == target._PATHS_MAX
        assert target.decode_path_remembered(b"/hello") == b"/hello"
        assert target.PATHS == {b"/hello": b"/hello"}
        long = b"/" + b"x" * 200
        assert target.decode_path_remembered(long) == long and long not in target.PATHS
    finally:
        target.PATHS.clear()
        target.PATHS.update(saved)
