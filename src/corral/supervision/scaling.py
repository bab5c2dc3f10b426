"""The scaling policy: how many workers an application should have, as a pure function.

``decide(sample, limits, now)`` looks at one observation of a pool (requests waiting, workers
starting, each ready worker's load and how long it has been idle) and answers how many workers to
start and which to stop. It reads no clock and touches no process: the pool samples, calls
``decide`` and carries out the decision, so every rule here is tested with a table and a fake
clock.

The rules:

* **Scale up on demand.** Requests that wait beyond the free capacity of the ready workers, and
  beyond what the workers already starting will absorb, start new workers: one per
  ``capacity`` waiting requests, never above ``max_instances`` in total (starting included).
* **Keep the floor.** Never fewer than ``min_instances`` workers (starting included).
* **Scale down when idle.** A worker idle for ``idle_timeout`` seconds or more is stopped, the
  longest idle first, but never below ``min_instances`` and never while requests wait.
  ``min_instances == 0`` lets an application scale to zero; ``idle_timeout is None`` keeps
  workers forever.
* **Say when to look again.** ``recheck_at`` is the earliest time at which an idle worker would
  become stoppable, so the pool can sleep until then instead of polling.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One ready worker as the policy sees it."""

    worker_id: int
    #: Requests in flight on this worker.
    active: int
    #: When the worker last became idle (same clock as ``now``); None while it is busy.
    idle_since: float | None


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One observation of a pool."""

    #: Requests queued, waiting for a worker.
    waiting: int = 0
    #: Workers spawned but not yet ready.
    starting: int = 0
    #: Ready workers (not starting, not stopping).
    workers: tuple[WorkerLoad, ...] = ()


@dataclass(frozen=True, slots=True)
class ScalingLimits:
    """The bounds the policy keeps to."""

    min_instances: int = 0
    #: Already resolved: at least 1 (the pool turns "0 = as many as CPU cores" into a number).
    max_instances: int = 1
    #: Seconds of idleness after which a worker above the floor is stopped; None = never.
    idle_timeout: float | None = None
    #: Requests one worker serves at once (its threads / FastCGI connections).
    capacity: int = 1

    def __post_init__(self) -> None:
        if self.min_instances < 0:
            raise ValueError(f"min_instances must be >= 0, not {self.min_instances}")
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, not {self.max_instances}")
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) exceeds max_instances ({self.max_instances})"
            )
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {self.capacity}")
        if self.idle_timeout is not None and self.idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0 or None, not {self.idle_timeout}")


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """What the pool should do now."""

    #: Workers to start.
    start: int = 0
    #: Ids of idle workers to stop.
    stop: tuple[int, ...] = ()
    #: When to call ``decide`` again even if nothing else happens; None = no need.
    recheck_at: float | None = None


def decide(sample: LoadSample, limits: ScalingLimits, now: float) -> ScalingDecision:
    """Decide how many workers to start and which idle ones to stop."""
    ready = len(sample.workers)
    total = ready + sample.starting
    capacity = limits.capacity

    start = 0
    free = sum(max(capacity - worker.active, 0) for worker in sample.workers)
    unmet = sample.waiting - free - sample.starting * capacity
    if unmet > 0:
        start = -(-unmet // capacity)  # ceil
    start = max(start, limits.min_instances - total)
    start = max(min(start, limits.max_instances - total), 0)

    if sample.waiting > 0 or start > 0 or limits.idle_timeout is None:
        return ScalingDecision(start=start)

    idle_timeout = limits.idle_timeout
    idle = sorted(
        (worker.idle_since, worker.worker_id)
        for worker in sample.workers
        if worker.active == 0 and worker.idle_since is not None
    )
    surplus = max(total - limits.min_instances, 0)
    stop = tuple(worker_id for idle_since, worker_id in idle if now - idle_since >= idle_timeout)[
        :surplus
    ]

    recheck_at: float | None = None
    if total - len(stop) > limits.min_instances:
        pending = [
            idle_since + idle_timeout
            for idle_since, worker_id in idle
            if worker_id not in stop and now - idle_since < idle_timeout
        ]
        if pending:
            recheck_at = min(pending)
    return ScalingDecision(stop=stop, recheck_at=recheck_at)
