"""The worker lifecycle table: every legal move accepted, every other one rejected."""

from __future__ import annotations

import itertools

import pytest

from corral.supervision.lifecycle import (
    READY_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    WorkerState,
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


def test_terminal_states_lead_nowhere_and_ready_means_idle_or_busy() -> None:
    assert all(not TRANSITIONS[state] for state in TERMINAL_STATES)
    assert {s for s in WorkerState if s.is_terminal} == {S.EXITED, S.FAILED_TO_START}
    assert {s for s in WorkerState if s.is_ready} == set(READY_STATES) == {S.IDLE, S.BUSY}
