"""The worker pool, end to end: real worker processes (the stdlib FastCGI responder fixture in
tests/apps), real Unix/TCP sockets, real signals. Every scenario runs under asyncio's default loop
and under uvloop."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from fcgi_client import TestConnection, connect
from pool_testkit import LOOPS, pid_alive, responder_plan, run_under
from pool_testkit import get as request

from corral.supervision import (
    AcquireTimeout,
    LaunchPlan,
    Lease,
    Pool,
    PoolClosed,
    PoolOverloaded,
    PoolSettings,
    PoolUnavailable,
    StartBackoff,
    WorkerSocket,
)

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Run[Any]:
    loop: str = request.param
    return lambda main: run_under(loop, main)


def settings(**overrides: Any) -> PoolSettings:
    base: dict[str, Any] = {
        "min_instances": 1,
        "max_instances": 2,
        "queue_timeout": 10.0,
        "start_timeout": 10.0,
        "graceful_shutdown_timeout": 5.0,
        "idle_timeout": None,
    }
    base.update(overrides)
    return PoolSettings(**base)


async def eventually(
    predicate: Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def ready_pids(pool: Pool) -> list[int]:
    return [w.pid for w in pool.snapshot().workers if w.state in ("idle", "busy") and w.pid]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def with_pool(
    plan: LaunchPlan,
    pool_settings: PoolSettings,
    body: Callable[[Pool], Awaitable[T]],
) -> T:
    """Run ``body`` against a fresh pool; always close it and check no worker survives."""
    pool = Pool("testapp", plan, pool_settings, connect)
    spawned = _ListHandler()
    pool_logger = logging.getLogger("corral.supervision.pool")
    saved_level = pool_logger.level
    pool_logger.addHandler(spawned)
    pool_logger.setLevel(logging.INFO)
    try:
        return await body(pool)
    finally:
        await pool.close(grace=1.0)
        pool_logger.removeHandler(spawned)
        pool_logger.setLevel(saved_level)
        assert pool.snapshot().workers == ()
        pids = {r.pid for r in spawned.records if getattr(r, "pid", None)}  # type: ignore[attr-defined]
        survivors = [pid for pid in pids if pid_alive(pid)]
        for pid in survivors:  # pragma: no cover - only when the pool failed to stop them
            os.kill(pid, signal.SIGKILL)
        assert not survivors, f"workers survived close(): {survivors}"


# ----------------------------------------------------------------------------- starting


def test_workers_start_lazily_on_first_acquire(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        await asyncio.sleep(0.3)
        assert pool.snapshot().workers == ()  # nothing before the first request
        pid, answer = await request(pool)
        assert answer == str(pid).encode()
        snap = pool.snapshot()
        assert [(w.pid, w.state, w.requests_served) for w in snap.workers] == [(pid, "idle", 1)]
        assert snap.waiting == 0 and snap.in_flight == 0
        assert (snap.min_instances, snap.max_instances) == (1, 2)

    run(with_pool(responder_plan(tmp_path), settings(min_instances=1), body))


def test_min_instances_started_after_first_request_and_kept(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        await request(pool)
        await eventually(lambda: len(ready_pids(pool)) == 3, what="3 workers")
        first = sorted(ready_pids(pool))
        await asyncio.sleep(0.6)  # idle_timeout passes: the floor stays
        assert sorted(ready_pids(pool)) == first

    pool_settings = settings(min_instances=3, max_instances=4, idle_timeout=0.2)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_max_instances_caps_workers_and_requests_queue(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        results = await asyncio.gather(*(request(pool, "/sleep/0.2") for _ in range(6)))
        pids = {pid for pid, _ in results}
        assert len(pids) == 2
        assert all(body == str(pid).encode() for pid, body in results)
        assert len(pool.snapshot().workers) == 2
        assert sum(w.requests_served for w in pool.snapshot().workers) == 6

    run(with_pool(responder_plan(tmp_path), settings(min_instances=0, max_instances=2), body))


def test_a_full_queue_raises_overloaded_and_waiters_are_served_in_order(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        held = await pool.acquire()
        order: list[int] = []

        async def waiter(n: int) -> None:
            lease = await pool.acquire()
            order.append(n)
            pool.release(lease, reusable=True)

        tasks = []
        for n in range(2):
            tasks.append(asyncio.ensure_future(waiter(n)))
            await asyncio.sleep(0.01)
        await eventually(lambda: pool.snapshot().waiting == 2, what="2 waiting")
        assert pool.snapshot().queue_length == 2  # nothing queued on connections here
        with pytest.raises(PoolOverloaded) as info:
            await pool.acquire()
        assert info.value.queue_size == 2 and "overloaded" in str(info.value)
        pool.release(held, reusable=True)
        await asyncio.gather(*tasks)
        assert order == [0, 1]

    pool_settings = settings(min_instances=1, max_instances=1, queue_size=2)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_waiting_longer_than_the_timeout_raises_acquire_timeout(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        # The first lease waits for the worker to start: not bounded by the 0.2 s under test
        # (a loaded machine takes longer than that to start Python).
        held = await pool.acquire(timeout=15.0)
        started = time.monotonic()
        with pytest.raises(AcquireTimeout):
            await pool.acquire(timeout=0.3)
        # Nothing but the timeout can end this wait (the only worker stays leased); the upper
        # bound only rules out a hang, with room for a loaded machine.
        assert 0.25 < time.monotonic() - started < 15.0
        assert pool.snapshot().waiting == 0
        pool.release(held, reusable=True)
        # queue_timeout is the default
        held = await pool.acquire()
        with pytest.raises(AcquireTimeout):
            await pool.acquire()
        pool.release(held, reusable=True)

    pool_settings = settings(min_instances=1, max_instances=1, queue_timeout=0.2)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_a_cancelled_waiter_leaves_no_trace(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        held = await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire())
        await eventually(lambda: pool.snapshot().waiting == 1, what="1 waiting")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.snapshot().waiting == 0
        pool.release(held, reusable=True)
        lease = await pool.acquire(timeout=1.0)  # the worker was not lost to the cancelled one
        assert lease.worker_pid == held.worker_pid
        pool.release(lease, reusable=True)

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_kept_alive_connections_are_reused_and_unreusable_ones_closed(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        first = await pool.acquire()
        await first.conn.get("/pid")
        pool.release(first, reusable=True)
        second = await pool.acquire()
        assert second.conn is first.conn  # kept alive
        await second.conn.get("/pid")
        pool.release(second, reusable=False)
        assert second.conn.is_closed
        third = await pool.acquire()
        assert third.conn is not second.conn
        assert third.worker_pid == second.worker_pid  # the worker stays
        assert await third.conn.get("/pid") == str(third.worker_pid).encode()
        pool.release(third, reusable=True)
        pool.release(third, reusable=True)  # twice: no effect
        assert pool.snapshot().workers[0].requests_served == 3

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_try_acquire_leases_an_idle_kept_alive_connection_at_once_and_nothing_else(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        assert pool.try_acquire() is None  # dormant: only acquire() starts workers
        first = await pool.acquire()
        assert pool.try_acquire() is None  # the one worker is busy
        await first.conn.get("/pid")
        pool.release(first, reusable=True)
        second = pool.try_acquire()
        assert second is not None and second.conn is first.conn
        assert second.worker_pid == first.worker_pid
        assert pool.snapshot().in_flight == 1
        # A request that waits goes first: no lease jumps the queue.
        waiter = asyncio.ensure_future(pool.acquire())
        await eventually(lambda: pool.snapshot().waiting == 1, what="a waiter")
        assert await second.conn.get("/pid") == str(second.worker_pid).encode()
        pool.release(second, reusable=True)
        assert pool.try_acquire() is None
        third = await waiter
        assert third.conn is first.conn
        pool.release(third, reusable=False)
        # Its connection closed, the worker is idle but has none kept alive: acquire() connects.
        assert pool.try_acquire() is None
        fourth = await pool.acquire()
        assert await fourth.conn.get("/pid") == str(first.worker_pid).encode()
        pool.release(fourth, reusable=True)
        assert pool.snapshot().workers[0].requests_served == 4
        closing = asyncio.ensure_future(pool.close(grace=1.0))
        await asyncio.sleep(0)
        assert pool.try_acquire() is None
        await closing

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_lease_or_wait_queues_with_acquire_in_one_fifo_and_delivers_by_callback(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        got: list[Any] = []
        # Dormant: waking the pool may wait, so that is acquire()'s job.
        assert pool.lease_or_wait(got.append) is None
        first = await pool.acquire()
        # Handed a worker whose connection was closed, a waiter gets a new connection.
        waiter = pool.lease_or_wait(got.append)
        assert isinstance(waiter, asyncio.Future)
        pool.release(first, reusable=False)
        await eventually(lambda: bool(got), what="a lease on a new connection")
        [first] = got
        assert isinstance(first, Lease) and not first.conn.is_closed
        assert await first.conn.get("/pid") == str(first.worker_pid).encode()
        # The worker is busy: an acquire() queues, then a callback waiter, then another that
        # gives up. Leases go out in arrival order.
        awaited = asyncio.ensure_future(pool.acquire())
        await eventually(lambda: pool.snapshot().waiting == 1, what="a waiter")
        got.clear()
        second = pool.lease_or_wait(got.append)
        given_up = pool.lease_or_wait(lambda result: got.append(("given up", result)))
        assert isinstance(second, asyncio.Future) and isinstance(given_up, asyncio.Future)
        assert pool.snapshot().waiting == 3
        pool.cancel_wait(given_up)
        assert pool.snapshot().waiting == 2
        pool.release(first, reusable=True)
        third = await awaited
        assert third.conn is first.conn and not got
        pool.release(third, reusable=True)
        await eventually(lambda: bool(got), what="the callback's lease")
        [lease] = got
        assert isinstance(lease, Lease) and lease.conn is first.conn
        # Nobody waits and the worker is idle with a kept-alive connection: a lease at once.
        pool.release(lease, reusable=True)
        at_once = pool.lease_or_wait(got.append)
        assert isinstance(at_once, Lease) and at_once.conn is first.conn
        pool.release(at_once, reusable=True)
        await asyncio.sleep(0.05)
        assert all(not isinstance(item, tuple) for item in got)  # the one given up: nothing
        assert pool.snapshot().workers[0].requests_served == 5

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_lease_or_wait_refuses_at_once_or_delivers_the_error_acquire_would_raise(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        held = await pool.acquire()
        got: list[Any] = []
        assert isinstance(pool.lease_or_wait(got.append), asyncio.Future)
        with pytest.raises(PoolOverloaded):
            pool.lease_or_wait(got.append)  # the queue (of one) is full
        closing = asyncio.ensure_future(pool.close(grace=0.5))
        await eventually(lambda: bool(got), what="the waiter's error")
        assert isinstance(got[0], PoolClosed)
        with pytest.raises(PoolClosed):
            pool.lease_or_wait(got.append)
        pool.release(held, reusable=True)
        await closing

    pool_settings = settings(min_instances=1, max_instances=1, queue_size=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_lease_or_wait_delivers_an_app_that_cannot_start(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        got: list[Any] = []
        assert pool.lease_or_wait(got.append) is None  # dormant
        first = asyncio.ensure_future(pool.acquire())  # wakes the pool: a worker starts
        await eventually(lambda: pool.snapshot().waiting == 1, what="the first request waiting")
        assert isinstance(pool.lease_or_wait(got.append), asyncio.Future)
        await eventually(lambda: bool(got), what="the failure")
        assert isinstance(got[0], PoolUnavailable)
        assert "could not be loaded" in got[0].reason
        with pytest.raises(PoolUnavailable):
            await first

    plan = responder_plan(tmp_path, fail_import="1")
    run(with_pool(plan, settings(min_instances=0, max_instances=1), body))


def test_tcp_transport(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        pid, answer = await request(pool)
        assert answer == str(pid).encode()
        address = pool.snapshot().workers[0].address
        assert address is not None and address.startswith("127.0.0.1:")

    plan = responder_plan(tmp_path, transport=WorkerSocket.TCP)
    run(with_pool(plan, settings(), body))


def test_connections_per_worker_lets_one_worker_serve_several_requests(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        # Each request waits inside the worker until all three are there at once.
        results = await asyncio.gather(*(request(pool, "/barrier/3") for _ in range(3)))
        assert [answer for _, answer in results] == [b"met"] * 3
        assert len({pid for pid, _ in results}) == 1
        assert pool.snapshot().workers[0].requests_served == 3

    pool_settings = settings(min_instances=1, max_instances=1, connections_per_worker=3)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_a_worker_advertising_more_connections_gets_them(run: Run[None], tmp_path: Path) -> None:
    """FCGI_MAX_CONNS above connections_per_worker (an ASGI worker's event loop takes many
    connections) raises the pool's per-worker capacity: three requests meet in one worker."""

    async def body(pool: Pool) -> None:
        results = await asyncio.gather(*(request(pool, "/barrier/3") for _ in range(3)))
        assert [answer for _, answer in results] == [b"met"] * 3
        assert len({pid for pid, _ in results}) == 1

    pool_settings = settings(min_instances=1, max_instances=1)
    assert pool_settings.connections_per_worker == 1
    run(with_pool(responder_plan(tmp_path, max_conns="3"), pool_settings, body))


