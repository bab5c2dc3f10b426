"""The front end to end: HTTP/1.1 features through `corral serve` and a real worker."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time

import psutil
from tests.conftest import require_program
from tests.harness import WAIT, Conn, CorralServer, corral, request

__all__ = ["corral"]  # the shared server fixture


def _env(response_body: bytes) -> dict[str, str]:
    return json.loads(response_body)  # type: ignore[no-any-return]


def test_keep_alive_serves_many_requests_on_one_connection(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        for _ in range(5):
            conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            response = conn.response()
            assert response.status == 200
            assert response.body == b"Hello, world!\n"
            assert response.header("connection") is None


def test_pipelined_requests_are_answered_in_order(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nthi\r\n2\r\nrd\r\n0\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        bodies = [conn.response().body for _ in range(4)]
        assert bodies == [b"first", b"Hello, world!\n", b"third", b"Hello, world!\n"]
        assert conn.closed_by_peer()


def test_chunked_upload_reaches_the_app_whole(corral: CorralServer) -> None:
    payload = os.urandom(300_000)
    with Conn(corral.port) as conn:
        conn.send(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(payload), 70_000):
            piece = payload[start : start + 70_000]
            conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
        response = conn.response()
    assert response.status == 200
    assert response.body == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()


def test_chunked_upload_has_no_content_length_param(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(
            b"POST /env HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: text/plain\r\n\r\n4\r\nbody\r\n0\r\n\r\n"
        )
        env = _env(conn.response().body)
    assert "CONTENT_LENGTH" not in env
    assert env["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_TRANSFER_ENCODING" not in env


def test_response_without_length_is_chunked_for_http11(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        # 4 MiB cannot reach the front in one read: the head leaves before the end is known.
        conn.send(b"GET /stream?64 HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.response()
        assert response.header("transfer-encoding") == "chunked"
        assert response.header("content-length") is None
        assert response.body == b"".join(bytes([i]) * 65536 for i in range(64))
        # The connection stays usable after a chunked response.
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().body == b"Hello, world!\n"


def test_small_response_without_length_gets_one(corral: CorralServer) -> None:
    """When the whole body is in hand before the head leaves, the front gives it a length."""
    with Conn(corral.port) as conn:
        conn.send(b"GET /env HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.response()
        length = response.header("content-length")
        chunked = response.header("transfer-encoding")
        assert (length is None) != (chunked is None)
        if length is not None:
            assert int(length) == len(response.body)


def test_response_without_length_is_close_delimited_for_http10(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(b"GET /stream?64 HTTP/1.0\r\nHost: x\r\n\r\n")
        response = conn.response()
    assert response.header("transfer-encoding") is None
    assert response.header("connection") == "close"
    assert len(response.body) == 64 * 65536


def test_http10_keep_alive_is_honoured_with_a_length(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        for _ in range(2):
            conn.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = conn.response()
            assert response.body == b"Hello, world!\n"
            assert response.header("connection") == "keep-alive"


def test_expect_100_continue_is_answered_before_the_body(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = conn.read_until(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"hello world")
        response = conn.response()
        assert response.status == 200
        assert response.body == b"hello world"


def test_expect_100_continue_with_curl(corral: CorralServer, tmp_path: object) -> None:
    curl = require_program("curl")
    data = os.urandom(2_000_000)
    out = subprocess.run(
        [
            curl,
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
            f"http://127.0.0.1:{corral.port}/count",
        ],
        input=data,
        capture_output=True,
        timeout=WAIT,
        check=True,
    )
    assert out.stdout == f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def test_head_has_the_length_of_get_and_no_body(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.response(head=True)
        assert response.status == 200
        assert response.header("content-length") == "14"
        conn.send(b"HEAD /stream?2 HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.response(head=True)
        assert response.header("transfer-encoding") is None
        # No body bytes leaked: the next response starts right away.
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.response()
        assert response.body == b"Hello, world!\n"


def test_no_body_statuses(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        for code in (204, 304):
            conn.send(f"GET /status?{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            response = conn.response()
            assert response.status == code
            assert response.header("transfer-encoding") is None
            if code == 204:
                assert response.header("content-length") is None
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().body == b"Hello, world!\n"


def test_cgi_variables(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(
            b"GET /env/caf%C3%A9/a%2Fb/../c?x=1%202&y HTTP/1.1\r\n"
            b"Host: example.test:8443\r\nX-Good: 2\r\nX_Evil: 1\r\nX-Multi: a\r\nX-Multi: b\r\n"
            b"Connection: keep-alive, X-Hop\r\nX-Hop: gone\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
            b"Proxy: http://evil.test/\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"
        )
        env = _env(conn.response().body)
    # PATH_INFO: percent-decoded, %2F decoded too, dot segments removed, latin-1 as PEP 3333 says.
    assert env["PATH_INFO"] == "/env/café/a/c".encode().decode("latin-1")
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "x=1%202&y"
    assert env["REQUEST_URI"] == "/env/caf%C3%A9/a%2Fb/../c?x=1%202&y"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_NAME"] == "example.test"
    assert env["SERVER_PORT"] == "8443"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["SERVER_SOFTWARE"].startswith("Corral")
    assert env["HTTP_X_GOOD"] == "2"
    assert env["HTTP_X_MULTI"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "CONTENT_LENGTH" not in env
    for absent in (
        "HTTP_X_EVIL",
        "HTTP_CONNECTION",
        "HTTP_KEEP_ALIVE",
        "HTTP_TE",
        "HTTP_PROXY",
        "HTTP_X_HOP",
    ):
        assert absent not in env, absent


def test_content_length_param(corral: CorralServer) -> None:
    response = request(corral.port, "POST", "/env", b"abc", "Content-Type: text/x\r\n")
    env = _env(response.body)
    assert env["CONTENT_LENGTH"] == "3"
    assert env["CONTENT_TYPE"] == "text/x"


def test_large_upload_is_streamed_with_bounded_memory(corral: CorralServer) -> None:
    assert corral.proc is not None
    host = psutil.Process(corral.proc.pid)
    size = 64 * 1024 * 1024
    piece = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    peak = 0
    baseline = host.memory_info().rss
    with Conn(corral.port) as conn:
        conn.send(f"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(size // len(piece)):
            conn.send(piece)
            digest.update(piece)
            peak = max(peak, host.memory_info().rss)
        response = conn.response()
    assert response.body == f"{size} {digest.hexdigest()}".encode()
    assert peak - baseline < 24 * 1024 * 1024, (baseline, peak)


def test_large_response_to_a_slow_reader_is_streamed_with_bounded_memory(
    corral: CorralServer,
) -> None:
    assert corral.proc is not None
    host = psutil.Process(corral.proc.pid)
    baseline = host.memory_info().rss
    pieces = 512  # 32 MiB
    conn = Conn(corral.port)
    conn.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
    peak = 0
    try:
        conn.send(f"GET /big?{pieces} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = conn.read_until(b"\r\n\r\n")
        assert b"Content-Length: %d" % (pieces * 65536) in head
        received = len(conn.buf)
        conn.buf = b""
        slow_until = time.monotonic() + 1.5
        while received < pieces * 65536:
            data = conn.sock.recv(65536)
            assert data, "connection closed early"
            received += len(data)
            if time.monotonic() < slow_until:
                time.sleep(0.01)
                peak = max(peak, host.memory_info().rss)
    finally:
        conn.close()
    assert received == pieces * 65536
    assert peak - baseline < 24 * 1024 * 1024, (baseline, peak)


def test_concurrent_clients(corral: CorralServer) -> None:
    failures: list[str] = []

    def client() -> None:
        try:
            with Conn(corral.port) as conn:
                for i in range(20):
                    body = f"{threading.get_ident()}-{i}".encode()
                    conn.send(
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                        + body
                    )
                    response = conn.response()
                    if response.body != body:
                        failures.append(f"{response.status} {response.body[:50]!r}")
        except Exception as exc:  # reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not failures


def test_early_response_to_an_upload_reaches_the_client(corral: CorralServer) -> None:
    """The app answers without reading the body: the front closes after the response but drains
    what the client still sends (lingering close), so the client reads the answer, not a reset."""
    body = b"x" * (8 * 1024 * 1024)
    first = 1024 * 1024
    conn = Conn(corral.port)
    errors: list[BaseException] = []
    answered = threading.Event()

    def upload() -> None:
        # The rest of the body only leaves once the answer is in: the front must have answered
        # while the body was still coming (however fast it forwards what came before).
        try:
            conn.send(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
            conn.send(body[:first])
            answered.wait(WAIT)
            conn.send(body[first:])
        except OSError as exc:
            errors.append(exc)

    sender = threading.Thread(target=upload)
    sender.start()
    try:
        response = conn.response()
        answered.set()
        assert response.status == 200
        assert response.body == b"Hello, world!\n"
        assert response.header("connection") == "close"
        sender.join(WAIT)
        assert conn.closed_by_peer()
    finally:
        conn.close()
    assert not errors
