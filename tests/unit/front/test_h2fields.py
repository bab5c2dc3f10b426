"""HTTP/2 header lists to and from the front's ``Request`` and response heads
(``front/h2fields.py``): the RFC 9113 rules Corral applies itself, and never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.front.h2fields import Refused, request_from_fields, response_fields
from corral.front.proxy import BadBackendHead
from corral.protocol.http1.events import Request
from corral.protocol.http1.parser import Limits

LIMITS = Limits()
BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a/b?x=1")]


def parse(fields: list[tuple[bytes, bytes]], end: bool = True) -> Request:
    request = request_from_fields(fields, end, LIMITS)
    assert isinstance(request, Request), request
    return request


def test_authority_becomes_host_and_cookies_are_joined() -> None:
    request = parse(
        [*BASE, (b":authority", b"a.example:8443"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    )
    assert request.host == b"a.example:8443"
    assert request.headers[0] == (b"host", b"a.example:8443")
    assert (b"cookie", b"a=1; b=2") in request.headers
    assert (request.path, request.query, request.http_version) == (b"/a/b", b"x=1", "2.0")
    assert request.content_length is None and not request.chunked


def test_a_body_without_length_is_of_unknown_length() -> None:
    request = parse([*BASE, (b":authority", b"a")], end=False)
    assert request.chunked and request.content_length is None
    request = parse([*BASE, (b":authority", b"a"), (b"content-length", b"12")], end=False)
    assert not request.chunked and request.content_length == 12


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([(b"upgrade", b"websocket")], 400),
        ([(b"connection", b"keep-alive")], 400),
        ([(b"te", b"gzip")], 400),
        ([(b"content-length", b"x")], 400),
        ([(b"content-length", b"1"), (b"content-length", b"2")], 400),
        ([(b"host", b"a"), (b"host", b"b")], 400),
        ([(b":authority", b"a/b")], 400),
        ([(b"x-big", b"v" * 9000)], 431),
        ([(b"x-%d" % n, b"v") for n in range(101)], 431),
    ],
)
def test_refused(extra: list[tuple[bytes, bytes]], status: int) -> None:
    refused = request_from_fields([*BASE, *extra], True, LIMITS)
    assert isinstance(refused, Refused) and refused.status == status


def test_a_path_that_is_not_origin_form_is_refused() -> None:
    refused = request_from_fields([(b":method", b"GET"), (b":path", b"a")], True, LIMITS)
    assert isinstance(refused, Refused) and refused.status == 400
    request = parse([(b":method", b"OPTIONS"), (b":path", b"*"), (b":authority", b"a")])
    assert request.path == b"*"


def test_response_fields() -> None:
    fields, length = response_fields(
        200,
        [(b"Content-Type", b"text/plain"), (b"Connection", b"close"), (b"Content-Length", b"5")],
        b"Mon, 07 Dec 2026 10:00:00 GMT",
    )
    assert fields == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"content-length", b"5"),
        (b"date", b"Mon, 07 Dec 2026 10:00:00 GMT"),
    ]
    assert length == 5
    with pytest.raises(BadBackendHead):
        response_fields(200, [(b"Content-Length", b"1"), (b"Content-Length", b"2")], b"")


_NAMES = st.sampled_from(
    [b":method", b":path", b":authority", b"host", b"cookie", b"content-length", b"x-a", b"te"]
)


@given(st.lists(st.tuples(_NAMES, st.binary(max_size=20)), max_size=12), st.booleans())
def test_any_field_list_is_a_request_or_a_refusal(
    fields: list[tuple[bytes, bytes]], end: bool
) -> None:
    result = request_from_fields(fields, end, LIMITS)
    if isinstance(result, Request):
        cookies = [value for name, value in fields if name == b"cookie"]
        joined = [value for name, value in result.headers if name == b"cookie"]
        assert joined == ([b"; ".join(cookies)] if cookies else [])
        assert result.upgrade is None and result.keep_alive
    else:
        assert result.status in (400, 414, 431)
