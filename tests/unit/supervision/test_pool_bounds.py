"""``Pool.set_bounds`` (``corral scale``): a new floor starts workers, a lower ceiling retires
the surplus (idle ones first), and bounds the policy refuses are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from tests.unit.supervision.test_pool_state import make_pool, run

from corral.supervision.pool import Pool


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(3.0):
        while not predicate():  # noqa: ASYNC110 (polling a fake pool)
            await asyncio.sleep(0.01)


def _ready(pool: Pool) -> int:
    snap = pool.snapshot()
    return sum(1 for w in snap.workers if w.state in ("idle", "busy") and not w.retiring)


def test_a_higher_floor_starts_workers_and_a_lower_ceiling_retires_them() -> None:
    async def main() -> None:
        pool, _ = make_pool(lambda: False, min_instances=0, max_instances=4)
        pool.release(await pool.acquire(), reusable=True)
        pool.set_bounds(3, 4)
        await _until(lambda: _ready(pool) == 3)
        snap = pool.snapshot()
        assert (snap.min_instances, snap.max_instances) == (3, 4)
        busy = await pool.acquire()  # one worker busy: the idle ones go first
        pool.set_bounds(1, 1)
        await _until(lambda: len(pool.snapshot().workers) == 1)
        (left,) = pool.snapshot().workers
        assert left.pid == busy.worker_pid
        pool.release(busy, reusable=True)
        assert (pool.snapshot().min_instances, pool.snapshot().max_instances) == (1, 1)
        await pool.close(1.0)

    run(main)


def test_a_dormant_pool_with_a_floor_starts_and_bad_bounds_are_refused() -> None:
    async def main() -> None:
        pool, _ = make_pool(lambda: False, min_instances=0, max_instances=2)
        with pytest.raises(ValueError, match="exceeds"):
            pool.set_bounds(3, 2)
        with pytest.raises(ValueError, match="max_instances"):
            pool.set_bounds(0, 0)
        assert pool.snapshot().state == "dormant"
        pool.set_bounds(0, 2)  # no floor: stays dormant
        await asyncio.sleep(0.05)
        assert pool.snapshot().state == "dormant" and not pool.snapshot().workers
        pool.set_bounds(2, 2)
        await _until(lambda: _ready(pool) == 2)
        await pool.close(1.0)

    run(main)
