"""Adaptive concurrency end to end, through `corral serve` and real workers: without any setting,
an app whose requests sleep gets more connections (threads) per worker than its initial one
under concurrent load, and serves as many concurrent slow requests as there are connections in
about one service time; an app that burns CPU keeps one per worker; with an explicit
connections_per_worker it keeps that."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import CorralServer, make_site, request, run_corral

#: Concurrent clients of the burst, and how long the slow requests sleep.
CLIENTS = 40
SLEEP = 0.5


def status(control: str) -> dict[str, object]:
    answer = run_corral("status", "--json", "--control", control)
    assert answer.returncode == 0, answer.stderr
    [app] = json.loads(answer.stdout)["apps"]
    assert isinstance(app, dict)
    return app


def control_path(name: str) -> str:
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
    return str(folder / f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**6}.sock")


def concurrently(port: int, path: str, clients: int) -> tuple[float, list[int]]:
    """``clients`` requests to ``path`` at once, each on a fresh connection: the time they took
    together and their statuses."""
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        answer = request(port, path=path)
        with lock:
            statuses.append(answer.status)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return time.monotonic() - started, statuses


def load_until(
    port: int, done: Callable[[], bool], *, path: str = "/sleep?0.05", seconds: float = 30.0
) -> bool:
    """Keep CLIENTS connections busy on ``path`` until ``done()`` (asked every 0.2 s) or
    ``seconds`` have passed; whether ``done()`` came true."""
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            request(port, path=path)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    reached = False
    try:
        while time.monotonic() < deadline:
            if done():
                reached = True
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return reached


def test_a_sleeping_app_gets_the_concurrency_it_needs_without_any_setting(
    tmp_path: Path,
) -> None:
    control = control_path("adapt")
    server = CorralServer(make_site(tmp_path), args=("--no-access-log", "--control", control))
    server.start()
    try:
        assert request(server.port, path="/hello").status == 200
        first = status(control)
        assert first["capacity"] == 1 and first["thread_ceiling"] == 128

        assert load_until(server.port, lambda: int(status(control)["capacity"]) > 1), status(
            control
        )
        server.wait_log(r"connections per worker \(was 1, grow\)")
        grown = status(control)
        assert int(grown["capacity"]) >= CLIENTS // 2
        workers = len(grown["workers"])  # type: ignore[arg-type]

        # As many slow requests at once as the pool now has connections: about one service
        # time, not CLIENTS / workers of them one after another.
        took, statuses = concurrently(server.port, f"/sleep?{SLEEP}", CLIENTS)
        assert statuses == [200] * CLIENTS
        assert took < 3 * SLEEP, (took, workers, status(control))
    finally:
        server.stop()


def test_an_explicit_connections_per_worker_stays_fixed(tmp_path: Path) -> None:
    control = control_path("fixed")
    server = CorralServer(
        make_site(tmp_path),
        args=("--no-access-log", "--control", control, "--set", "connections_per_worker=2"),
    )
    server.start()
    try:
        assert request(server.port, path="/hello").status == 200
        assert not load_until(
            server.port, lambda: int(status(control)["capacity"]) != 2, seconds=4.0
        )
        fixed = status(control)
        assert fixed["capacity"] == 2 and fixed["thread_ceiling"] == 0
        assert "connections per worker" not in server.text()
    finally:
        server.stop()


#: An app whose requests burn 20 ms of CPU each.
BURNING_APP = """
import time

def application(environ, start_response):
    end = time.thread_time() + 0.02
    while time.thread_time() < end:
        pass
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"burnt"]
"""


def test_a_cpu_bound_app_keeps_one_connection_per_worker(tmp_path: Path) -> None:
    control = control_path("burn")
    server = CorralServer(
        make_site(tmp_path, BURNING_APP), args=("--no-access-log", "--control", control)
    )
    server.start()
    try:
        assert request(server.port, path="/burn").status == 200

        def measured() -> bool:
            cpu = status(control)["cpu_per_request"]
            return cpu is not None and float(cpu) >= 0.015  # type: ignore[arg-type]

        # It measures the CPU each request burns (20 ms)...
        assert load_until(server.port, measured, path="/burn", seconds=20.0), status(control)
        # ...and under more load, still gives each worker one request at a time.
        load_until(server.port, lambda: False, path="/burn", seconds=3.0)
        burnt = status(control)
        assert burnt["capacity"] == 1, burnt
        assert "(was 1, grow)" not in server.text()
    finally:
        server.stop()
