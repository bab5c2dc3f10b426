"""The worker's elastic threads, through a real worker process: with ``--max-threads`` it starts a
thread per FastCGI connection on demand (so N slow requests on N connections take about one
service time), never more than the ceiling, says so in FCGI_GET_VALUES, and lets the idle
threads above ``--threads`` go."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.worker_support import Workers, fcgiclient, workers_fixture

Client = fcgiclient.Client
base_params = fcgiclient.base_params

#: The app sleeps this long per request.
SLEEP = 0.5


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def slow_requests(address: fcgiclient.Address, count: int) -> tuple[float, list[str]]:
    """``count`` requests to /sleep at once, each on its own connection: the time they took
    together and their statuses."""
    statuses: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        with Client(address) as client:
            response = client.request(base_params("/sleep", QUERY_STRING=f"seconds={SLEEP}"))
        with lock:
            statuses.append(response.status)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return time.monotonic() - started, statuses


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_threads_grow_on_demand_and_the_idle_ones_go(workers: Workers) -> None:
    worker = workers.unix("--threads", "1", "--max-threads", "8", "--thread-idle-timeout", "0.5")
    assert worker.address is not None
    assert "1 to 8 threads, on demand" in worker.log
    at_rest = thread_count(worker.proc.pid)  # the main thread and one serving thread
    with Client(worker.address) as client:
        values = client.get_values([b"FCGI_MAX_CONNS", b"CORRAL_ELASTIC"])
    assert values == {b"FCGI_MAX_CONNS": b"8", b"CORRAL_ELASTIC": b"1"}

    took, statuses = slow_requests(worker.address, 8)
    assert statuses == ["200 OK"] * 8
    # Eight at once, not one after another (8 x 0.5 s).
    assert took < 3 * SLEEP, took
    # Eight serving threads: the ceiling.
    assert thread_count(worker.proc.pid) == at_rest + 7

    # The connections are closed: the threads above --threads end once idle for 0.5 s, all
    # but one that waits for the next connection.
    assert wait_for(lambda: thread_count(worker.proc.pid) <= at_rest + 1), thread_count(
        worker.proc.pid
    )
    # ...and come back when needed.
    took, statuses = slow_requests(worker.address, 6)
    assert statuses == ["200 OK"] * 6 and took < 3 * SLEEP


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_never_more_than_the_ceiling(workers: Workers) -> None:
    worker = workers.unix("--threads", "1", "--max-threads", "3", "--thread-idle-timeout", "5")
    assert worker.address is not None
    at_rest = thread_count(worker.proc.pid)
    # Six slow requests on six connections: three at a time (the extra connections wait for a
    # thread, taken over from an idle kept-alive connection or freed by one that closes).
    took, statuses = slow_requests(worker.address, 6)
    assert statuses == ["200 OK"] * 6
    assert took >= 2 * SLEEP * 0.9, took
    assert thread_count(worker.proc.pid) <= at_rest + 2


def test_without_max_threads_the_worker_is_fixed(workers: Workers) -> None:
    worker = workers.unix("--threads", "2")
    assert worker.address is not None
    with Client(worker.address) as client:
        values = client.get_values([b"FCGI_MAX_CONNS", b"CORRAL_ELASTIC"])
    assert values == {b"FCGI_MAX_CONNS": b"2", b"CORRAL_ELASTIC": b"0"}


def private_kib(pid: int) -> int:
    """The process's own memory (Private_Clean + Private_Dirty of smaps_rollup), KiB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps_rollup"), reason="reads private memory from /proc"
)
def test_a_thread_holds_only_the_buffer_pages_its_requests_used(workers: Workers) -> None:
    # 40 threads that each served a small request: each holds a page or two of its 256 KiB
    # receive buffer, not all of it (before: a zeroed bytearray, 10 MiB for the 40).
    worker = workers.unix("--threads", "1", "--max-threads", "48", "--thread-idle-timeout", "60")
    assert worker.address is not None
    _, statuses = slow_requests(worker.address, 1)
    assert statuses == ["200 OK"]
    before = private_kib(worker.proc.pid)
    _, statuses = slow_requests(worker.address, 40)
    assert statuses == ["200 OK"] * 40
    assert thread_count(worker.proc.pid) >= 40
    grown = private_kib(worker.proc.pid) - before
    assert grown < 40 * 64, f"40 more threads hold {grown} KiB"
