"""The life of one backend worker process, as data.

House rules (after h11's ``_state.py``):

1. Every state a worker can be in, and every move between states, is declared here, in
   ``TRANSITIONS``. The pool never assigns a state without going through ``check_transition``.
2. This module is pure: no time, no I/O, no asyncio. It is imported by the pool (mechanism) and
   by the status page (presentation), and drawn in ``docs/architecture.md``.

::

    STARTING --ready--> IDLE <--lease/release--> BUSY
       |                  |                        |
       |                  +------> STOPPING <------+
       |                  |           |            |
       +--> FAILED_TO_START          EXITED <------+  (unexpected exit from IDLE or BUSY)
       +--> STOPPING (the pool closes while the worker starts)

``IDLE`` and ``BUSY`` together are "ready": the worker answered the readiness probe. ``BUSY``
means at least one request is in flight on it, ``IDLE`` none.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from corral.errors import CorralError


class WorkerState(enum.Enum):
    """Where one worker process is in its life."""

    #: Spawned; waiting for its readiness probe (FCGI_GET_VALUES) to be answered.
    STARTING = "starting"
    #: Ready, no request in flight.
    IDLE = "idle"
    #: Ready, at least one request in flight.
    BUSY = "busy"
    #: Being stopped by the host (SIGTERM, then SIGKILL after the grace period).
    STOPPING = "stopping"
    #: The process has ended (terminal).
    EXITED = "exited"
    #: The process never became ready: it exited, timed out or refused the probe (terminal).
    FAILED_TO_START = "failed_to_start"

    # Members are singletons compared by identity; hash them the same way, in C (Enum's own
    # __hash__ is Python code, and the table is consulted twice per request).
    __hash__ = object.__hash__

    @property
    def is_ready(self) -> bool:
        """True when the worker can take requests (IDLE or BUSY)."""
        return self is _IDLE or self is _BUSY  # (module globals: faster than class lookups)

    @property
    def is_terminal(self) -> bool:
        """True when the process is gone for good."""
        return self in TERMINAL_STATES


_IDLE: Final = WorkerState.IDLE
_BUSY: Final = WorkerState.BUSY
READY_STATES: Final = frozenset({WorkerState.IDLE, WorkerState.BUSY})
TERMINAL_STATES: Final = frozenset({WorkerState.EXITED, WorkerState.FAILED_TO_START})

#: state -> the states it may move to. Anything else is a bug in the pool.
TRANSITIONS: Final[Mapping[WorkerState, frozenset[WorkerState]]] = {
    WorkerState.STARTING: frozenset(
        {WorkerState.IDLE, WorkerState.FAILED_TO_START, WorkerState.STOPPING}
    ),
    WorkerState.IDLE: frozenset({WorkerState.BUSY, WorkerState.STOPPING, WorkerState.EXITED}),
    WorkerState.BUSY: frozenset({WorkerState.IDLE, WorkerState.STOPPING, WorkerState.EXITED}),
    WorkerState.STOPPING: frozenset({WorkerState.EXITED}),
    WorkerState.EXITED: frozenset(),
    WorkerState.FAILED_TO_START: frozenset(),
}


class IllegalTransition(CorralError):
    """A worker was asked to move between two states that the table does not connect."""

    def __init__(self, current: WorkerState, target: WorkerState) -> None:
        super().__init__(f"illegal worker state transition {current.name} -> {target.name}")
        self.current = current
        self.target = target


def check_transition(current: WorkerState, target: WorkerState) -> WorkerState:
    """Return ``target`` if ``current -> target`` is in ``TRANSITIONS``, else raise.

    Raises:
        IllegalTransition: the move is not allowed.
    """
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target
