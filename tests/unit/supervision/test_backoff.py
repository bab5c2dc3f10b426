"""The start backoff policy (pure)."""

from __future__ import annotations

import pytest

from corral.supervision.backoff import StartBackoff


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (100, 60.0), (10**6, 60.0)],
)
def test_delay_doubles_up_to_the_maximum(failures: int, delay: float) -> None:
    policy = StartBackoff(initial=1.0, factor=2.0, maximum=60.0, give_up_after=10**9)
    assert policy.delay(failures) == delay


def test_after_give_up_after_failures_the_delay_is_the_ceiling() -> None:
    policy = StartBackoff(initial=1.0, factor=2.0, maximum=60.0, give_up_after=3)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 60.0, 60.0, 60.0]
    assert [policy.gave_up(n) for n in range(1, 5)] == [False, False, True, True]


def test_next_start_at_is_relative_to_the_last_failure() -> None:
    policy = StartBackoff(initial=0.5, factor=3.0, maximum=10.0)
    assert policy.next_start_at(2, 100.0) == 101.5
    assert policy.next_start_at(0, 100.0) == 100.0


@pytest.mark.parametrize(
    "kwargs", [{"initial": -1.0}, {"maximum": -1.0}, {"factor": 0.5}, {"give_up_after": 0}]
)
def test_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StartBackoff(**kwargs)  # type: ignore[arg-type]
