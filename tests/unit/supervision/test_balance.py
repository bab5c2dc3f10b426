"""The balancing policy of a service with several servers, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.supervision.balance import (
    MIN_WEIGHT,
    Balancer,
    BalanceSettings,
    ServerState,
)


def states(balancer: Balancer, now: float) -> list[ServerState]:
    return [view.state for view in balancer.view(now)]


def test_idle_servers_share_requests_round_robin() -> None:
    balancer = Balancer(3)
    picked = []
    for _ in range(6):
        index = balancer.pick(0.0)
        assert index is not None
        picked.append(index)
        balancer.done(index)
    assert picked == [0, 1, 2, 0, 1, 2]


def test_the_server_with_fewest_outstanding_requests_is_chosen() -> None:
    balancer = Balancer(3)
    assert [balancer.pick(0.0) for _ in range(3)] == [0, 1, 2]
    balancer.done(1)
    assert balancer.pick(0.0) == 1
    balancer.done(2)
    balancer.done(0)
    # 0 and 2 now have none, 1 has one: the next two go to 0 and 2, not 1.
    assert sorted([balancer.pick(0.0), balancer.pick(0.0)]) == [0, 2]  # type: ignore[type-var]


def test_a_refused_connection_takes_a_server_down_at_once() -> None:
    balancer = Balancer(2)
    balancer.failed(0, 1.0, "refused", definite=True)
    assert states(balancer, 1.0) == [ServerState.DOWN, ServerState.UP]
    assert {balancer.pick(1.5) for _ in range(5)} == {1}


def test_other_failures_take_it_down_after_fall_in_a_row() -> None:
    balancer = Balancer(2, BalanceSettings(fall=2))
    balancer.failed(0, 1.0, "reset")
    assert balancer.is_up(0)
    balancer.succeeded(0, 1.1)  # a success clears the count
    balancer.failed(0, 1.2, "reset")
    assert balancer.is_up(0)
    balancer.failed(0, 1.3, "503")
    assert not balancer.is_up(0)
    assert balancer.view(1.3)[0].failures == 3
    assert balancer.view(1.3)[0].last_error == "503"


def test_a_down_server_is_tried_again_after_retry_after_one_request_at_a_time() -> None:
    balancer = Balancer(2, BalanceSettings(retry_after=5.0))
    balancer.failed(0, 10.0, "refused", definite=True)
    balancer.failed(1, 10.0, "refused", definite=True)
    assert balancer.pick(14.9) is None
    assert balancer.pick(15.0) == 0  # the trial (of the one down longest)
    assert balancer.pick(15.0) == 1  # (and of the other)
    assert balancer.pick(15.0) is None  # only one trial at a time each
    balancer.failed(0, 15.1, "refused", definite=True)
    balancer.done(0)
    assert balancer.pick(19.0) is None  # down for another retry_after
    assert balancer.pick(20.1) == 0
    balancer.succeeded(0, 20.2)
    balancer.done(0)
    assert balancer.is_up(0)
    assert not balancer.is_up(1)  # its trial has not ended


def test_a_trial_that_ends_without_an_outcome_allows_another_later() -> None:
    balancer = Balancer(2, BalanceSettings(retry_after=1.0))
    balancer.failed(0, 0.0, "refused", definite=True)
    balancer.failed(1, 0.0, "refused", definite=True)
    assert balancer.pick(1.0, exclude=frozenset({1})) == 0
    balancer.done(0)  # (the client left)
    assert balancer.pick(1.5, exclude=frozenset({1})) is None
    assert balancer.pick(2.0, exclude=frozenset({1})) == 0


def test_a_lone_server_always_gets_the_request_unless_it_was_just_tried() -> None:
    balancer = Balancer(1, BalanceSettings(retry_after=60.0))
    balancer.failed(0, 0.0, "refused", definite=True)
    assert balancer.view(0.0)[0].state is ServerState.DOWN
    assert balancer.pick(0.1) == 0
    assert balancer.pick(0.1, exclude=frozenset({0})) is None


def test_a_trial_goes_only_where_no_server_is_up() -> None:
    balancer = Balancer(2, BalanceSettings(retry_after=1.0))
    balancer.failed(0, 0.0, "refused", definite=True)
    assert {balancer.pick(10.0) for _ in range(4)} == {1}


def test_active_checks_take_a_server_down_and_bring_it_back_after_rise() -> None:
    balancer = Balancer(2, BalanceSettings(rise=2, slow_start=0))
    balancer.checked(0, True, 0.0)
    balancer.checked(0, False, 1.0, "GET /readyz answered 503")
    assert not balancer.is_up(0)
    assert balancer.view(1.0)[0].last_error == "GET /readyz answered 503"
    balancer.checked(0, True, 2.0)
    assert not balancer.is_up(0)
    balancer.checked(0, False, 3.0)
    balancer.checked(0, True, 4.0)
    assert not balancer.is_up(0)
    balancer.checked(0, True, 5.0)
    assert states(balancer, 5.0) == [ServerState.UP, ServerState.UP]


def test_a_returning_server_ramps_up_over_slow_start() -> None:
    balancer = Balancer(2, BalanceSettings(slow_start=10.0))
    balancer.failed(0, 0.0, "refused", definite=True)
    balancer.checked(0, True, 100.0)
    assert states(balancer, 100.0) == [ServerState.SLOW_START, ServerState.UP]
    assert balancer.view(100.0)[0].weight == MIN_WEIGHT
    assert balancer.view(105.0)[0].weight == 0.5
    assert states(balancer, 110.0) == [ServerState.UP, ServerState.UP]
    # Half-way, with 3 requests on the full server, the returning one (weight 0.5) gets the
    # next while it has fewer than 1.5 outstanding: (n + 1) / 0.5 < 3 + 1.
    for _ in range(3):
        balancer.pick(105.0, exclude=frozenset({0}))
    assert balancer.pick(105.0) == 0
    assert balancer.pick(105.0) == 1  # (1 + 1) / 0.5 == 4: a tie, round-robin goes on to 1


def test_at_the_start_of_slow_start_a_returning_server_gets_a_tenth_of_the_load() -> None:
    balancer = Balancer(2, BalanceSettings(slow_start=60.0))
    balancer.failed(0, 0.0, "refused", definite=True)
    balancer.checked(0, True, 1.0)
    picked = [balancer.pick(1.0) for _ in range(22)]
    assert picked.count(0) == 2  # in flight 0 -> 1 -> 2 vs 0..20 on the other


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="fall"):
        BalanceSettings(fall=0)
    with pytest.raises(ValueError, match="slow_start"):
        BalanceSettings(slow_start=-1)
    with pytest.raises(ValueError, match="at least one"):
        Balancer(0)


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["pick", "done", "ok", "fail", "refused", "check-ok", "check-fail"]),
        st.integers(min_value=0, max_value=3),
        st.floats(min_value=0, max_value=3),
    ),
    max_size=60,
)


@given(_EVENTS)
def test_any_sequence_keeps_counts_sane_and_picks_only_usable_servers(
    events: list[tuple[str, int, float]],
) -> None:
    balancer = Balancer(4, BalanceSettings(retry_after=2.0, slow_start=1.0))
    now = 0.0
    given_out: list[int] = []
    for what, index, step in events:
        now += step
        if what == "pick":
            up_before = [balancer.is_up(i) for i in range(4)]
            picked = balancer.pick(now)
            if picked is not None:
                # A down server is chosen only when none is up (a trial).
                assert up_before[picked] or not any(up_before)
                given_out.append(picked)
        elif what == "done" and given_out:
            balancer.done(given_out.pop(index % len(given_out)))
        elif what == "ok":
            balancer.succeeded(index, now)
        elif what in ("fail", "refused"):
            balancer.failed(index, now, what, definite=what == "refused")
        elif what == "check-ok":
            balancer.checked(index, True, now)
        elif what == "check-fail":
            balancer.checked(index, False, now)
        views = balancer.view(now)
        for i, view in enumerate(views):
            assert view.in_flight == given_out.count(i)
            assert 0.0 <= view.weight <= 1.0
            assert (view.state is ServerState.DOWN) == (not balancer.is_up(i))
            assert (view.weight == 0.0) == (view.state is ServerState.DOWN)
