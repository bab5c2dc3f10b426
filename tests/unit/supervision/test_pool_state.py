"""The pool facade over fake processes, a fake probe and fake connections: its own state is one
``PoolState`` value moving through its table (dormant, running, stopping, backoff, failed,
closing), and the snapshot shows what an operator needs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from tests.unit.supervision.fakes import FakeProcess

from corral.errors import ExitCode
from corral.supervision.backoff import StartBackoff
from corral.supervision.launch import Address, LaunchPlan
from corral.supervision.lease import PoolClosed, PoolUnavailable, WorkerTraits
from corral.supervision.lifecycle import PoolState
from corral.supervision.pool import Pool
from corral.supervision.settings import PoolSettings


class Conn:
    def __init__(self) -> None:
        self.is_closed = False
        self.closed_by_peer = False
        self.in_flight = 0

    def close(self) -> None:
        self.is_closed = True


def make_pool(broken: Callable[[], bool], **settings: Any) -> tuple[Pool, list[FakeProcess]]:
    processes: list[FakeProcess] = []

    async def spawn(plan: LaunchPlan, app: str, path: str | None, wid: int) -> FakeProcess:
        process = FakeProcess(
            6000 + wid,
            ExitCode.APP_LOAD_FAILED if broken() else None,
            stderr="ImportError: no module named app",
        )
        processes.append(process)
        return process

    async def probe(address: Address, within: float) -> WorkerTraits:
        await asyncio.sleep(0.01)
        return WorkerTraits(max_conns=3)

    async def connect(address: Address) -> Any:
        return Conn()

    pool = Pool(
        "facade",
        LaunchPlan(argv=("app",), env={}, cwd="/nonexistent"),
        PoolSettings(**settings),
        connect,
        probe,
        spawn=spawn,
    )
    return pool, processes


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def test_dormant_running_stopping_dormant_closing() -> None:
    async def main() -> None:
        pool, _ = make_pool(lambda: False, min_instances=1, max_instances=2)
        assert pool.state is PoolState.DORMANT and pool.snapshot().state == "dormant"
        assert pool.try_acquire() is None  # a dormant pool: acquire() wakes it
        lease = await pool.acquire()
        assert pool.state is PoolState.RUNNING
        snap = pool.snapshot()
        assert snap.state == "running" and snap.in_flight == 1 and snap.capacity == 3
        assert [(w.pid, w.state) for w in snap.workers] == [(6001, "busy")]
        assert snap.spawn_time is not None and snap.arrival_rate >= 0.0
        pool.release(lease, reusable=True)
        assert pool.snapshot().workers[0].requests_served == 1
        stopping = asyncio.ensure_future(pool.stop_workers("deploy"))
        await asyncio.sleep(0)
        assert pool.state is PoolState.STOPPING
        await stopping
        assert pool.state is PoolState.DORMANT and pool.snapshot().workers == ()
        (exit_info,) = pool.snapshot().exits
        assert exit_info.expected and exit_info.pid == 6001 and exit_info.at >= 0.0
        await pool.close()
        assert pool.state is PoolState.CLOSING and pool.snapshot().closing
        with pytest.raises(PoolClosed):
            await pool.acquire()

    run(main)


def test_an_app_that_cannot_start_backs_off_then_fails_and_a_restart_forgets() -> None:
    async def main() -> None:
        broken = True
        pool, _ = make_pool(
            lambda: broken,
            min_instances=1,
            backoff=StartBackoff(initial=0.01, factor=1.0, maximum=0.01, give_up_after=2),
        )
        with pytest.raises(PoolUnavailable) as first:
            await pool.acquire(timeout=5.0)
        assert "could not be loaded" in first.value.reason
        assert first.value.stderr_tail == "ImportError: no module named app"
        snap = pool.snapshot()
        assert pool.state is PoolState.BACKOFF and snap.state == "backoff"
        assert snap.start_failures == 1 and snap.retry_in is not None
        await asyncio.sleep(0.02)  # the next try is due
        with pytest.raises(PoolUnavailable) as second:
            await pool.acquire(timeout=5.0)
        assert second.value.gave_up
        assert pool.state is PoolState.FAILED and pool.snapshot().start_failures == 2
        assert await pool.restart("fixed") is True  # nothing runs: forget the failures
        assert pool.state is PoolState.DORMANT and pool.snapshot().start_failures == 0
        broken = False
        lease = await pool.acquire(timeout=5.0)
        assert pool.state is PoolState.RUNNING
        pool.release(lease, reusable=True)
        await pool.close(grace=1.0)

    run(main)


def test_a_rolling_restart_is_counted_and_a_crash_too() -> None:
    async def main() -> None:
        pool, processes = make_pool(lambda: False, min_instances=1, max_instances=1)
        lease = await pool.acquire()
        pool.release(lease, reusable=True)
        assert await pool.restart("files changed") is True
        snap = pool.snapshot()
        assert snap.restarts == 1 and [w.generation for w in snap.workers] == [1]
        processes[-1].kill()  # the new worker crashes
        for _ in range(100):
            await asyncio.sleep(0.01)
            if pool.snapshot().crashed:
                break
        snap = pool.snapshot()
        assert snap.crashed == 1 and not snap.exits[-1].expected
        await pool.close(grace=1.0)

    run(main)
