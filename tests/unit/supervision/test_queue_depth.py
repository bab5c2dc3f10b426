"""``scaling.queue_depth``: how many requests one busy worker connection may carry when every
worker is busy (pipelining). A pure function of the smoothed service time and the setting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.supervision.scaling import QUEUE_AHEAD_LIMIT, queue_depth

LIMIT = 16


@pytest.mark.parametrize(
    ("service_time", "limit", "expected"),
    [
        (None, LIMIT, 1),  # unknown service time: nothing queues
        (None, 1, 1),
        (0.00006, 1, 1),  # pipeline_depth 1: off, however fast the app
        (0.00006, 0, 1),
        (0.0, 1, 1),
        (0.00006, LIMIT, LIMIT),  # 60 µs: 83 would fit in 5 ms; the setting bounds it
        (0.00006, 3, 3),
        (0.001, LIMIT, 6),  # 1 ms: five ahead of the last fill 5 ms
        (0.001, 4, 4),
        (0.0025, LIMIT, 3),
        (0.005, LIMIT, 2),  # 5 ms: one ahead
        (0.0051, LIMIT, 1),
        (0.010, LIMIT, 1),  # 10 ms: one ahead would be too long
        (1.5, LIMIT, 1),
        (0.0, LIMIT, LIMIT),  # no measurable work: as deep as allowed
        (0.0, 2, 2),
        (-0.001, LIMIT, LIMIT),  # (a clock oddity) counts as no work
    ],
)
def test_queue_depth_table(service_time: float | None, limit: int, expected: int) -> None:
    assert queue_depth(service_time, limit) == expected


# Subnormal floats are left out: QUEUE_AHEAD_LIMIT / 1e-310 overflows to inf, and int(inf)
# raises (a smoothed service time made of monotonic-clock differences never gets there).
service_times = st.floats(0.0, 10.0, allow_nan=False, allow_subnormal=False)
limits = st.integers(1, 16)


@given(service_times, service_times, limits)
def test_queue_depth_never_grows_with_the_service_time(a: float, b: float, limit: int) -> None:
    faster, slower = sorted((a, b))
    deep = queue_depth(faster, limit)
    shallow = queue_depth(slower, limit)
    assert 1 <= shallow <= deep <= limit
    # An unknown service time counts as the slowest.
    assert queue_depth(None, limit) == 1 <= shallow


@given(service_times, limits, limits)
def test_queue_depth_never_shrinks_with_the_limit(service: float, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert queue_depth(service, low) <= queue_depth(service, high) <= high


@given(st.floats(1e-7, 10.0, allow_nan=False), limits)
def test_queue_depth_keeps_the_work_ahead_of_the_last_within_the_limit(
    service: float, limit: int
) -> None:
    depth = queue_depth(service, limit)
    # The requests ahead of the last one queued hold at most QUEUE_AHEAD_LIMIT of work...
    assert (depth - 1) * service <= QUEUE_AHEAD_LIMIT * (1 + 1e-9)
    # ... and one more would pass it, unless the setting stopped it first.
    if depth < limit:
        assert depth * service >= QUEUE_AHEAD_LIMIT * (1 - 1e-9)
