"""RFC 9112 rules the parser enforces, end to end through `corral serve` and a real worker:
Host (3.2), the protocol name (2.3), and a tab as optional whitespace after a field value
(5.6.3) in ``Transfer-Encoding: chunked``."""

from __future__ import annotations

import time

import pytest
from tests.harness import Conn, CorralServer, corral

__all__ = ["corral"]  # the shared server fixture


def _refused(conn: Conn) -> None:
    response = conn.response()
    assert response.status == 400, response
    assert response.header("connection") == "close"
    assert conn.closed_by_peer()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /hello HTTP/1.1\r\n\r\n",
        b"GET http://x/hello HTTP/1.1\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
    ],
    ids=["no-host", "absolute-form-no-host", "two-hosts"],
)
def test_an_http11_request_without_one_host_is_400(corral: CorralServer, head: bytes) -> None:
    with Conn(corral.port) as conn:
        conn.send(head)
        _refused(conn)


def test_an_http10_request_without_host_is_served(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(b"GET /hello HTTP/1.0\r\n\r\n")
        response = conn.response()
        assert response.status == 200 and response.body == b"Hello, world!\n"


@pytest.mark.parametrize(
    "line", [b"GET /hello RTSP/1.0", b"OPTIONS * RTSP/1.0", b"SOURCE /hello ICE/1.0"]
)
def test_a_protocol_other_than_http_is_400_and_a_close(corral: CorralServer, line: bytes) -> None:
    with Conn(corral.port) as conn:
        conn.send(line + b"\r\nHost: x\r\n\r\n")
        _refused(conn)
    # Pipelined behind a served request, too.
    with Conn(corral.port) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
        conn.send(line + b"\r\nHost: x\r\n\r\n")
        _refused(conn)


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "line-split"])
def test_a_pipelined_request_with_another_protocol_is_400_after_the_first(
    corral: CorralServer, split: bool
) -> None:
    first = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    foreign = b"GET /hello RTSP/1.0\r\nHost: x\r\n\r\n"
    with Conn(corral.port) as conn:
        if split:  # the second request line begins in the read of the first request
            conn.send(first + foreign[:9])
            time.sleep(0.2)
            conn.send(foreign[9:])
        else:
            conn.send(first + foreign)
        response = conn.response()
        assert response.status == 200 and response.body == b"Hello, world!\n"
        _refused(conn)


@pytest.mark.parametrize("ows", [b"\t", b" \t "])
def test_chunked_followed_by_a_tab_is_dechunked(corral: CorralServer, ows: bytes) -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (b"hello ", b"tab" * 5000))
    with Conn(corral.port) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
            + ows
            + b"\r\n\r\n"
            + body
            + b"0\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        response = conn.response()
        assert response.status == 200, response
        assert response.body == b"hello " + b"tab" * 5000
        assert conn.response().body == b"Hello, world!\n"  # the request after it


def test_a_foreign_request_pipelined_after_a_chunked_tab_body_is_400(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\nGET /hello RTSP/1.0\r\nHost: x\r\n\r\n"
        )
        response = conn.response()
        assert response.status == 200 and response.body == b"hello"
        _refused(conn)