# ----------------------------------------------------------------------------- failures


def test_a_worker_killed_is_replaced_and_others_are_unaffected(
    run: Run[None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    async def body(pool: Pool) -> None:
        await request(pool)
        await eventually(lambda: len(ready_pids(pool)) == 2, what="2 workers")
        a = await pool.acquire()
        b = await pool.acquire()
        assert a.worker_pid != b.worker_pid
        victim = a.worker_pid
        os.kill(victim, signal.SIGKILL)  # a worker this test's pool started
        with pytest.raises(ConnectionError):
            await a.conn.get("/pid")  # the request in flight on it fails (the front: 502)
        pool.release(a, reusable=False)
        assert await b.conn.get("/pid") == str(b.worker_pid).encode()
        pool.release(b, reusable=True)
        await eventually(
            lambda: len(ready_pids(pool)) == 2 and victim not in ready_pids(pool),
            what="the killed worker replaced",
        )
        assert b.worker_pid in ready_pids(pool)
        assert not pid_alive(victim)
        for _ in range(4):
            pid, _answer = await request(pool)
            assert pid != victim

    run(with_pool(responder_plan(tmp_path), settings(min_instances=2, max_instances=2), body))
    messages = [r.getMessage() for r in caplog.records if r.name == "corral.supervision.pool"]
    assert any(" killed by signal SIGKILL" in m for m in messages)


def test_a_worker_exiting_mid_request_is_logged_with_its_code(
    run: Run[None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    async def body(pool: Pool) -> None:
        lease = await pool.acquire()
        pid = lease.worker_pid
        with pytest.raises(ConnectionError):
            await lease.conn.get("/exit/7")
        pool.release(lease, reusable=False)
        await eventually(
            lambda: ready_pids(pool) != [] and pid not in ready_pids(pool),
            what="replacement (min_instances=1)",
        )
        messages = [r.getMessage() for r in caplog.records if r.name == "corral.supervision.pool"]
        assert any(
            m.startswith(f"app testapp: worker pid {pid} exited with code 7") for m in messages
        )

    run(with_pool(responder_plan(tmp_path), settings(min_instances=1), body))


def test_an_app_that_fails_to_import_makes_requests_fail_with_its_traceback(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        results = await asyncio.gather(*(pool.acquire() for _ in range(3)), return_exceptions=True)
        for error in results:
            assert isinstance(error, PoolUnavailable), error
            assert "could not be loaded" in error.reason
            assert "Traceback (most recent call last)" in error.stderr_tail
            assert "No module named 'no_such_module_for_corral_tests'" in error.stderr_tail
        snap = pool.snapshot()
        assert snap.workers == () and snap.waiting == 0
        failures = snap.start_failures
        assert failures >= 1
        assert snap.last_error is not None and "cannot start" in snap.last_error
        # With retry_on_demand, the next request tries again (and fails again, the same way).
        with pytest.raises(PoolUnavailable) as again:
            await pool.acquire()
        assert "No module named" in again.value.stderr_tail
        assert pool.snapshot().start_failures > failures

    pool_settings = settings(min_instances=2, backoff=StartBackoff(retry_on_demand=True))
    run(with_pool(responder_plan(tmp_path, fail_import="1"), pool_settings, body))


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("3", "the worker exited with code 3 before it was ready"),
        ("5", "the worker could not use its listening socket (worker exited with code 5)"),
    ],
)
def test_a_worker_that_exits_before_ready_makes_the_app_unavailable(
    run: Run[None], tmp_path: Path, code: str, reason: str
) -> None:
    async def body(pool: Pool) -> None:
        with pytest.raises(PoolUnavailable) as info:
            await pool.acquire()
        assert info.value.reason == reason

    run(with_pool(responder_plan(tmp_path, exit_early=code), settings(), body))


def test_a_worker_that_never_answers_the_probe_times_out_and_is_killed(
    run: Run[None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    async def body(pool: Pool) -> None:
        started = time.monotonic()
        with pytest.raises(PoolUnavailable) as info:
            await pool.acquire()
        assert "within 0.5 s" in info.value.reason
        assert time.monotonic() - started < 8.0  # not the queue's 10 s: the probe's 0.5 s
        pids = [
            getattr(r, "pid", 0) for r in caplog.records if getattr(r, "stream", "") == "stdout"
        ]
        assert pids and not any(pid_alive(pid) for pid in pids)

    pool_settings = settings(start_timeout=0.5)
    run(with_pool(responder_plan(tmp_path, never_ready="1"), pool_settings, body))


def test_a_program_that_cannot_be_executed_makes_the_app_unavailable(
    run: Run[None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(pool: Pool) -> None:
        with pytest.raises(PoolUnavailable) as info:
            await pool.acquire()
        assert "no-such-program-for-corral" in info.value.reason

    caplog.set_level(logging.INFO, logger="corral.supervision")

    plan = LaunchPlan(argv=(str(tmp_path / "no-such-program-for-corral"),), env={}, cwd="/")
    run(with_pool(plan, settings(), body))
    # A worker that never got a process is named by its number, not as "worker pid None".
    failed = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert failed and all("pid None" not in m and "worker #" in m for m in failed), failed


def test_a_slow_start_serves_the_requests_that_waited(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        results = await asyncio.gather(*(request(pool) for _ in range(3)))
        assert len({pid for pid, _ in results}) == 1

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path, start_delay="0.5"), pool_settings, body))


def test_without_retry_on_demand_requests_fail_fast_during_the_backoff(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        with pytest.raises(PoolUnavailable):
            await pool.acquire()
        assert pool.snapshot().start_failures == 1
        with pytest.raises(PoolUnavailable) as info:
            await pool.acquire()  # within the backoff: no new attempt
        assert "No module named" in info.value.stderr_tail
        assert pool.snapshot().start_failures == 1
        assert pool.snapshot().workers == ()

    backoff = StartBackoff(initial=30.0, retry_on_demand=False)
    pool_settings = settings(backoff=backoff)
    run(with_pool(responder_plan(tmp_path, fail_import="1"), pool_settings, body))


def test_failed_starts_back_off_while_other_workers_serve(run: Run[None], tmp_path: Path) -> None:
    marker = tmp_path / "broken"

    async def body(pool: Pool) -> None:
        await request(pool)
        await eventually(lambda: len(ready_pids(pool)) == 2, what="2 workers")
        marker.write_text("")  # from now on, new workers cannot start
        victim, survivor = ready_pids(pool)
        os.kill(victim, signal.SIGKILL)  # a worker this test's pool started
        await eventually(lambda: pool.snapshot().start_failures == 1, what="a failed start")
        await asyncio.sleep(0.4)  # within the 1 s backoff: no second attempt
        assert pool.snapshot().start_failures == 1
        assert ready_pids(pool) == [survivor]
        assert (await request(pool))[0] == survivor  # requests are still served
        marker.unlink()
        await eventually(lambda: len(ready_pids(pool)) == 2, what="the floor restored")
        assert pool.snapshot().start_failures == 0  # reset by a worker that became ready

    backoff = StartBackoff(initial=1.0)
    pool_settings = settings(min_instances=2, max_instances=2, backoff=backoff)
    run(with_pool(responder_plan(tmp_path, fail_if_exists=str(marker)), pool_settings, body))


def test_a_worker_refusing_connections_is_replaced_and_the_request_served(
    run: Run[None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    async def body(pool: Pool) -> None:
        lease = await pool.acquire()
        broken = lease.worker_pid
        assert await lease.conn.get("/close-listener") == b"closed"
        pool.release(lease, reusable=False)  # the next request needs a new connection
        pid, answer = await request(pool)
        assert pid != broken and answer == str(pid).encode()
        await eventually(lambda: not pid_alive(broken), what="the broken worker killed")
        assert any(
            f"cannot connect to worker pid {broken}" in r.getMessage() for r in caplog.records
        )

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_a_runtime_directory_removed_behind_the_pools_back_is_recreated(
    run: Run[None], tmp_path: Path
) -> None:
    """A tmp cleaner deleting the sockets: the unreachable worker is replaced on the next
    request, in a fresh private directory."""

    async def body(pool: Pool) -> None:
        lease = await pool.acquire()
        old_pid = lease.worker_pid
        pool.release(lease, reusable=False)
        old_dir = pool._workers.runtime_dir
        assert old_dir is not None
        shutil.rmtree(old_dir)
        pid, answer = await request(pool)
        assert pid != old_pid and answer == str(pid).encode()
        new_dir = pool._workers.runtime_dir
        assert new_dir is not None and new_dir != old_dir
        assert (os.stat(new_dir).st_mode & 0o777) == 0o700

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


# ----------------------------------------------------------------------------- scaling down


def test_idle_workers_are_stopped_down_to_min(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        await asyncio.gather(*(request(pool, "/sleep/0.3") for _ in range(3)))
        assert len(pool.snapshot().workers) == 3
        pids = ready_pids(pool)
        await eventually(lambda: len(pool.snapshot().workers) == 1, what="scale down to 1")
        gone = [pid for pid in pids if pid not in ready_pids(pool)]
        await eventually(lambda: not any(pid_alive(pid) for pid in gone), what="stopped")

    pool_settings = settings(min_instances=1, max_instances=3, idle_timeout=0.3)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_min_zero_scales_to_zero_and_starts_again_on_demand(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        first, _ = await request(pool)
        await eventually(lambda: pool.snapshot().workers == (), what="scale to zero")
        second, _ = await request(pool)
        assert second != first

    pool_settings = settings(min_instances=0, max_instances=1, idle_timeout=0.2)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


# ----------------------------------------------------------------------------- closing


def test_close_waits_for_requests_in_flight_within_grace(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        lease = await pool.acquire()
        pid = lease.worker_pid
        runtime_dir = pool._workers.runtime_dir
        assert runtime_dir is not None and (os.stat(runtime_dir).st_mode & 0o777) == 0o700

        async def in_flight() -> bytes:
            answer = await lease.conn.get("/sleep/0.5")
            pool.release(lease, reusable=True)
            return answer

        served = asyncio.ensure_future(in_flight())
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(pool.close(grace=5.0))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolClosed):
            await pool.acquire()
        assert await served == str(pid).encode()  # finished despite the close
        await closing
        assert not pid_alive(pid)
        assert not os.path.exists(runtime_dir)  # noqa: ASYNC240
        assert pool.snapshot().closing

    run(with_pool(responder_plan(tmp_path), settings(), body))


def test_close_fails_waiting_requests(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        held = await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire())
        await eventually(lambda: pool.snapshot().waiting == 1, what="1 waiting")
        closing = asyncio.ensure_future(pool.close(grace=5.0))
        with pytest.raises(PoolClosed):
            await waiting
        pool.release(held, reusable=True)
        await closing

    pool_settings = settings(min_instances=1, max_instances=1)
    run(with_pool(responder_plan(tmp_path), pool_settings, body))


def test_close_stops_workers_after_the_grace_even_with_leases_held(
    run: Run[None], tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        lease: Lease[TestConnection] = await pool.acquire()
        started = time.monotonic()
        await pool.close(grace=0.3)
        assert 0.25 < time.monotonic() - started < 8.0  # the lease is never given back
        assert not pid_alive(lease.worker_pid)
        pool.release(lease, reusable=True)  # late release after close: harmless
        assert lease.conn.is_closed

    run(with_pool(responder_plan(tmp_path), settings(), body))


def test_close_while_a_worker_is_starting_kills_it(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        waiting = asyncio.ensure_future(pool.acquire())
        await eventually(
            lambda: any(w.pid for w in pool.snapshot().workers), what="a worker spawned"
        )
        pid = pool.snapshot().workers[0].pid
        assert pid is not None and pool.snapshot().workers[0].state == "starting"
        await pool.close(grace=1.0)
        with pytest.raises(PoolClosed):
            await waiting
        assert not pid_alive(pid)

    run(with_pool(responder_plan(tmp_path, start_delay="30"), settings(), body))


def test_a_worker_ignoring_sigterm_is_killed_after_the_shutdown_timeout(
    run: Run[None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    async def body(pool: Pool) -> None:
        pid, _ = await request(pool)
        started = time.monotonic()
        await pool.close(grace=0.1)
        assert 0.3 <= time.monotonic() - started < 8.0  # SIGTERM alone never ends it
        assert not pid_alive(pid)

    pool_settings = settings(graceful_shutdown_timeout=0.4)
    run(with_pool(responder_plan(tmp_path, ignore_term="1"), pool_settings, body))
    assert any("did not stop within 0.4 s of SIGTERM" in r.getMessage() for r in caplog.records)


def test_a_cancelled_close_still_kills_every_worker(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        pid, _ = await request(pool)
        closing = asyncio.ensure_future(pool.close(grace=0.1))
        await asyncio.sleep(0.3)  # SIGTERM sent and ignored; 30 s to go before SIGKILL
        assert pid_alive(pid)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        await eventually(lambda: not pid_alive(pid), what="the worker killed")
        await pool.close()  # already closed: returns at once

    pool_settings = settings(graceful_shutdown_timeout=30.0)
    run(with_pool(responder_plan(tmp_path, ignore_term="1"), pool_settings, body))


def test_stopping_a_worker_stops_its_process_group(run: Run[None], tmp_path: Path) -> None:
    async def body(pool: Pool) -> None:
        await request(pool)
        grandchild = None
        for record in caplog_records:
            text = record.getMessage()
            if "grandchild" in text:
                grandchild = int(text.rsplit(" ", 1)[1])
        assert grandchild is not None and pid_alive(grandchild)
        await pool.close(grace=0.1)
        await eventually(lambda: not pid_alive(grandchild), what="the grandchild gone")

    handler = _ListHandler()
    caplog_records = handler.records
    logger = logging.getLogger("corral.app.testapp")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run(with_pool(responder_plan(tmp_path, spawn_child="1"), settings(), body))
    finally:
        logger.removeHandler(handler)


# ----------------------------------------------------------------------------- logging


def test_worker_output_is_logged_line_by_line_with_app_and_pid(
    run: Run[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    async def body(pool: Pool) -> int:
        pid, _ = await request(pool)
        return pid

    pid = run(with_pool(responder_plan(tmp_path), settings(), body))
    mine = [r for r in caplog.records if r.name == "corral.app.testapp"]
    serving = [r for r in mine if r.getMessage() == f"testapp[{pid}] responder {pid} serving"]
    assert len(serving) == 1
    record = serving[0]
    assert (record.app, record.pid, record.stream) == ("testapp", pid, "stdout")  # type: ignore[attr-defined]
    assert record.levelno == logging.INFO


def test_a_stream_of_queued_requests_is_served_in_order_on_either_loop(
    run: Run[None], tmp_path: Path
) -> None:
    """Many requests queue within the same millisecond: the policy is asked at most every
    EVALUATE_EVERY s, the look skipped is made up by a timer, and on uvloop a timer asked for
    a time already past (a plain Handle, without when()) is handled."""

    async def body(pool: Pool) -> None:
        held = await pool.acquire()
        got: list[Any] = []
        for n in range(30):
            waiter = pool.lease_or_wait(lambda result, n=n: got.append((n, result)))
            assert isinstance(waiter, asyncio.Future)
        loop = asyncio.get_running_loop()
        pool._scaler.wake_at(loop.time() - 1.0)  # already past, then another look, sooner
        pool._scaler.wake_at(loop.time() - 2.0)
        assert pool.snapshot().waiting == 30
        pool.release(held, reusable=True)
        while len(got) < 30:
            await eventually(lambda: bool(got), what="a lease")
            n, lease = got[-1]
            assert isinstance(lease, Lease)
            pool.release(lease, reusable=True)
            await eventually(lambda n=n: len(got) > n + 1 or n == 29, what="the next lease")
        assert [n for n, _ in got] == list(range(30))  # first come, first served

    run(with_pool(responder_plan(tmp_path), settings(min_instances=1, max_instances=1), body))
