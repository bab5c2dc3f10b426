"""The concurrency policy (connections per elastic worker), table-driven, with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from corral.supervision.concurrency import (
    CAP_SHRINK_AFTER,
    CPU_BOUND,
    GROW,
    HELD_BY_GIL,
    HELD_BY_MEMORY,
    SHRINK,
    SHRINK_AFTER,
    THREAD_MEMORY,
    Base,
    ConcurrencyDecision,
    ConcurrencySample,
    cpu_cap,
    decide_capacity,
    next_base,
    waits,
)
from corral.supervision.scaling import LoadSample, ScalingLimits, WorkerLoad, decide

NOW = 1000.0
LONG_AGO = NOW - 60.0
MIB = 1024 * 1024
LIMITS = ScalingLimits(max_instances=2, cpu_count=2)
RESERVE = ScalingLimits(max_instances=2, cpu_count=2, memory_reserve=64 * MIB)

#: The app sleeps 50 ms and burns 0.2 ms of CPU a request; one burning 5 ms of CPU in 6 ms.
SLEEPER = Base(service=0.050, cpu=0.0002)
BURNER = Base(service=0.006, cpu=0.005)
#: A hello-world app: 0.3 ms held (mostly the front), 0.05 ms of CPU.
HELLO = Base(service=0.0003, cpu=0.00005)


def sample(base: Base | None = SLEEPER, **fields: object) -> ConcurrencySample:
    values: dict[str, object] = {
        "capacity": 1,
        "ceiling": 128,
        "workers": 2,
        "service_time": None if base is None else base.service,
        "cpu_per_request": None if base is None else base.cpu,
        "base": base,
        "worker_cpu": 0.1,
        "cpu_idle": 0.5,
    }
    values.update(fields)
    return ConcurrencySample(**values)  # type: ignore[arg-type]


CASES = [
    # (id, sample, changed_at, limits, expected)
    (
        "a waiting app under load grows at once to the requests present",
        sample(in_flight=2, waiting=198),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(125, GROW),
    ),
    (
        "... and to Little's law's need (3,500/s x 50 ms on 2 workers at 80 %)",
        sample(capacity=16, in_flight=32, arrival_rate=3500.0),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(110, GROW),
    ),
    (
        "... never past the ceiling the workers advertise",
        sample(in_flight=2, waiting=998),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(128, GROW),
    ),
    (
        "a CPU-bound app holds at one connection per worker, whatever waits",
        sample(BURNER, in_flight=2, waiting=14, worker_cpu=0.9),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(1),
    ),
    (
        "a fast app (below 5 ms) is pipelining's, not threads'",
        sample(HELLO, in_flight=64, waiting=0),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(1),
    ),
    (
        "nothing grows before the CPU per request is measured",
        sample(None, service_time=0.05, in_flight=2, waiting=198),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(1),
    ),
    (
        "a worker already burning most of a core gets no more threads",
        sample(capacity=8, in_flight=16, waiting=100, worker_cpu=0.85),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(8, HELD_BY_GIL),
    ),
    (
        "the CPU cap: 0.8 x 20 ms / 2 ms = 8 threads per worker (a mixed app)",
        sample(Base(0.020, 0.002), in_flight=2, waiting=198),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(8, GROW),
    ),
    (
        "on a saturated machine a request must wait 8 times its CPU to count as waiting",
        sample(Base(0.020, 0.004), in_flight=2, waiting=100, cpu_idle=0.01),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(1),
    ),
    (
        "... unless its waits for a core were measured and taken off its base (Linux)",
        sample(Base(0.020, 0.004, net=True), in_flight=2, waiting=100, cpu_idle=0.01),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(4, GROW),
    ),
    (
        "... which the sleeping app does",
        sample(in_flight=2, waiting=100, cpu_idle=0.01),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(64, GROW),
    ),
    (
        "no thread is added while free memory is below the reserve",
        sample(in_flight=2, waiting=198, free_memory=32 * MIB),
        LONG_AGO,
        RESERVE,
        ConcurrencyDecision(1, HELD_BY_MEMORY),
    ),
    (
        "... and no more than fit above it (1 MiB a thread, 2 workers)",
        sample(in_flight=2, waiting=198, free_memory=64 * MIB + 20 * THREAD_MEMORY),
        LONG_AGO,
        RESERVE,
        ConcurrencyDecision(11, GROW),
    ),
    (
        "the load gone: halved once SHRINK_AFTER has passed",
        sample(capacity=128, in_flight=0, arrival_rate=0.0),
        NOW - SHRINK_AFTER,
        LIMITS,
        ConcurrencyDecision(64, SHRINK, recheck_at=NOW + SHRINK_AFTER),
    ),
    (
        "... not before: look again when it is due",
        sample(capacity=128, in_flight=0, arrival_rate=0.0),
        NOW - 1.0,
        LIMITS,
        ConcurrencyDecision(128, recheck_at=NOW - 1.0 + SHRINK_AFTER),
    ),
    (
        "... nor below the load that remains (40/s x 50 ms on 2 workers)",
        sample(capacity=4, in_flight=0, arrival_rate=40.0),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(2, SHRINK, recheck_at=NOW + SHRINK_AFTER),
    ),
    (
        "... nor below the requests in flight now",
        sample(capacity=128, in_flight=180, arrival_rate=0.0),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(128),
    ),
    (
        "a load within a quarter of the capacity keeps it (hysteresis)",
        sample(capacity=100, in_flight=130, arrival_rate=0.0),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(100),
    ),
    (
        "an app that turned CPU-bound (its base is stale) goes down to 1 at once",
        sample(SLEEPER, capacity=128, in_flight=16, cpu_per_request=0.010),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(1, CPU_BOUND, recheck_at=NOW + CAP_SHRINK_AFTER),
    ),
    (
        "... or to the CPU cap when it still waits",
        sample(Base(0.020, 0.002), capacity=128, in_flight=16),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(8, CPU_BOUND, recheck_at=NOW + CAP_SHRINK_AFTER),
    ),
    (
        "one connection per worker is the floor",
        sample(BURNER, capacity=1, in_flight=0),
        LONG_AGO,
        LIMITS,
        ConcurrencyDecision(1),
    ),
]


@pytest.mark.parametrize(
    ("sample_", "changed_at", "limits", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide_capacity(
    sample_: ConcurrencySample,
    changed_at: float,
    limits: ScalingLimits,
    expected: ConcurrencyDecision,
) -> None:
    assert decide_capacity(sample_, limits, changed_at, NOW) == expected


def test_a_burst_of_the_sleeping_app_grows_then_backs_down_step_by_step() -> None:
    """A fake clock through a burst and its end: one growth, then halvings SHRINK_AFTER apart."""
    capacity, changed_at, now = 1, 0.0, 100.0
    decision = decide_capacity(
        sample(capacity=capacity, in_flight=2, waiting=198), LIMITS, changed_at, now
    )
    assert (decision.capacity, decision.reason) == (125, GROW)
    capacity, changed_at = decision.capacity, now
    trace = []
    for _ in range(40):
        now += 1.0
        decision = decide_capacity(
            sample(capacity=capacity, in_flight=0, arrival_rate=0.0), LIMITS, changed_at, now
        )
        if decision.capacity != capacity:
            trace.append((now - 100.0, decision.capacity))
            capacity, changed_at = decision.capacity, now
    assert trace == [(5.0, 62), (10.0, 31), (15.0, 15), (20.0, 7), (25.0, 3), (30.0, 1)]


def test_the_cpu_cap_reads_the_cpu_per_request_of_the_moment() -> None:
    # The base was measured at the start of the burst, when each request cost 0.5 ms of CPU
    # (new threads, cold caches); steady, it costs 0.1 ms (within STALE_MIN: the base stands).
    # CPU time counts no wait for the GIL, so the figure of the moment sizes the threads.
    early = Base(service=0.050, cpu=0.0005)
    busy = sample(early, capacity=73, in_flight=146, waiting=54, cpu_per_request=0.0001)
    assert cpu_cap(busy) == 128  # 0.8 x 50 ms / 0.1 ms = 400: the ceiling
    assert decide_capacity(busy, LIMITS, LONG_AGO, NOW).capacity == 125
    # The end of the burst: a few requests carry the idle threads' CPU; the cap stays the base's.
    winding_down = sample(early, capacity=125, in_flight=2, cpu_per_request=0.0012)
    assert cpu_cap(winding_down) == 80


def test_the_rules_read_the_base_not_the_inflated_service_time() -> None:
    # 8 requests in flight in a worker of a CPU-bound app: 40 ms held, 5 ms of CPU each. The
    # base (one at a time) says CPU-bound: no growth, whatever the ratio of the moment.
    inflated = sample(BURNER, capacity=8, in_flight=16, service_time=0.040, cpu_per_request=0.005)
    assert not waits(inflated, LIMITS)
    assert cpu_cap(inflated) == 1
    assert decide_capacity(inflated, LIMITS, LONG_AGO, NOW).capacity == 1


BASE_CASES = [
    # (id, base, fields, expected)
    (
        "a clean sample becomes the base",
        None,
        {"service": 0.05, "cpu": 0.0002, "in_flight": 2, "workers": 2, "previous": 0.049},
        Base(0.05, 0.0002),
    ),
    (
        "not with more than one request per worker in flight (the GIL's queue)",
        SLEEPER,
        {"service": 0.09, "cpu": 0.0002, "in_flight": 200, "workers": 2, "previous": 0.09},
        SLEEPER,
    ),
    (
        "not while the service time moves (the smoothed value lags)",
        SLEEPER,
        {"service": 0.02, "cpu": 0.0002, "in_flight": 1, "workers": 2, "previous": 0.04},
        SLEEPER,
    ),
    (
        "not from a sample in which no request completed (its service time is an old one)",
        SLEEPER,
        {
            "service": 0.01,
            "cpu": 0.0002,
            "in_flight": 0,
            "workers": 2,
            "previous": 0.01,
            "completed": 0,
        },
        SLEEPER,
    ),
    (
        "not right after a change of capacity",
        SLEEPER,
        {
            "service": 0.03,
            "cpu": 0.0002,
            "in_flight": 1,
            "workers": 2,
            "previous": 0.03,
            "settled": False,
        },
        SLEEPER,
    ),
    (
        "a base whose CPU per request moved 3-fold is forgotten",
        SLEEPER,
        {"service": 0.09, "cpu": 0.010, "in_flight": 16, "workers": 2, "previous": 0.09},
        None,
    ),
    (
        "... but not for a tick's noise on cheap requests",
        SLEEPER,
        {"service": 0.09, "cpu": 0.0009, "in_flight": 16, "workers": 2, "previous": 0.09},
        SLEEPER,
    ),
]


@pytest.mark.parametrize(
    ("base", "fields", "expected"),
    [case[1:] for case in BASE_CASES],
    ids=[case[0] for case in BASE_CASES],
)
def test_next_base(base: Base | None, fields: dict[str, object], expected: Base | None) -> None:
    arguments: dict[str, object] = {"settled": True, "completed": 4, **fields}
    assert next_base(base, **arguments) == expected  # type: ignore[arg-type]


@given(
    capacity=st.integers(1, 64),
    ceiling=st.integers(64, 1000),
    workers=st.integers(0, 8),
    in_flight=st.integers(0, 2000),
    waiting=st.integers(0, 2000),
    rate=st.floats(0, 1e5),
    service=st.none() | st.floats(1e-5, 10),
    cpu=st.none() | st.floats(0, 1),
    base=st.none() | st.builds(Base, st.floats(1e-5, 10), st.floats(0, 1)),
    worker_cpu=st.none() | st.floats(0, 2),
    idle=st.none() | st.floats(0, 1),
    free=st.none() | st.integers(0, 1 << 34),
    since=st.floats(0, 100),
)
@example(  # (a base of next to no CPU: the quotient of rule 3 was infinite)
    capacity=1,
    ceiling=64,
    workers=0,
    in_flight=0,
    waiting=0,
    rate=0.0,
    service=None,
    cpu=0.0,
    base=Base(1.0, 5e-324),
    worker_cpu=None,
    idle=None,
    free=None,
    since=0.0,
)
def test_the_capacity_stays_within_one_and_the_ceiling(
    capacity: int,
    ceiling: int,
    workers: int,
    in_flight: int,
    waiting: int,
    rate: float,
    service: float | None,
    cpu: float | None,
    base: Base | None,
    worker_cpu: float | None,
    idle: float | None,
    free: int | None,
    since: float,
) -> None:
    observed = ConcurrencySample(
        capacity=capacity,
        ceiling=ceiling,
        workers=workers,
        in_flight=in_flight,
        waiting=waiting,
        arrival_rate=rate,
        service_time=service,
        cpu_per_request=cpu,
        base=base,
        worker_cpu=worker_cpu,
        cpu_idle=idle,
        free_memory=free,
    )
    decision = decide_capacity(observed, RESERVE, NOW - since, NOW)
    assert 1 <= decision.capacity <= ceiling
    if decision.capacity > capacity:
        assert decision.reason == GROW
        assert waits(observed, RESERVE)
        assert decision.capacity <= cpu_cap(observed)
    elif decision.capacity < capacity:
        assert decision.reason in (SHRINK, CPU_BOUND)
        assert decision.capacity >= capacity // 2 or decision.reason == CPU_BOUND


def test_threads_first_then_workers_within_max_instances() -> None:
    """With the capacity this policy chose, ``scaling.decide`` sizes the workers: a load the
    threads carry asks for no more workers, a larger one for more, never past max_instances."""
    chosen = decide_capacity(sample(in_flight=2, waiting=198), LIMITS, LONG_AGO, NOW).capacity
    assert chosen == 125
    limits = ScalingLimits(max_instances=2, cpu_count=2, capacity=chosen)
    two = (WorkerLoad(1, 100, None), WorkerLoad(2, 100, None))
    assert (
        decide(LoadSample(workers=two, arrival_rate=4000.0, service_time=0.05), limits, NOW).start
        == 0
    )
    one = (WorkerLoad(1, 125, None),)
    assert decide(LoadSample(waiting=75, workers=one), limits, NOW).start == 1
    full = (WorkerLoad(1, 125, None), WorkerLoad(2, 125, None))
    assert decide(LoadSample(waiting=500, workers=full), limits, NOW).start == 0
