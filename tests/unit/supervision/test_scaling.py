"""The scaling policy, table-driven, with a fake clock (``now`` is just a number)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.supervision.scaling import (
    LoadSample,
    ScalingDecision,
    ScalingLimits,
    WorkerLoad,
    decide,
)

NOW = 1000.0


def busy(worker_id: int, active: int = 1) -> WorkerLoad:
    return WorkerLoad(worker_id, active, None)


def idle(worker_id: int, seconds: float) -> WorkerLoad:
    """A worker idle for ``seconds`` at NOW."""
    return WorkerLoad(worker_id, 0, NOW - seconds)


def limits(
    lo: int = 0, hi: int = 4, idle_timeout: float | None = 60.0, capacity: int = 1
) -> ScalingLimits:
    return ScalingLimits(
        min_instances=lo, max_instances=hi, idle_timeout=idle_timeout, capacity=capacity
    )


CASES = [
    # (id, sample, limits, expected decision)
    ("nothing running, nothing waiting, min 0", LoadSample(), limits(), ScalingDecision()),
    ("first request starts one", LoadSample(waiting=1), limits(), ScalingDecision(start=1)),
    (
        "first request starts the floor when min is larger",
        LoadSample(waiting=1),
        limits(lo=3),
        ScalingDecision(start=3),
    ),
    (
        "floor restored after a crash",
        LoadSample(workers=(idle(1, 0),)),
        limits(lo=2),
        ScalingDecision(start=1),
    ),
    (
        "workers already starting absorb waiting requests (no over-start)",
        LoadSample(waiting=2, starting=2, workers=(busy(1),)),
        limits(),
        ScalingDecision(),
    ),
    (
        "more waiting than starting: start the difference",
        LoadSample(waiting=3, starting=1, workers=(busy(1),)),
        limits(),
        ScalingDecision(start=2),
    ),
    (
        "never above max, starting included",
        LoadSample(waiting=10, starting=1, workers=(busy(1), busy(2))),
        limits(hi=4),
        ScalingDecision(start=1),
    ),
    (
        "at max: requests just wait",
        LoadSample(waiting=10, workers=(busy(1), busy(2), busy(3), busy(4))),
        limits(hi=4),
        ScalingDecision(),
    ),
    (
        "capacity: free slots on ready workers absorb waiting requests",
        LoadSample(waiting=2, workers=(busy(1, active=2),)),
        limits(capacity=4),
        ScalingDecision(),
    ),
    (
        "capacity: one new worker per `capacity` unmet requests (ceil)",
        LoadSample(waiting=9, workers=(busy(1, active=4),)),
        limits(capacity=4),
        ScalingDecision(start=3),
    ),
    (
        "idle past the timeout above the floor: stopped",
        LoadSample(workers=(idle(1, 61), busy(2))),
        limits(lo=1),
        ScalingDecision(stop=(1,)),
    ),
    (
        "idle past the timeout but at the floor: kept",
        LoadSample(workers=(idle(1, 600),)),
        limits(lo=1),
        ScalingDecision(),
    ),
    (
        "min 0: scale to zero",
        LoadSample(workers=(idle(1, 60), idle(2, 90))),
        limits(lo=0),
        ScalingDecision(stop=(2, 1)),
    ),
    (
        "longest idle first, down to the floor only",
        LoadSample(workers=(idle(1, 70), idle(2, 500), idle(3, 100))),
        limits(lo=1),
        ScalingDecision(stop=(2, 3)),
    ),
    (
        "starting workers count toward the floor when stopping",
        LoadSample(starting=1, workers=(idle(1, 100),)),
        limits(lo=1),
        ScalingDecision(stop=(1,)),
    ),
    (
        "not yet idle long enough: recheck when it will be",
        LoadSample(workers=(idle(1, 10), idle(2, 50))),
        limits(lo=0),
        ScalingDecision(recheck_at=NOW + 10),
    ),
    (
        "stop one now and recheck for the next",
        LoadSample(workers=(idle(1, 70), idle(2, 30), busy(3))),
        limits(lo=0),
        ScalingDecision(stop=(1,), recheck_at=NOW + 30),
    ),
    (
        "no recheck when the rest are at the floor",
        LoadSample(workers=(idle(1, 70), idle(2, 30))),
        limits(lo=1),
        ScalingDecision(stop=(1,)),
    ),
    (
        "idle_timeout None: never stop",
        LoadSample(workers=(idle(1, 10_000), idle(2, 10_000))),
        limits(lo=0, idle_timeout=None),
        ScalingDecision(),
    ),
    (
        "never stop while requests wait",
        LoadSample(waiting=1, workers=(idle(1, 1000), busy(2), busy(3), busy(4))),
        limits(hi=4),
        ScalingDecision(),
    ),
    (
        "a busy worker is never stopped",
        LoadSample(workers=(busy(1), busy(2))),
        limits(lo=0, idle_timeout=0.0),
        ScalingDecision(),
    ),
    (
        "idle_timeout 0: stop as soon as idle",
        LoadSample(workers=(idle(1, 0),)),
        limits(lo=0, idle_timeout=0.0),
        ScalingDecision(stop=(1,)),
    ),
]


@pytest.mark.parametrize(
    ("sample", "lim", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(sample: LoadSample, lim: ScalingLimits, expected: ScalingDecision) -> None:
    assert decide(sample, lim, NOW) == expected


def test_a_fake_clock_drives_scale_down_over_time() -> None:
    """Replay one pool's idle period: the decision changes only as the clock moves."""
    lim = limits(lo=1, idle_timeout=60.0)
    workers = (WorkerLoad(1, 0, 0.0), WorkerLoad(2, 0, 20.0), WorkerLoad(3, 0, 40.0))
    sample = LoadSample(workers=workers)
    assert decide(sample, lim, 59.0) == ScalingDecision(recheck_at=60.0)
    assert decide(sample, lim, 60.0) == ScalingDecision(stop=(1,), recheck_at=80.0)
    assert decide(sample, lim, 85.0) == ScalingDecision(stop=(1, 2))
    remaining = LoadSample(workers=(WorkerLoad(3, 0, 40.0),))
    assert decide(remaining, lim, 10_000.0) == ScalingDecision()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_instances": -1},
        {"max_instances": 0},
        {"min_instances": 3, "max_instances": 2},
        {"capacity": 0},
        {"idle_timeout": -1.0},
    ],
)
def test_limits_reject_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ScalingLimits(**kwargs)  # type: ignore[arg-type]


