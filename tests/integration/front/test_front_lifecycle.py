"""The host's life: a worker killed under load, the host killed, a graceful stop."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import psutil
from tests.harness import WAIT, Conn, request, serving


def _wait_gone(pids: list[int], timeout: float = WAIT) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if psutil.pid_exists(pid) and _not_zombie(pid)]
        time.sleep(0.05)
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_a_worker_under_load_fails_only_its_requests(tmp_path: Path) -> None:
    with serving(tmp_path, "--min", "2", "--max", "2", "--no-access-log") as server:
        deadline = time.monotonic() + WAIT
        while len(server.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = {worker.pid for worker in server.workers()}
        assert len(pids) == 2
        victim = min(pids)
        statuses: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def load() -> None:
            conn = Conn(server.port)
            try:
                while not stop.is_set():
                    conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                    response = conn.response()
                    statuses.append(response.status)
                    if response.status != 200:
                        conn.close()
                        conn = Conn(server.port)
            except Exception as exc:  # reported below
                errors.append(repr(exc))
            finally:
                conn.close()

        clients = [threading.Thread(target=load) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
        stop.set()
        for client in clients:
            client.join(WAIT)
        assert not errors
        failed = [s for s in statuses if s != 200]
        # One worker serves one request at a time: at most its one request in flight fails.
        assert all(s == 502 for s in failed), failed
        assert len(failed) <= 1, failed
        assert statuses.count(200) > 50
        server.wait_log(rf"pid {victim}.*(killed|signal|exited)")
        assert request(server.port, path="/hello").status == 200


def test_sigkill_of_the_host_leaves_no_worker(tmp_path: Path) -> None:
    with serving(tmp_path, "--min", "2", "--max", "2", "--no-access-log") as server:
        deadline = time.monotonic() + WAIT
        while len(server.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [worker.pid for worker in server.workers()]
        assert len(pids) == 2
        server.signal(signal.SIGKILL)
        server.wait()
        assert _wait_gone(pids, 10) == []


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    with serving(tmp_path, "--min", "1", "--max", "1") as server:
        pids = [worker.pid for worker in server.workers()]
        result: list[object] = []

        def slow() -> None:
            try:
                result.append(request(server.port, path="/sleep?1.5"))
            except Exception as exc:
                result.append(exc)

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.4)
        server.signal(signal.SIGTERM)
        thread.join(WAIT)
        response = result[0]
        assert not isinstance(response, Exception), response
        assert response.status == 200  # type: ignore[union-attr]
        assert response.body == b"slept\n"  # type: ignore[union-attr]
        assert server.wait() == 0
        assert _wait_gone(pids, 10) == []
        # No longer accepting.
        try:
            request(server.port, path="/hello")
        except OSError:
            pass
        else:
            raise AssertionError("the stopped host still answers")


def test_access_log_lines_in_combined_log_format(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        with Conn(server.port) as conn:
            conn.send(
                b"GET /hello?x=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r.test/\r\n"
                b"User-Agent: tester/1.0\r\n\r\n"
            )
            assert conn.response().status == 200
        line = server.wait_log(r'"GET /hello\?x=1 HTTP/1\.1"', timeout=5)
        assert re.fullmatch(
            r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
            r'"GET /hello\?x=1 HTTP/1\.1" 200 14 "http://r\.test/" "tester/1\.0"',
            line,
        ), line
        assert request(server.port, path="/nowhere").status == 404
        server.wait_log(r'"GET /nowhere HTTP/1\.1" 404 ', timeout=5)
