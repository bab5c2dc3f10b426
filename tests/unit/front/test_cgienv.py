"""The CGI variables and forwarded heads an application gets: what the front keeps from it."""

from __future__ import annotations

import pytest

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
