"""Every error status the front answers with, end to end, and that errors cost one request only."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from test_front_harness import WAIT, Conn, CorralServer, corral, request, serving

__all__ = ["corral"]  # the shared server fixture


def _assert_error(conn: Conn, status: int) -> None:
    response = conn.response()
    assert response.status == status, response
    assert response.header("connection") == "close"
    assert (
        response.header(
            "content-type",
        )
        == "text/html; charset=utf-8"
    )
    assert str(status).encode() in response.body
    assert conn.closed_by_peer()


def test_400_for_garbage_and_the_connection_is_closed(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"THIS IS NOT HTTP\r\n\r\n")
        _assert_error(conn, 400)
    finally:
        conn.close()


def test_400_after_a_good_request_closes_the_connection(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert conn.response().status == 200
        _assert_error(conn, 400)
    finally:
        conn.close()


def test_414_for_a_long_target(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        _assert_error(conn, 414)
    finally:
        conn.close()


def test_431_for_large_headers(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
        _assert_error(conn, 431)
    finally:
        conn.close()


def test_505_for_an_unknown_version(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
        _assert_error(conn, 505)
    finally:
        conn.close()


def test_502_when_the_worker_dies_mid_request(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"GET /die HTTP/1.1\r\nHost: x\r\n\r\n")
        _assert_error(conn, 502)
    finally:
        conn.close()
    # The pool replaces the worker; the server goes on.
    deadline = time.monotonic() + WAIT
    while request(corral.port, path="/hello").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_worker_dying_after_the_head_aborts_the_response(corral: CorralServer) -> None:
    conn = Conn(corral.port)
    try:
        conn.send(b"GET /die-midway HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.read_until(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 502"):
            return  # the worker died before its head left the front: a plain 502
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Transfer-Encoding: chunked" in head
        # The body is cut short: the connection ends without the last chunk.
        assert conn.closed_by_peer()
        assert not conn.buf.endswith(b"0\r\n\r\n")
    finally:
        conn.close()


def test_app_exception_is_a_500_from_the_worker_and_the_server_goes_on(
    corral: CorralServer,
) -> None:
    response = request(corral.port, path="/crash")
    assert response.status == 500
    assert request(corral.port, path="/hello").status == 200


def test_408_when_the_head_is_too_slow(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "header_timeout=1", "--no-access-log") as server:
        conn = Conn(server.port)
        try:
            conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            _assert_error(conn, 408)
        finally:
            conn.close()
        # A connection that sends nothing is closed silently.
        conn = Conn(server.port)
        try:
            assert conn.closed_by_peer(timeout=5)
            assert conn.buf == b""
        finally:
            conn.close()


def test_408_when_the_body_stalls(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "body_timeout=1", "--no-access-log") as server:
        conn = Conn(server.port)
        try:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            _assert_error(conn, 408)
        finally:
            conn.close()


def test_idle_keep_alive_connection_is_closed_silently(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "keepalive_timeout=1", "--no-access-log") as server:
        conn = Conn(server.port)
        try:
            conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.response().status == 200
            started = time.monotonic()
            assert conn.closed_by_peer(timeout=5)
            assert conn.buf == b""
            assert time.monotonic() - started < 4
        finally:
            conn.close()


def test_413_for_a_declared_or_streamed_body_too_large(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "max_body_size=1000", "--no-access-log") as server:
        conn = Conn(server.port)
        try:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
            _assert_error(conn, 413)
        finally:
            conn.close()
        conn = Conn(server.port)
        try:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.send(b"400\r\n" + b"a" * 1024 + b"\r\n")
            _assert_error(conn, 413)
        finally:
            conn.close()
        assert request(server.port, "POST", "/echo", b"small").body == b"small"


def test_504_when_the_app_does_not_answer_in_time(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "response_timeout=1", "--no-access-log") as server:
        conn = Conn(server.port)
        try:
            conn.send(b"GET /sleep?4 HTTP/1.1\r\nHost: x\r\n\r\n")
            _assert_error(conn, 504)
        finally:
            conn.close()
        assert "no response from the application in time" in server.wait_log("in time")


def test_503_with_retry_after_when_the_queue_is_full(tmp_path: Path) -> None:
    with serving(
        tmp_path, "--min", "1", "--max", "1", "--set", "queue_size=1", "--no-access-log"
    ) as server:
        results: list[int] = []

        def slow() -> None:
            results.append(request(server.port, path="/sleep?2").status)

        threads = [threading.Thread(target=slow) for _ in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.3)  # first: in the worker; second: in the queue
        conn = Conn(server.port)
        try:
            conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            response = conn.response()
            assert response.status == 503
            assert response.header("retry-after") == "5"
            assert conn.closed_by_peer()
        finally:
            conn.close()
        for thread in threads:
            thread.join(WAIT)
        assert results == [200, 200]


BROKEN_APP = """
import this_module_does_not_exist_anywhere  # the import fails

def application(environ, start_response):
    start_response("200 OK", [])
    return [b"unreachable"]
"""


def test_503_for_an_app_that_cannot_start_shows_the_traceback_to_loopback(
    tmp_path: Path,
) -> None:
    server = CorralServer(tmp_path / "site", args=("--no-access-log",))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "wsgi.py").write_text(BROKEN_APP)
    try:
        server.start(wait_ready=False)
        conn = Conn(server.port)
        try:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = conn.response()
        finally:
            conn.close()
        assert response.status == 503
        assert response.header("retry-after")
        assert b"cannot start" in response.body
        assert b"this_module_does_not_exist_anywhere" in response.body
        assert b"ModuleNotFoundError" in response.body
    finally:
        server.stop()


def test_a_client_that_stops_reading_frees_the_worker(tmp_path: Path) -> None:
    """The response is paused while the client does not read; after response_timeout without
    progress the front drops the connection and the (only) worker serves others again."""
    with serving(
        tmp_path, "--min", "1", "--max", "1", "--set", "response_timeout=1", "--no-access-log"
    ) as server:
        stalled = Conn(server.port)
        try:
            stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.send(b"GET /big?1024 HTTP/1.1\r\nHost: x\r\n\r\n")  # 64 MiB, never read
            time.sleep(0.5)
            started = time.monotonic()
            response = request(server.port, path="/hello")
            assert response.status == 200
            assert time.monotonic() - started < 10
        finally:
            stalled.close()
        server.wait_log("client stopped reading|response cut short|no response")


def test_pipelined_flood_behind_a_slow_request_is_bounded(corral: CorralServer) -> None:
    """Bytes pipelined behind a request in flight are held, but reading stops past a bound."""
    assert corral.proc is not None
    import psutil

    host = psutil.Process(corral.proc.pid)
    baseline = host.memory_info().rss
    conn = Conn(corral.port)
    try:
        conn.sock.setblocking(False)
        conn.sock.send(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n")
        flood = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
        sent = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                sent += conn.sock.send(flood)
            except BlockingIOError:
                time.sleep(0.01)
        assert host.memory_info().rss - baseline < 24 * 1024 * 1024
        # The front stopped reading: far less than a second of unbounded sending got through.
        assert sent < 64 * 1024 * 1024
    finally:
        conn.close()
