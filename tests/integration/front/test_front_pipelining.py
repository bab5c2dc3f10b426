"""Pipelining through `corral serve`: requests the front queued on a worker's connection behind
one that turns slow are withdrawn and served by the other worker, not held up by the slow one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.harness import Conn, serving

#: The slow request (seconds), and the longest a /hello may take meanwhile: half of it. A
#: /hello left queued behind the slow request waits for all of it; one that is withdrawn is
#: served by the other worker within milliseconds (the bound leaves room for a loaded box).
SLEEP = 1.5
LATENCY_BOUND = 0.75
CLIENTS = 6


def test_hellos_queued_behind_a_slow_request_are_not_held_up_by_it(tmp_path: Path) -> None:
    with serving(
        tmp_path, "--min", "2", "--max", "2", "--no-access-log", "--set", "response_timeout=20"
    ) as server:
        stop = threading.Event()
        lock = threading.Lock()
        answers: list[tuple[int, float, float]] = []  # (status, began, took)
        failures: list[BaseException] = []

        def hammer() -> None:
            try:
                with Conn(server.port) as conn:  # one keep-alive connection per client
                    while not stop.is_set():
                        began = time.monotonic()
                        conn.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        response = conn.response()
                        took = time.monotonic() - began
                        with lock:
                            answers.append((response.status, began, took))
                        assert response.body == b"Hello, world!\n", response
            except BaseException as exc:  # reported below
                with lock:
                    failures.append(exc)

        clients = [threading.Thread(target=hammer, daemon=True) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        try:
            time.sleep(0.5)  # both workers busy, requests queued on their connections
            with Conn(server.port) as sleeper:
                slow_began = time.monotonic()
                sleeper.send(f"GET /sleep?{SLEEP} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                slow = sleeper.response()
                slow_ended = time.monotonic()
            time.sleep(0.2)
        finally:
            stop.set()
            for client in clients:
                client.join(20)
        assert not failures, failures
        assert slow.status == 200 and slow.body == b"slept\n"
        assert slow_ended - slow_began >= SLEEP
        during = [a for a in answers if slow_began <= a[1] and a[1] + a[2] <= slow_ended]
        # The other worker went on serving while one slept...
        assert len(during) >= 20, (len(during), len(answers))
        assert all(status == 200 for status, _, _ in answers)
        # ... and no /hello waited for the sleeping one.
        slowest = max(took for _, _, took in answers)
        assert slowest < LATENCY_BOUND, (
            f"a /hello took {slowest:.3f} s: it waited behind the {SLEEP} s request "
            f"({sorted(took for _, _, took in answers)[-5:]})"
        )
