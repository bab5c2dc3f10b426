"""The life of one backend worker process, and of one pool, as data.

House rules (after h11's ``_state.py``):

1. Every state a worker can be in, and every move between states, is declared here, in
   ``TRANSITIONS``. The worker set never assigns a state without going through
   ``check_transition``; a worker's state is one value, with no flags beside it.
2. The same holds for the pool's own state (``PoolState``, ``POOL_TRANSITIONS``).
3. This module is pure: no time, no I/O, no asyncio. It is imported by the pool (mechanism) and
   by the status page (presentation), and drawn in ``docs/architecture.md``.

::

    STARTING --ready--> IDLE <--lease/release--> BUSY
       |               |   ^                      |
       |        probe  v   | answered             |
       |             PROBING ---lease---> BUSY    |
       |                                          |
       |      (IDLE, PROBING, BUSY) --retire, requests in flight--> DRAINING --hang--> HUNG
       |                                   DRAINING / HUNG --drained or grace over--> STOPPING
       |      (IDLE, PROBING, BUSY) --stop, kill--> STOPPING --exit--> EXITED
       |      (IDLE, PROBING, BUSY) --seen dead, not reaped yet--> LOST --exit--> EXITED
       |      (IDLE, PROBING, BUSY, DRAINING, HUNG) --unexpected exit--> EXITED
       +--> FAILED_TO_START
       +--> STOPPING (the pool closes, or restarts, while the worker starts)

``IDLE``, ``PROBING`` and ``BUSY`` together are "ready": the worker answered the readiness
probe and takes requests. ``BUSY`` means at least one request is in flight on it; ``IDLE`` and
``PROBING`` none (``PROBING``: a health round is checking that it still answers).
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
    #: Ready, no request in flight, and a health probe is asking whether it still answers.
    PROBING = "probing"
    #: Ready, at least one request in flight.
    BUSY = "busy"
    #: Retired (rolling restart, a limit) while requests were in flight: out of rotation; it
    #: gets SIGTERM once they are done (or at ``graceful_shutdown_timeout``).
    DRAINING = "draining"
    #: Retired because a request hung in it (the request timeout): out of rotation; it is
    #: killed (SIGKILL: SIGTERM would wait for the hung request) once its requests are done.
    HUNG = "hung"
    #: Being stopped by the host (SIGTERM, then SIGKILL after the grace period).
    STOPPING = "stopping"
    #: Seen dead (its connection closed by it, the process a zombie) before its exit was
    #: reaped: out of rotation; its exit is unexpected.
    LOST = "lost"
    #: The process has ended (terminal).
    EXITED = "exited"
    #: The process never became ready: it exited, timed out or refused the probe (terminal).
    FAILED_TO_START = "failed_to_start"

    # Members are singletons compared by identity; hash them the same way, in C (Enum's own
    # __hash__ is Python code, and the table is consulted twice per request).
    __hash__ = object.__hash__

    @property
    def is_ready(self) -> bool:
        """True when the worker can take requests (IDLE, PROBING or BUSY)."""
        return self is _IDLE or self is _BUSY or self is _PROBING  # (globals: faster)

    @property
    def is_idle(self) -> bool:
        """True when the worker is ready with nothing in flight (IDLE or PROBING)."""
        return self is _IDLE or self is _PROBING

    @property
    def is_draining(self) -> bool:
        """True when the worker is retired and finishing its requests (DRAINING or HUNG)."""
        return self is _DRAINING or self is _HUNG

    @property
    def is_terminal(self) -> bool:
        """True when the process is gone for good."""
        return self in TERMINAL_STATES


_IDLE: Final = WorkerState.IDLE
_BUSY: Final = WorkerState.BUSY
_PROBING: Final = WorkerState.PROBING
_DRAINING: Final = WorkerState.DRAINING
_HUNG: Final = WorkerState.HUNG
READY_STATES: Final = frozenset({WorkerState.IDLE, WorkerState.PROBING, WorkerState.BUSY})
TERMINAL_STATES: Final = frozenset({WorkerState.EXITED, WorkerState.FAILED_TO_START})

_S = WorkerState
#: Where a ready worker may go besides IDLE/PROBING/BUSY.
_OUT_OF_READY = frozenset({_S.DRAINING, _S.HUNG, _S.STOPPING, _S.LOST, _S.EXITED})

#: state -> the states it may move to. Anything else is a bug in the pool.
TRANSITIONS: Final[Mapping[WorkerState, frozenset[WorkerState]]] = {
    _S.STARTING: frozenset({_S.IDLE, _S.FAILED_TO_START, _S.STOPPING}),
    _S.IDLE: frozenset({_S.BUSY, _S.PROBING}) | _OUT_OF_READY,
    _S.PROBING: frozenset({_S.IDLE, _S.BUSY}) | _OUT_OF_READY,
    _S.BUSY: frozenset({_S.IDLE}) | _OUT_OF_READY,
    _S.DRAINING: frozenset({_S.HUNG, _S.STOPPING, _S.EXITED}),
    _S.HUNG: frozenset({_S.STOPPING, _S.EXITED}),
    _S.STOPPING: frozenset({_S.EXITED}),
    _S.LOST: frozenset({_S.EXITED}),
    _S.EXITED: frozenset(),
    _S.FAILED_TO_START: frozenset(),
}

#: The states whose exit is expected (the host asked for it): logged as "stopped".
EXPECTED_EXIT_STATES: Final = frozenset({_S.STOPPING, _S.DRAINING, _S.HUNG})


class IllegalTransition(CorralError):
    """A worker (or a pool) was asked to move between two states the table does not connect."""

    def __init__(self, current: WorkerState | PoolState, target: WorkerState | PoolState) -> None:
        super().__init__(f"illegal state transition {current.name} -> {target.name}")
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


# ------------------------------------------------------------------------------- the pool


class PoolState(enum.Enum):
    """Where one application's pool is (``snapshot().state``)."""

    #: Nothing started yet, or scaled to zero / stopped: the next request starts workers.
    DORMANT = "dormant"
    #: Serving: workers are kept between the floor and the ceiling.
    RUNNING = "running"
    #: ``stop_workers``: its workers finish their requests and stop; then DORMANT.
    STOPPING = "stopping"
    #: The app failed to start and nothing runs; the next start is due in ``retry_in`` s.
    BACKOFF = "backoff"
    #: Gave up after ``give_up_after`` failed starts: retried when its files change, or after
    #: the back-off ceiling.
    FAILED = "failed"
    #: ``close()``: refusing requests, stopping every worker (terminal).
    CLOSING = "closing"

    __hash__ = object.__hash__


_P = PoolState
#: Where a pool whose app cannot start goes (BACKOFF or FAILED), from wherever it started.
_CRASHED = frozenset({_P.BACKOFF, _P.FAILED, _P.CLOSING})

POOL_TRANSITIONS: Final[Mapping[PoolState, frozenset[PoolState]]] = {
    _P.DORMANT: frozenset({_P.RUNNING}) | _CRASHED,
    _P.RUNNING: frozenset({_P.STOPPING}) | _CRASHED,
    _P.STOPPING: frozenset({_P.DORMANT, _P.RUNNING}) | _CRASHED,
    # (A restart forgets the failures: DORMANT, or RUNNING when it starts new workers.)
    _P.BACKOFF: frozenset({_P.RUNNING, _P.DORMANT, _P.FAILED, _P.CLOSING}),
    _P.FAILED: frozenset({_P.RUNNING, _P.DORMANT, _P.BACKOFF, _P.CLOSING}),
    _P.CLOSING: frozenset(),
}


def check_pool_transition(current: PoolState, target: PoolState) -> PoolState:
    """Return ``target`` if a pool may move from ``current`` to it, else raise.

    Raises:
        IllegalTransition: the move is not allowed.
    """
    if target not in POOL_TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target