def test_policy_module_is_pure() -> None:
    """The policy reads no clock and touches no process: it imports none of those modules."""
    import ast
    from pathlib import Path

    import corral.supervision.scaling as scaling

    tree = ast.parse(Path(scaling.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "dataclasses"}


# ---------------------------------------------------------------------------- load, CPU, memory

MIB = 1024 * 1024


def test_littles_law_sizes_the_pool_before_requests_queue() -> None:
    # 40 req/s x 0.1 s = 4 requests in flight; at 80 % of 1 per worker: 5 workers.
    sample = LoadSample(workers=(busy(1), busy(2)), arrival_rate=40.0, service_time=0.1)
    assert decide(sample, limits(hi=8), NOW) == ScalingDecision(start=3)
    # ...never above the maximum.
    assert decide(sample, limits(hi=3), NOW) == ScalingDecision(start=1)
    # Threads count: capacity 4 per worker -> 4 / (4 x 0.8) = 2 workers, already there.
    assert decide(sample, limits(hi=8, capacity=4), NOW) == ScalingDecision()


def test_the_load_keeps_idle_workers_from_being_stopped() -> None:
    workers = (idle(1, 100), idle(2, 100), idle(3, 100))
    quiet = LoadSample(workers=workers)
    assert decide(quiet, limits(lo=0), NOW).stop == (1, 2, 3)
    # 10 req/s x 0.15 s = 1.5 in flight -> 2 workers are still needed.
    steady = LoadSample(workers=workers, arrival_rate=10.0, service_time=0.15)
    assert decide(steady, limits(lo=0), NOW).stop == (1,)


def test_a_saturated_cpu_holds_back_extra_workers_while_the_queue_is_young() -> None:
    sample = LoadSample(
        waiting=3, workers=(busy(1), busy(2)), cpu_idle=0.01, oldest_wait=0.2, spawn_time=0.5
    )
    lim = ScalingLimits(min_instances=1, max_instances=8, cpu_count=2)
    decision = decide(sample, lim, NOW)
    assert decision == ScalingDecision(start=0, held_back=3, reason="cpu", recheck_at=NOW + 0.8)
    # The hold gives way once a request has waited longer than a start takes (>= 1 s).
    old = LoadSample(
        waiting=3, workers=(busy(1), busy(2)), cpu_idle=0.01, oldest_wait=1.5, spawn_time=0.5
    )
    assert decide(old, lim, NOW) == ScalingDecision(start=3)
    # Below one worker per core, or with idle CPU, there is no hold.
    one = LoadSample(waiting=3, workers=(busy(1),), cpu_idle=0.01, oldest_wait=0.1)
    assert decide(one, lim, NOW).start == 3
    free_cpu = LoadSample(waiting=3, workers=(busy(1), busy(2)), cpu_idle=0.5)
    assert decide(free_cpu, lim, NOW).start == 3


def test_the_cpu_hold_never_keeps_the_pool_below_its_floor() -> None:
    sample = LoadSample(waiting=5, workers=(busy(1), busy(2)), cpu_idle=0.0)
    lim = ScalingLimits(min_instances=3, max_instances=8, cpu_count=2)
    decision = decide(sample, lim, NOW)
    assert (decision.start, decision.held_back, decision.reason) == (1, 4, "cpu")


def test_no_worker_starts_below_the_memory_reserve() -> None:
    lim = ScalingLimits(min_instances=2, max_instances=8, memory_reserve=256 * MIB)
    low = LoadSample(waiting=4, free_memory=200 * MIB)
    assert decide(low, lim, NOW) == ScalingDecision(held_back=4, reason="memory")
    # Above the reserve, only as many as fit at the workers' typical size.
    some = LoadSample(waiting=4, free_memory=456 * MIB, worker_memory=80 * MIB)
    assert decide(some, lim, NOW) == ScalingDecision(start=2, held_back=2, reason="memory")
    # Unknown memory, or no reserve: no hold.
    assert decide(LoadSample(waiting=4), lim, NOW).start == 4
    no_reserve = ScalingLimits(max_instances=8)
    assert decide(LoadSample(waiting=4, free_memory=1), no_reserve, NOW).start == 4


# ---------------------------------------------------------------------------- properties

worker_loads = st.lists(
    st.tuples(st.integers(0, 4), st.one_of(st.none(), st.floats(0.0, NOW))), max_size=10
).map(
    lambda items: tuple(
        WorkerLoad(i + 1, active, None if active else since)
        for i, (active, since) in enumerate(items)
    )
)

samples = st.builds(
    LoadSample,
    waiting=st.integers(0, 50),
    starting=st.integers(0, 5),
    workers=worker_loads,
    oldest_wait=st.floats(0.0, 30.0),
    arrival_rate=st.floats(0.0, 5000.0),
    service_time=st.one_of(st.none(), st.floats(0.0, 5.0)),
    spawn_time=st.one_of(st.none(), st.floats(0.0, 10.0)),
    free_memory=st.one_of(st.none(), st.integers(0, 8 * 1024 * MIB)),
    worker_memory=st.one_of(st.none(), st.integers(1, 512 * MIB)),
    cpu_idle=st.one_of(st.none(), st.floats(0.0, 1.0)),
)


@st.composite
def scaling_limits(draw: st.DrawFn) -> ScalingLimits:
    hi = draw(st.integers(1, 12))
    return ScalingLimits(
        min_instances=draw(st.integers(0, hi)),
        max_instances=hi,
        idle_timeout=draw(st.one_of(st.none(), st.floats(0.0, 600.0))),
        capacity=draw(st.integers(1, 64)),
        memory_reserve=draw(st.integers(0, 1024 * MIB)),
        cpu_count=draw(st.integers(1, 16)),
    )


@given(samples, scaling_limits(), st.floats(0.0, 2 * NOW))
def test_decisions_always_keep_to_the_limits(
    sample: LoadSample, lim: ScalingLimits, now: float
) -> None:
    decision = decide(sample, lim, now)
    total = len(sample.workers) + sample.starting
    assert decision.start >= 0 and decision.held_back >= 0
    assert total + decision.start <= max(lim.max_instances, total)
    # Never both starting and stopping; never stopping while requests wait.
    assert not (decision.start and decision.stop)
    if decision.stop:
        assert sample.waiting == 0
        assert total - len(decision.stop) >= lim.min_instances
        stopped = {w.worker_id: w for w in sample.workers if w.worker_id in decision.stop}
        assert len(stopped) == len(decision.stop)
        for worker in stopped.values():
            assert worker.active == 0 and worker.idle_since is not None
            assert lim.idle_timeout is not None and now - worker.idle_since >= lim.idle_timeout
    # Below the reserve, nothing starts.
    if (
        lim.memory_reserve
        and sample.free_memory is not None
        and (sample.free_memory <= lim.memory_reserve)
    ):
        assert decision.start == 0
    if decision.held_back:
        assert decision.reason in ("cpu", "memory")
    if decision.recheck_at is not None:
        assert decision.recheck_at >= now


@given(samples, scaling_limits(), st.floats(0.0, NOW))
def test_the_floor_is_restored_unless_memory_forbids(
    sample: LoadSample, lim: ScalingLimits, now: float
) -> None:
    decision = decide(sample, lim, now)
    total = len(sample.workers) + sample.starting
    if total < lim.min_instances and decision.reason != "memory":
        assert total + decision.start >= lim.min_instances
