"""The worker lifecycle table: every legal move accepted, every other one rejected."""

from __future__ import annotations

import itertools

import pytest

from corral.supervision.lifecycle import (
    EXPECTED_EXIT_STATES,
    POOL_TRANSITIONS,
    READY_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    PoolState,
    WorkerState,
    check_pool_transition,
    check_transition,
)

S = WorkerState

LEGAL = {
    (S.STARTING, S.IDLE),
    (S.STARTING, S.FAILED_TO_START),
    (S.STARTING, S.STOPPING),
    (S.IDLE, S.BUSY),
    (S.BUSY, S.IDLE),
    (S.IDLE, S.STOPPING),
    (S.BUSY, S.STOPPING),
    (S.IDLE, S.EXITED),
    (S.BUSY, S.EXITED),
    (S.STOPPING, S.EXITED),
    # A health probe of an idle worker: answered, leased meanwhile, or the worker leaves.
    (S.IDLE, S.PROBING),
    (S.PROBING, S.IDLE),
    (S.PROBING, S.BUSY),
    (S.PROBING, S.STOPPING),
    (S.PROBING, S.EXITED),
    # Retired with requests in flight (DRAINING; HUNG: a request hung in it), then stopped.
    *((ready, sub) for ready in (S.IDLE, S.PROBING, S.BUSY) for sub in (S.DRAINING, S.HUNG)),
    (S.DRAINING, S.HUNG),
    (S.DRAINING, S.STOPPING),
    (S.HUNG, S.STOPPING),
    (S.DRAINING, S.EXITED),
    (S.HUNG, S.EXITED),
    # Seen dead before its exit was reaped.
    *((ready, S.LOST) for ready in (S.IDLE, S.PROBING, S.BUSY)),
    (S.LOST, S.EXITED),
}


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(WorkerState)


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL, key=str))
def test_legal_transitions(current: WorkerState, target: WorkerState) -> None:
    assert check_transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    sorted(set(itertools.product(WorkerState, repeat=2)) - LEGAL, key=str),
)
def test_illegal_transitions_raise(current: WorkerState, target: WorkerState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target)
    assert info.value.current is current and info.value.target is target
    assert current.name in str(info.value) and target.name in str(info.value)


def test_terminal_states_lead_nowhere_and_ready_means_idle_probing_or_busy() -> None:
    assert all(not TRANSITIONS[state] for state in TERMINAL_STATES)
    assert {s for s in WorkerState if s.is_terminal} == {S.EXITED, S.FAILED_TO_START}
    ready = {S.IDLE, S.PROBING, S.BUSY}
    assert {s for s in WorkerState if s.is_ready} == set(READY_STATES) == ready
    assert {s for s in WorkerState if s.is_idle} == {S.IDLE, S.PROBING}
    assert {s for s in WorkerState if s.is_draining} == {S.DRAINING, S.HUNG}


def test_a_lost_worker_cannot_be_leased_again_nor_drained() -> None:
    """Once seen dead, only its exit remains; and its exit is not one the host asked for."""
    assert TRANSITIONS[S.LOST] == {S.EXITED}
    assert S.LOST not in EXPECTED_EXIT_STATES
    assert {S.STOPPING, S.DRAINING, S.HUNG} == EXPECTED_EXIT_STATES
    with pytest.raises(IllegalTransition):
        check_transition(S.DRAINING, S.BUSY)  # retired: out of rotation for good


P = PoolState
POOL_LEGAL = {
    (P.DORMANT, P.RUNNING),
    (P.RUNNING, P.STOPPING),
    (P.STOPPING, P.DORMANT),
    (P.STOPPING, P.RUNNING),
    (P.BACKOFF, P.RUNNING),
    (P.FAILED, P.RUNNING),
    (P.BACKOFF, P.DORMANT),
    (P.FAILED, P.DORMANT),
    (P.BACKOFF, P.FAILED),
    (P.FAILED, P.BACKOFF),
    *((src, dst) for src in (P.DORMANT, P.RUNNING, P.STOPPING) for dst in (P.BACKOFF, P.FAILED)),
    *((src, P.CLOSING) for src in PoolState if src is not P.CLOSING),
}


def test_the_pool_table_covers_every_state_and_closing_is_final() -> None:
    assert set(POOL_TRANSITIONS) == set(PoolState)
    assert not POOL_TRANSITIONS[P.CLOSING]


@pytest.mark.parametrize(
    ("current", "target"), sorted(set(itertools.product(PoolState, repeat=2)), key=str)
)
def test_pool_transitions_follow_the_table(current: PoolState, target: PoolState) -> None:
    if (current, target) in POOL_LEGAL:
        assert check_pool_transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            check_pool_transition(current, target)
