"""Health, recycling and crash loops, end to end: Corral's real worker (``python -m
corral.worker``) running the misbehaving fixture apps of ``tests/apps/misbehaving.py``, real
sockets and signals, the pool carrying out its policy. Loads are small and bounded in time; every
assertion is about what happened (which pid served, what failed, what the log says), never about
how fast."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from fcgi_client import connect
from pool_testkit import APPS, pid_alive, run_under

from corral.supervision import (
    Pool,
    PoolSettings,
    PoolUnavailable,
    StartBackoff,
    python_worker_plan,
)

T = TypeVar("T")


def plan_for(app: str, *, root: Path = APPS, threads: int = 1, **env: str) -> Any:
    return python_worker_plan(
        root, threads=threads, app_env={"WSGI_APP": app, **env, "PYTHONPATH": str(APPS)}
    )


def settings(**overrides: Any) -> PoolSettings:
    values: dict[str, Any] = {
        "min_instances": 1,
        "max_instances": 2,
        "start_timeout": 20.0,
        "queue_timeout": 20.0,
        "graceful_shutdown_timeout": 3.0,
        "idle_timeout": None,
        "health_interval": 0.2,
        "memory_reserve_mb": 0,
    }
    values.update(overrides)
    return PoolSettings(**values)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)

    def pids(self) -> set[int]:
        return {pid for r in self.records if (pid := getattr(r, "pid", None))}


def run_pool(
    plan: Any,
    pool_settings: PoolSettings,
    body: Callable[[Pool, Records], Awaitable[T]],
    loop: str = "uvloop",
) -> T:
    """Run ``body`` against a fresh pool; close it; check that no worker survived."""
    records = Records()
    logger = logging.getLogger("corral")
    saved = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)

    async def main() -> T:
        pool = Pool("health", plan, pool_settings, connect)
        try:
            return await body(pool, records)
        finally:
            await pool.close(grace=1.0)

    try:
        return run_under(loop, main())
    finally:
        logger.removeHandler(records)
        logger.setLevel(saved)
        survivors = [pid for pid in records.pids() if pid_alive(pid)]
        for pid in survivors:  # pragma: no cover - only when the pool failed to stop them
            os.kill(pid, signal.SIGKILL)
        assert not survivors, f"workers survived close(): {survivors}"


async def eventually(predicate: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def get(pool: Pool, path: str = "/pid") -> int:
    """One request; the pid that answered."""
    lease = await pool.acquire()
    try:
        body = await lease.conn.get(path)
    except BaseException:
        pool.release(lease, reusable=False)
        raise
    pool.release(lease, reusable=True)
    return int(body)


def ready(pool: Pool) -> list[int]:
    return [w.pid for w in pool.snapshot().workers if w.state in ("idle", "busy") and w.pid]


# ----------------------------------------------------------------------------- readiness


def test_a_worker_takes_requests_only_after_its_readiness_handshake() -> None:
    async def body(pool: Pool, records: Records) -> None:
        task = asyncio.ensure_future(get(pool))
        await eventually(lambda: bool(pool.snapshot().workers), "a worker spawned")
        await asyncio.sleep(0.5)  # the app is still importing (IMPORT_DELAY)
        snap = pool.snapshot()
        assert [w.state for w in snap.workers] == ["starting"]
        assert snap.waiting == 1 and snap.in_flight == 0 and not task.done()
        pid = await task
        assert "is ready" in records.text()
        assert ready(pool) == [pid]

    run_pool(plan_for("misbehaving:slow_import", IMPORT_DELAY="1.5"), settings(), body)


def test_health_rounds_sample_each_workers_memory_and_cpu_time_for_the_status() -> None:
    async def body(pool: Pool, records: Records) -> None:
        pid = await get(pool)
        await eventually(
            lambda: any(w.cpu_time is not None for w in pool.snapshot().workers),
            "a health round's sample",
        )
        snap = pool.snapshot()
        (worker,) = snap.workers
        assert worker.pid == pid and worker.requests_served == 1
        assert worker.memory_mb is not None and worker.memory_mb > 1.0
        assert worker.cpu_time is not None and worker.cpu_time > 0.0
        assert worker.age is not None and worker.age > 0.0
        assert snap.free_memory_mb is not None and snap.free_memory_mb > 0
        assert snap.cpu_idle is not None and 0.0 <= snap.cpu_idle <= 1.0

    run_pool(plan_for("misbehaving:sleeps"), settings(max_instances=1), body)


# ----------------------------------------------------------------------------- request timeout


def test_a_request_past_the_timeout_is_cut_its_stack_logged_and_the_worker_replaced() -> None:
    async def body(pool: Pool, records: Records) -> None:
        hung_pid = await get(pool)
        lease = pool.try_acquire()  # the fast path's leases are timed too
        assert lease is not None and lease.worker_pid == hung_pid
        with pytest.raises(ConnectionError):
            await lease.conn.get("/hang")  # the pool closes this connection after ~1 s
        assert lease.timed_out
        pool.release(lease, reusable=False)
        await eventually(lambda: not pid_alive(hung_pid), "the hung worker killed")
        # The worker's Python stack, in the app's log, names the function it hung in.
        await eventually(lambda: "hang_forever" in records.text(), "the stack dump")
        text = records.text()
        assert "past the request timeout of 1 s" in text
        assert "most recent call first" in text
        # A new worker serves the next requests.
        new_pid = await get(pool)
        assert new_pid != hung_pid

    run_pool(plan_for("misbehaving:hangs"), settings(request_timeout=1.0), body)


def test_a_timeout_costs_only_the_request_that_timed_out() -> None:
    """Two threads per worker: the other request in flight on the hung worker finishes."""

    async def body(pool: Pool, records: Records) -> None:
        await get(pool)
        hung = await pool.acquire()
        other = await pool.acquire()
        assert hung.worker_pid == other.worker_pid  # one worker, two threads
        slow = asyncio.ensure_future(other.conn.get("/pid"))
        with pytest.raises(ConnectionError):
            await hung.conn.get("/hang")
        pool.release(hung, reusable=False)
        assert int(await slow) == other.worker_pid
        pool.release(other, reusable=True)
        await eventually(lambda: not pid_alive(hung.worker_pid), "the hung worker killed")
        assert await get(pool) != hung.worker_pid

    pool_settings = settings(max_instances=1, connections_per_worker=2, request_timeout=1.0)
    run_pool(plan_for("misbehaving:hangs", threads=2), pool_settings, body)


# ----------------------------------------------------------------------------- recycling


def test_a_worker_past_its_memory_limit_is_recycled_after_its_request() -> None:
    async def body(pool: Pool, records: Records) -> None:
        first = await get(pool, "/leak/40")
        await get(pool, "/leak/40")
        await eventually(lambda: first not in ready(pool), "the leaky worker recycled")
        await eventually(lambda: not pid_alive(first), "the leaky worker stopped")
        assert "memoryLimit" in records.text()
        # SIGTERM, graceful: "stopped", not "killed".
        await eventually(lambda: f"pid {first} stopped" in records.text(), "the stop logged")
        assert await get(pool) != first
        snap = pool.snapshot()
        assert snap.recycled >= 1 and snap.crashed == 0
        assert dict(snap.recycled_for)["memory"] == snap.recycled  # by its limit (/metrics)
        (gone,) = [e for e in snap.exits if e.pid == first]
        assert gone.expected and "memoryLimit" in (gone.retired_for or "")

    pool_settings = settings(max_instances=1, memory_limit_mb=60)
    run_pool(plan_for("misbehaving:leaks_memory"), pool_settings, body)


def test_time_limit_recycles_workers_one_at_a_time_without_failing_requests() -> None:
    async def body(pool: Pool, records: Records) -> None:
        pids: set[int] = set()
        failures = 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            results = await asyncio.gather(
                *(get(pool, "/sleep/0.05") for _ in range(2)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    failures += 1
                else:
                    pids.add(result)
        assert failures == 0
        assert len(pids) >= 3, pids  # two first workers, and their replacements
        assert "timeLimit" in records.text()
        assert dict(pool.snapshot().recycled_for)["age"] >= 1

    pool_settings = settings(min_instances=2, max_instances=2, time_limit=1.0)
    run_pool(plan_for("misbehaving:sleeps"), pool_settings, body)


def test_max_requests_recycles_a_worker_after_that_many_plus_jitter() -> None:
    async def body(pool: Pool, records: Records) -> None:
        served: list[int] = [await get(pool) for _ in range(24)]
        counts = [served.count(pid) for pid in dict.fromkeys(served)]
        # Each worker but the last served between 5 and 5 + 50 % (jitter) requests.
        assert len(counts) >= 3, counts
        assert all(5 <= count <= 7 for count in counts[:-1]), counts
        assert "maxRequests" in records.text()
        recycled = dict(pool.snapshot().recycled_for)
        # Every worker but the last was recycled; the last too if it just reached its limit.
        assert len(counts) - 1 <= recycled["requests"] <= len(counts), (recycled, counts)
        assert recycled["memory"] == 0

    pool_settings = settings(max_instances=1, max_requests=5, max_requests_jitter=0.5)
    run_pool(plan_for("misbehaving:sleeps"), pool_settings, body)


# ----------------------------------------------------------------------------- idle probes


def test_an_idle_worker_that_stops_answering_is_replaced() -> None:
    async def body(pool: Pool, records: Records) -> None:
        frozen = await get(pool)
        os.kill(frozen, signal.SIGSTOP)  # alive, but answers nothing any more
        try:
            await eventually(lambda: not pid_alive(frozen), "the frozen worker killed")
        finally:
            if pid_alive(frozen):  # pragma: no cover - only when the test fails
                os.kill(frozen, signal.SIGKILL)
        assert "did not answer the health probe" in records.text()
        await eventually(lambda: len(ready(pool)) == 1, "a replacement")
        assert await get(pool) != frozen

    pool_settings = settings(max_instances=1, probe_interval=0.3, probe_timeout=1.0)
    run_pool(plan_for("misbehaving:sleeps"), pool_settings, body)


# ----------------------------------------------------------------------------- crash loops

BROKEN = "import corral_missing_dependency_for_tests\n\ndef application(e, s):\n    pass\n"
FIXED = (
    "def application(environ, start_response):\n"
    "    start_response('200 OK', [])\n"
    "    return [b'42']\n"
)


def test_a_crash_loop_backs_off_fails_and_recovers_when_the_files_are_fixed(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text(BROKEN)

    async def body(pool: Pool, records: Records) -> None:
        errors: list[PoolUnavailable] = []
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not pool.settings.backoff.gave_up(
            pool.snapshot().start_failures
        ):
            with pytest.raises(PoolUnavailable) as info:
                await get(pool)
            errors.append(info.value)
            await asyncio.sleep(0.05)
        snap = pool.snapshot()
        assert snap.state == "failed" and snap.start_failures == 3
        assert snap.workers == ()
        # Between tries, requests were answered at once, without spawning (backoff).
        assert len(errors) > 3
        assert all("corral_missing_dependency_for_tests" in e.stderr_tail for e in errors)
        assert errors[-1].gave_up and errors[-1].retry_in is not None
        spawned = records.text().count("started worker")
        assert spawned == 3
        # FAILED: no retry for the ceiling (30 s) ...
        with pytest.raises(PoolUnavailable):
            await get(pool)
        assert records.text().count("started worker") == 3
        # ... unless the files change: fixed, the app recovers on the next request.
        await asyncio.sleep(1.1)  # the scan runs at most once a second
        (tmp_path / "app.py").write_text(FIXED)
        lease = await pool.acquire()
        assert await lease.conn.get("/") == b"42"
        pool.release(lease, reusable=True)
        assert pool.snapshot().state == "running" and pool.snapshot().start_failures == 0
        assert "its files changed" in records.text()

    backoff = StartBackoff(initial=0.2, factor=2.0, maximum=30.0, give_up_after=3)
    plan = python_worker_plan(tmp_path, app_env={"WSGI_APP": "app:application"})
    run_pool(plan, settings(backoff=backoff), body)


# ----------------------------------------------------------------------------- memory reserve


def test_no_worker_starts_below_the_memory_reserve_and_the_status_says_why() -> None:
    async def body(pool: Pool, records: Records) -> None:
        with pytest.raises(PoolUnavailable) as info:
            await get(pool)
        assert "below the reserve" in info.value.reason
        snap = pool.snapshot()
        assert snap.workers == ()
        assert snap.held_back >= 1
        assert snap.held_reason is not None and "memoryReserve" in snap.held_reason
        assert "not starting 1 worker(s): free memory" in records.text()

    # More than any test machine has free.
    pool_settings = settings(memory_reserve_mb=1 << 30)
    run_pool(plan_for("misbehaving:sleeps"), pool_settings, body)


# ----------------------------------------------------------------------------- under load


def test_under_load_only_the_requests_held_by_crashing_workers_fail() -> None:
    """Every tenth request a worker serves kills it: exactly those requests fail."""

    async def body(pool: Pool, records: Records) -> None:
        ok = failed = 0

        async def client(n: int) -> None:
            nonlocal ok, failed
            for _ in range(n):
                try:
                    await get(pool)
                    ok += 1
                except ConnectionError:
                    failed += 1

        await asyncio.wait_for(asyncio.gather(*(client(25) for _ in range(4))), 60)
        assert ok + failed == 100
        # The last crash may still be being reaped.
        await eventually(
            lambda: records.text().count("exited with code 13") >= failed, "every crash logged"
        )
        crashes = records.text().count("exited with code 13")
        assert failed == crashes, (ok, failed, crashes)
        assert crashes >= 5  # ~100 requests / 10 per worker life
        assert ok == 100 - crashes

    pool_settings = settings(min_instances=2, max_instances=3)
    run_pool(plan_for("misbehaving:crashes_every_tenth"), pool_settings, body)


def test_a_burst_scales_up_and_its_end_scales_back_to_the_floor() -> None:
    async def body(pool: Pool, records: Records) -> None:
        await get(pool)
        assert len(ready(pool)) == 1
        burst = [asyncio.ensure_future(get(pool, "/sleep/1.0")) for _ in range(12)]
        await eventually(lambda: len(ready(pool)) == 3, "scaled up to the maximum")
        pids = await asyncio.gather(*burst)
        assert len(set(pids)) == 3
        await eventually(lambda: len(pool.snapshot().workers) == 1, "back to the floor")
        assert records.text().count("idle for") == 2

    pool_settings = settings(min_instances=1, max_instances=3, idle_timeout=1.0)
    run_pool(plan_for("misbehaving:sleeps"), pool_settings, body)
