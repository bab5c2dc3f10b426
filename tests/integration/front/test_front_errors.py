"""Every error status the front answers with, end to end, and that errors cost one request only."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import pytest
from tests.harness import WAIT, Conn, CorralServer, corral, request, serving

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


@pytest.mark.parametrize(
    ("status", "request_bytes"),
    [
        (400, b"THIS IS NOT HTTP\r\n\r\n"),
        (414, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        (431, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"),
        (505, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
    ],
    ids=["garbage", "long-target", "large-headers", "unknown-version"],
)
def test_a_bad_request_gets_its_status_and_the_connection_is_closed(
    corral: CorralServer, status: int, request_bytes: bytes
) -> None:
    with Conn(corral.port) as conn:
        conn.send(request_bytes)
        _assert_error(conn, status)


def test_400_after_a_good_request_closes_the_connection(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert conn.response().status == 200
        _assert_error(conn, 400)


def test_502_when_the_worker_dies_mid_request(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(b"GET /die HTTP/1.1\r\nHost: x\r\n\r\n")
        _assert_error(conn, 502)
    # The pool replaces the worker; the server goes on.
    deadline = time.monotonic() + WAIT
    while request(corral.port, path="/hello").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_worker_dying_after_the_head_aborts_the_response(corral: CorralServer) -> None:
    with Conn(corral.port) as conn:
        conn.send(b"GET /die-midway HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.read_until(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 502"):
            return  # the worker died before its head left the front: a plain 502
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Transfer-Encoding: chunked" in head
        # The body is cut short: the connection ends without the last chunk.
        assert conn.closed_by_peer()
        assert not conn.buf.endswith(b"0\r\n\r\n")


def test_app_exception_is_a_500_from_the_worker_and_the_server_goes_on(
    corral: CorralServer,
) -> None:
    response = request(corral.port, path="/crash")
    assert response.status == 500
    assert request(corral.port, path="/hello").status == 200


def test_408_when_the_head_is_too_slow(tmp_path: Path) -> None:
    with (
        serving(tmp_path, "--set", "header_timeout=1", "--no-access-log") as server,
        Conn(server.port) as partial,
        Conn(server.port) as silent,  # the two wait out the same timeout together
    ):
        partial.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        _assert_error(partial, 408)
        # A connection that sends nothing is closed silently.
        assert silent.closed_by_peer(timeout=5)
        assert silent.buf == b""


def test_408_when_the_body_stalls(tmp_path: Path) -> None:
    with (
        serving(tmp_path, "--set", "body_timeout=1", "--no-access-log") as server,
        Conn(server.port) as conn,
    ):
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        _assert_error(conn, 408)


def test_idle_keep_alive_connection_is_closed_silently(tmp_path: Path) -> None:
    with (
        serving(tmp_path, "--set", "keepalive_timeout=1", "--no-access-log") as server,
        Conn(server.port) as conn,
    ):
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
        assert conn.closed_by_peer(timeout=5)
        assert conn.buf == b""


def test_413_for_a_declared_or_streamed_body_too_large(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "max_body_size=1000", "--no-access-log") as server:
        with Conn(server.port) as conn:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
            _assert_error(conn, 413)
        with Conn(server.port) as conn:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.send(b"400\r\n" + b"a" * 1024 + b"\r\n")
            _assert_error(conn, 413)
        assert request(server.port, "POST", "/echo", b"small").body == b"small"


def test_504_when_the_app_does_not_answer_in_time(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with serving(tmp_path, "--set", "response_timeout=1", "--no-access-log") as server:
        try:
            with Conn(server.port) as conn:
                conn.send(f"GET /gate?{gate} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                _assert_error(conn, 504)
        finally:
            gate.touch()  # the worker may finish (and stop quickly)
        assert "no response from the application in time" in server.wait_log("in time")


def test_503_with_retry_after_when_the_queue_is_full(tmp_path: Path) -> None:
    """One worker, a queue of one: of three requests held by the app, one is in the worker, one
    waits, and one (whichever the front sees last) is turned away at once."""
    gate = tmp_path / "gate"
    with serving(
        tmp_path, "--min", "1", "--max", "1", "--set", "queue_size=1", "--no-access-log"
    ) as server:
        conns = [Conn(server.port) for _ in range(3)]
        try:
            for conn in conns:
                conn.send(f"GET /gate?{gate} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            # While the gate is shut only the refused request can have an answer.
            answered, _, _ = select.select([conn.sock for conn in conns], [], [], WAIT)
            assert len(answered) == 1
            (refused,) = (conn for conn in conns if conn.sock in answered)
            response = refused.response()
            assert response.status == 503
            assert response.header("retry-after") == "5"
            assert refused.closed_by_peer()
            gate.touch()
            for conn in conns:
                if conn is not refused:
                    response = conn.response()
                    assert (response.status, response.body) == (200, b"opened\n")
        finally:
            gate.touch()
            for conn in conns:
                conn.close()


def test_503_when_no_worker_frees_up_within_acquire_timeout(tmp_path: Path) -> None:
    """One worker held by the app: the next request queues (by callback, no task) and is
    answered 503 once acquire_timeout has passed; the server then serves as usual."""
    gate = tmp_path / "gate"
    with serving(
        tmp_path, "--min", "1", "--max", "1", "--set", "acquire_timeout=1", "--no-access-log"
    ) as server:
        try:
            with Conn(server.port) as held, Conn(server.port) as queued:
                held.send(f"GET /gate?{gate} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                time.sleep(0.2)  # (only the order matters: the held request leases first)
                started = time.monotonic()
                queued.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                response = queued.response()
                assert response.status == 503
                assert response.header("retry-after") == "5"
                assert b"No application worker was free." in response.body
                # The front's deadlines run on a clock it refreshes twice a second.
                assert time.monotonic() - started >= 0.5
                assert queued.closed_by_peer()
                gate.touch()
                assert held.response().status == 200
        finally:
            gate.touch()
        assert request(server.port, "GET", "/hello").status == 200


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
        with Conn(server.port) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = conn.response()
        assert response.status == 503
        assert response.header("retry-after")
        assert b"cannot start" in response.body
        assert b"this_module_does_not_exist_anywhere" in response.body
        assert b"ModuleNotFoundError" in response.body
    finally:
        server.stop()


def test_a_client_that_stops_reading_frees_the_worker(tmp_path: Path) -> None:
    """Without a response spill (response_spill_max=0; with one, the worker is released at
    once: test_slow_clients.py), the response is paused while the client does not read; after
    response_timeout without progress the front drops the connection and the (only) worker
    serves others again."""
    with serving(
        tmp_path,
        "--min",
        "1",
        "--max",
        "1",
        "--set",
        "response_timeout=1",
        "--set",
        "response_spill_max=0",
        "--no-access-log",
    ) as server:
        with Conn(server.port) as stalled:
            stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.send(b"GET /big?1024 HTTP/1.1\r\nHost: x\r\n\r\n")  # 64 MiB, never read
            time.sleep(0.5)
            started = time.monotonic()
            response = request(server.port, path="/hello")
            assert response.status == 200
            assert time.monotonic() - started < 10
        server.wait_log("client stopped reading|response cut short|no response")


def test_pipelined_flood_behind_a_slow_request_is_bounded(corral: CorralServer) -> None:
    """Bytes pipelined behind a request in flight are held, but reading stops past a bound."""
    assert corral.proc is not None
    import psutil

    host = psutil.Process(corral.proc.pid)
    baseline = host.memory_info().rss
    with Conn(corral.port) as conn:
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
