"""The scaling policy, table-driven, with a fake clock (``now`` is just a number)."""

from __future__ import annotations

import pytest

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
