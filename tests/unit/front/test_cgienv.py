"""The CGI variables and forwarded heads an application gets: what the front keeps from it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import BODY_NONE
from corral.front.cgienv import header_params
from corral.front.forward import request_head
from corral.protocol.http1.events import Request


@pytest.mark.parametrize(
    ("cookie", "passed"),
    [
        (b"corral_admin=secret", None),
        (b"a=1; corral_admin=secret; b=2", b"a=1; b=2"),
        (b"corral_admin=secret;sid=x", b"sid=x"),
        (b"corral_admin_x=1; a=2", b"corral_admin_x=1; a=2"),  # another cookie's name
        (b"a=corral_admin", b"a=corral_admin"),  # a value, not the name
    ],
)
def test_corrals_admin_cookie_never_reaches_an_application(
    cookie: bytes, passed: bytes | None
) -> None:
    out: list[tuple[bytes, bytes]] = []
    header_params([(b"Cookie", cookie), (b"Accept", b"*/*")], out)
    assert dict(out).get(b"HTTP_COOKIE") == passed


def test_an_http_backend_does_not_get_corrals_admin_cookie_either() -> None:
    request = Request(
        method=b"GET",
        target=b"/x",
        path=b"/x",
        query=b"",
        http_version="1.1",
        headers=[
            (b"Host", b"localhost"),
            (b"Cookie", b"corral_admin=secret"),
            (b"Cookie", b"sid=1; corral_admin=secret"),
        ],
        keep_alive=True,
        expect_continue=False,
        content_length=None,
        chunked=False,
        upgrade=None,
    )
    head = request_head(
        request, host=b"localhost", client=b"127.0.0.1", trusted=False, body=BODY_NONE
    )
    assert b"secret" not in head
    assert head.count(b"Cookie: ") == 1 and b"Cookie: sid=1\r\n" in head


def _reference_header_params(
    headers: list[tuple[bytes, bytes]], out: list[tuple[bytes, bytes]]
) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
    """The policy spelled out plainly, in two passes (as ``header_params`` was before it
    became one pass over a table of names): what the fast version must match."""
    from corral.front.cgienv import ADMIN_COOKIE, _cgi_name, without_admin_cookie

    host = referer = agent = connection = None
    for name, value in headers:
        if name.lower() == b"connection":
            connection = value if connection is None else connection + b", " + value
    named: set[bytes] = set()
    if connection is not None:
        named = {token.strip().lower() for token in connection.split(b",")}
        named -= {b"", b"close", b"keep-alive"}
    seen: dict[bytes, int] = {}
    for name, value in headers:
        key = _cgi_name(name)
        if key is None:
            continue
        if key == b"HTTP_HOST":
            host = value if host is None else host
        elif key == b"HTTP_REFERER":
            referer = value
        elif key == b"HTTP_USER_AGENT":
            agent = value
        elif key == b"HTTP_COOKIE" and ADMIN_COOKIE in value:
            value = without_admin_cookie(value)
            if not value:
                continue
        if name.lower() in named:
            continue
        if key in seen:
            joiner = b"; " if key == b"HTTP_COOKIE" else b", "
            out[seen[key]] = (key, out[seen[key]][1] + joiner + value)
        else:
            seen[key] = len(out)
            out.append((key, value))
    return host, referer, agent, connection


_NAMES = st.sampled_from(
    [
        b"Host",
        b"host",
        b"Referer",
        b"User-Agent",
        b"Cookie",
        b"cookie",
        b"Connection",
        b"CONNECTION",
        b"Accept",
        b"X-Private",
        b"x-private",
        b"X_Private",
        b"Content-Type",
        b"Content-Length",
        b"Proxy",
        b"X-Forwarded-For",
        b"Keep-Alive",
        b"TE",
    ]
)
_VALUES = st.sampled_from(
    [
        b"a",
        b"",
        b"close",
        b"keep-alive, X-Private",
        b"x-private,  Accept",
        b"Host",
        b"cookie, referer",
        b"corral_admin=t",
        b"x=1; corral_admin=t",
        b"content-type",
    ]
)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12))
def test_header_params_matches_the_plain_policy(headers: list[tuple[bytes, bytes]]) -> None:
    expected: list[tuple[bytes, bytes]] = [(b"BEFORE", b"1")]
    got: list[tuple[bytes, bytes]] = [(b"BEFORE", b"1")]
    assert header_params(headers, got) == _reference_header_params(headers, expected)
    assert got == expected


def test_a_table_of_field_names_full_of_junk_is_emptied() -> None:
    """Field names are mapped once (``_NAME_CACHE``); a client that fills the table with junk
    names empties it, and the usual names are remembered again."""
    from corral.front import cgienv

    saved = dict(cgienv._NAME_CACHE)
    try:
        cgienv._NAME_CACHE.clear()
        junk = [(b"X-Junk-%d" % i, b"1") for i in range(cgienv._NAME_CACHE_MAX)]
        out: list[tuple[bytes, bytes]] = []
        header_params(junk, out)
        assert len(out) == len(cgienv._NAME_CACHE) == cgienv._NAME_CACHE_MAX
        out = []
        assert header_params([(b"Host", b"h"), (b"Proxy", b"p")], out)[0] == b"h"
        assert out == [(b"HTTP_HOST", b"h")]
        assert cgienv._NAME_CACHE == {b"Host": (b"HTTP_HOST", cgienv._HOST), b"Proxy": None}
    finally:
        cgienv._NAME_CACHE.clear()
        cgienv._NAME_CACHE.update(saved)
