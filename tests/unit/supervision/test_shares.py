"""How the fronts share an application's worker slots (``supervision.shares``), by tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.ops.fronts import AUTO_MAX, front_count
from corral.supervision.shares import NO_LIMIT, FrontNeed, fair_shares, limits

SHARES = [
    # (id, total, needs, shares)
    ("nothing to share", 0, {1: 3, 2: 3}, {1: 0, 2: 0}),
    ("even split", 4, {1: 5, 2: 5}, {1: 2, 2: 2}),
    ("odd remainder to the greatest need", 5, {1: 4, 2: 9}, {1: 2, 2: 3}),
    ("a small need is met, the rest to the other", 4, {1: 1, 2: 10}, {1: 1, 2: 3}),
    ("more than needed: each its need", 10, {1: 2, 2: 3}, {1: 2, 2: 3}),
    ("a front without need gets none", 4, {1: 0, 2: 6}, {1: 0, 2: 4}),
    ("three fronts", 6, {1: 1, 2: 5, 3: 5}, {1: 1, 2: 2, 3: 3}),
]


@pytest.mark.parametrize(("total", "needs", "expected"), [c[1:] for c in SHARES],
                         ids=[c[0] for c in SHARES])  # fmt: skip
def test_fair_shares(total: int, needs: dict[int, int], expected: dict[int, int]) -> None:
    assert fair_shares(total, needs) == expected


@given(
    st.integers(0, 64),
    st.dictionaries(st.integers(1, 8), st.integers(0, 40), min_size=1, max_size=8),
)
def test_fair_shares_never_exceed_a_need_and_share_out_what_is_needed(
    total: int, needs: dict[int, int]
) -> None:
    shares = fair_shares(total, needs)
    assert all(0 <= shares[f] <= needs[f] for f in needs)
    assert sum(shares.values()) == min(total, sum(needs.values()))


LIMITS = [
    # (id, fronts, limits)
    ("nobody waits: no limit", {1: FrontNeed(4, 0), 2: FrontNeed(0, 0)},
     {1: NO_LIMIT, 2: NO_LIMIT}),
    ("one holds all, the other waits: half each", {1: FrontNeed(4, 3), 2: FrontNeed(0, 2)},
     {1: 2, 2: NO_LIMIT}),
    ("a busy holder shares with the waiting one", {1: FrontNeed(2, 0), 2: FrontNeed(0, 5)},
     {1: 1, 2: NO_LIMIT}),
    ("already fair: no limit", {1: FrontNeed(2, 4), 2: FrontNeed(2, 4)},
     {1: NO_LIMIT, 2: NO_LIMIT}),
    ("the waiting one's need is met first", {1: FrontNeed(1, 1), 2: FrontNeed(3, 0)},
     {1: NO_LIMIT, 2: 2}),
]  # fmt: skip


@pytest.mark.parametrize(("fronts", "expected"), [c[1:] for c in LIMITS],
                         ids=[c[0] for c in LIMITS])  # fmt: skip
def test_limits(fronts: dict[int, FrontNeed], expected: dict[int, int]) -> None:
    assert limits(fronts) == expected


FRONT_COUNTS = [
    # (setting, cpus, fronts)
    (0, None, 1),
    (0, 1, 1),
    (0, 2, 1),
    (0, 7, 1),
    (0, 8, 2),
    (0, 16, 4),
    (0, 32, AUTO_MAX),
    (0, 128, AUTO_MAX),
    (3, 2, 3),
    (1, 64, 1),
]


@pytest.mark.parametrize(("setting", "cpus", "expected"), FRONT_COUNTS)
def test_front_count(setting: int, cpus: int | None, expected: int) -> None:
    assert front_count(setting, cpus) == expected
