"""Carrying out the scaling policy: ``Scaler`` asks the pure ``scaling.decide`` what to do with
the load the ``LoadMeter`` samples, starts workers (unless the crash-loop back-off says wait),
stops idle ones, fails the waiting requests when nothing may start for lack of memory, and keeps
one timer for the policy's next look. Under a stream of queued requests it asks at most every
``EVALUATE_EVERY`` s. For elastic workers it also runs the pool's ``adaptive.ConcurrencyTuner``
(connections per worker), whose changes of ``capacity`` it takes into its limits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from corral.supervision.adaptive import ConcurrencyTuner
from corral.supervision.crashloop import CrashLoopTracker
from corral.supervision.dispatch import Dispatcher
from corral.supervision.lease import PoolUnavailable
from corral.supervision.lifecycle import PoolState
from corral.supervision.load import LoadMeter
from corral.supervision.scaling import HELD_BY_MEMORY, ScalingLimits, decide
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import WorkerSet

_log = logging.getLogger("corral.supervision.pool")

#: Under a stream of queued requests, the policy is asked at most this often (seconds): its
#: decisions (start a worker) take far longer to carry out than this.
EVALUATE_EVERY = 0.002


class Scaler:
    """One pool's scaling loop: sample, decide, act, sleep until the next look."""

    def __init__(
        self,
        app: str,
        settings: PoolSettings,
        workers: WorkerSet,
        dispatcher: Dispatcher,
        load: LoadMeter,
        crash: CrashLoopTracker,
        *,
        clock: Callable[[], float],
        call_at: Callable[[float, Callable[[], None]], asyncio.Handle],
        pool_state: Callable[[], PoolState],
    ) -> None:
        """
        Args:
            clock, call_at: the loop's.
            pool_state: the pool's state: workers are started only while it runs, and nothing
                is done once it closes.
        """
        self.app = app
        self.settings = settings
        #: The policy's limits (the capacity follows what the workers advertise).
        self.limits: ScalingLimits = settings.limits()
        self._workers = workers
        self._dispatcher = dispatcher
        self._load = load
        self._crash = crash
        self._clock = clock
        self._call_at = call_at
        self._pool_state = pool_state
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._evaluated_at = -1e9
        #: Adaptive concurrency (elastic workers only): connections per worker.
        self.tuner = ConcurrencyTuner(
            app,
            dispatcher,
            workers.workers,
            load,
            limits=lambda: self.limits,
            clock=clock,
            changed=self._capacity_changed,
        )

    def _capacity_changed(self, capacity: int) -> None:
        """The tuner changed the connections per worker: the worker count follows."""
        self.limits = replace(self.limits, capacity=capacity)
        self.evaluate()

    def on_arrival(self) -> None:
        """A request joined the queue: ask the policy, at most every EVALUATE_EVERY s while
        requests pour in (a look skipped is made up by the timer, that much later)."""
        now = self._clock()
        if now - self._evaluated_at >= EVALUATE_EVERY:
            self.evaluate()
        else:
            self.wake_at(self._evaluated_at + EVALUATE_EVERY)

    def evaluate(self) -> None:
        """Sample the load, ask the policy, carry out its decision."""
        state = self._pool_state()
        if state is PoolState.CLOSING:
            return
        now = self._clock()
        self._evaluated_at = now
        dispatcher = self._dispatcher
        workers = self._workers
        limits = self.limits
        sample = self._load.sample(
            now,
            workers.workers.values(),
            limits,
            waiting=len(dispatcher.waiters) + dispatcher.queued(),
            oldest_wait=dispatcher.oldest_wait(now),
        )
        decision = decide(sample, limits, now)
        self._load.note_held_back(decision, sample, now, limits.cpu_count)
        start = decision.start if state is PoolState.RUNNING else 0
        wake = decision.recheck_at
        if decision.reason == HELD_BY_MEMORY and not sample.workers and not sample.starting:
            # Nothing runs and nothing may start: the waiting requests would only time out.
            error = PoolUnavailable(self.app, self._load.held_reason or "low memory")
            dispatcher.fail_waiters(lambda: self._crash.unavailable(error, now))
            wake = now + min(self.settings.health_interval, 1.0)
        if start and not self._crash.due(now):
            start = 0
            due = self._crash.next_start_at
            wake = due if wake is None else min(wake, due)
        for _ in range(start):
            workers.start()
        for worker_id in decision.stop:
            idle = workers.workers.get(worker_id)
            if idle is not None and idle.state.is_idle and idle.active == 0:
                _log.info(
                    "app %s: stopping worker pid %s, idle for %.1f s",
                    self.app,
                    idle.pid,
                    now - (idle.idle_since or now),
                    extra={"app": self.app, "pid": idle.pid},
                )
                workers.stop(idle)
        if wake is not None:
            self.wake_at(wake)
        if state is PoolState.RUNNING:
            self.tuner.wake()

    def wake_at(self, when: float) -> None:
        """Ask the policy again at ``when`` (loop clock), unless a look is due sooner."""
        # (A worker going idle calls this, often with a look due sooner: that answer first,
        # before the pool's state, an enum member read through a call.)
        timer = self._timer
        if timer is not None and self._timer_at <= when:
            return
        if self._pool_state() is PoolState.CLOSING:
            return
        if timer is not None:
            # (Its time is kept here: uvloop's call_at of a time already past returns a plain
            # Handle, which has no when().)
            timer.cancel()
        self._timer_at = when
        self._timer = self._call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.evaluate()

    def cancel(self) -> None:
        """No look is due any more (the pool stops its workers, or closes)."""
        self.tuner.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
