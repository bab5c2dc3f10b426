"""The scaling policy: how many workers an application should have, as a pure function.

``decide(sample, limits, now)`` looks at one observation of a pool and answers how many workers
to start and which to stop. It reads no clock and touches no process: the pool samples (its own
counters, and the machine's free memory and CPU through psutil), calls ``decide`` and carries out
the decision, so every rule here is tested with a table and a fake clock.

What the policy sees (``LoadSample``): requests waiting and how long the oldest has waited, workers
starting, each ready worker's load and since when it is idle, the recent arrival rate and the time
a request holds a worker (both smoothed by the pool), how long a worker takes to start, the
machine's available memory and idle CPU, and the workers' typical memory.

The rules, in order:

1. **Scale up on demand.** Requests that wait beyond the free capacity of the ready workers, and
   beyond what the workers already starting will absorb, start new workers: one per ``capacity``
   waiting requests.
2. **Size for the load (Little's law).** ``arrival_rate x service_time`` is the number of requests
   the current load keeps in flight on average. Once that is at least ``MIN_LOAD``, the pool is
   given enough workers for it at ``target_utilisation`` (80 %), so that a steady load is
   absorbed before requests queue, and no idle worker is stopped while the load still needs it.
3. **Keep the floor.** Never fewer than ``min_instances`` workers (starting included), never more
   than ``max_instances``.
4. **Do not add processes to a saturated CPU.** When the machine's idle CPU is below
   ``cpu_saturated_below`` and the app already has a worker per core, more workers only share the
   same cores (a CPU-bound app's latency gets worse, its throughput does not grow): starts above
   the floor are held back while the queue is young. Once the oldest request has waited longer
   than a worker takes to start (at least ``QUEUE_PATIENCE`` s), waiting costs more than starting
   and the hold is released.
5. **Never start a worker when free memory is below the reserve.** With ``memory_reserve`` set and
   the available memory known: no start when it is below the reserve, and no more starts than fit
   above it at the workers' typical size. Held-back starts are reported (``held_back``, ``reason``)
   for the log and the status page; the floor is not exempt.
6. **Scale down when idle.** A worker idle for ``idle_timeout`` seconds or more is stopped, the
   longest idle first, never below the floor (workers starting count toward it) or what the load
   needs (rule 2), and never while requests wait. ``min_instances == 0`` lets an application
   scale to zero; ``idle_timeout is None`` keeps workers forever.
7. **Say when to look again.** ``recheck_at`` is the earliest time at which an idle worker would
   become stoppable, or a held-back start could be released, so the pool can sleep until then.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds a request may wait before the CPU-saturation hold (rule 4) gives way, at least.
QUEUE_PATIENCE = 1.0
#: Below this many requests in flight on average, rule 2 asks for nothing (a trickle of requests
#: must not keep a worker from scaling to zero while the smoothed rate decays).
MIN_LOAD = 0.5

#: Pipelining (``queue_depth``): requests are queued on a busy worker's connection only as deep
#: as this much expected work (seconds) waits ahead of the last one.
QUEUE_AHEAD_LIMIT = 0.005

HELD_BY_MEMORY = "memory"
HELD_BY_CPU = "cpu"


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
    """One observation of a pool (and of the machine it runs on)."""

    #: Requests queued, waiting for a worker.
    waiting: int = 0
    #: Workers spawned but not yet ready.
    starting: int = 0
    #: Ready workers (not starting, not draining, not stopping).
    workers: tuple[WorkerLoad, ...] = ()
    #: Seconds the oldest waiting request has waited (0 when none waits).
    oldest_wait: float = 0.0
    #: Requests arriving per second, recently (smoothed).
    arrival_rate: float = 0.0
    #: Seconds a request holds a worker, recently (smoothed); None before the first one.
    service_time: float | None = None
    #: Seconds from spawn to ready, recently (smoothed); None before the first ready worker.
    spawn_time: float | None = None
    #: The machine's available memory in bytes; None when unknown.
    free_memory: int | None = None
    #: This application's workers' typical resident memory in bytes; None when unknown.
    worker_memory: int | None = None
    #: The machine's idle CPU, 0.0 to 1.0; None when unknown.
    cpu_idle: float | None = None


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
    #: Bytes of available memory below which no worker is started; 0 = no reserve.
    memory_reserve: int = 0
    #: The machine's CPU cores (rule 4).
    cpu_count: int = 1
    #: Idle CPU fraction below which the machine counts as saturated (rule 4).
    cpu_saturated_below: float = 0.05
    #: Busy fraction of the workers' capacity that a steady load is sized for (rule 2).
    target_utilisation: float = 0.8

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
        if self.memory_reserve < 0:
            raise ValueError(f"memory_reserve must be >= 0, not {self.memory_reserve}")
        if self.cpu_count < 1:
            raise ValueError(f"cpu_count must be >= 1, not {self.cpu_count}")
        if not 0.0 <= self.cpu_saturated_below <= 1.0:
            raise ValueError(
                f"cpu_saturated_below must be in [0, 1], not {self.cpu_saturated_below}"
            )
        if not 0.0 < self.target_utilisation <= 1.0:
            raise ValueError(f"target_utilisation must be in (0, 1], not {self.target_utilisation}")


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """What the pool should do now."""

    #: Workers to start.
    start: int = 0
    #: Ids of idle workers to stop.
    stop: tuple[int, ...] = ()
    #: When to call ``decide`` again even if nothing else happens; None = no need.
    recheck_at: float | None = None
    #: Starts the rules wanted but held back (rules 4 and 5).
    held_back: int = 0
    #: Why they were held back: ``HELD_BY_MEMORY`` or ``HELD_BY_CPU``; None when nothing was.
    reason: str | None = None


def load_workers(sample: LoadSample, limits: ScalingLimits) -> int:
    """Workers the recent load keeps busy at the target utilisation (rule 2); 0 when unknown."""
    if sample.service_time is None or sample.arrival_rate <= 0:
        return 0
    in_flight = sample.arrival_rate * sample.service_time
    if in_flight < MIN_LOAD:
        return 0
    per_worker = limits.capacity * limits.target_utilisation
    return _ceil(in_flight / per_worker - 1e-9)


def decide(sample: LoadSample, limits: ScalingLimits, now: float) -> ScalingDecision:
    """Decide how many workers to start and which idle ones to stop."""
    ready = len(sample.workers)
    total = ready + sample.starting
    capacity = limits.capacity
    needed_by_load = min(load_workers(sample, limits), limits.max_instances)

    # Rules 1-3: how many workers the pool should have.
    start = 0
    free = sum(max(capacity - worker.active, 0) for worker in sample.workers)
    unmet = sample.waiting - free - sample.starting * capacity
    if unmet > 0:
        start = _ceil(unmet / capacity)
    start = max(start, needed_by_load - total)
    floor = max(limits.min_instances - total, 0)
    start = max(min(max(start, floor), limits.max_instances - total), 0)

    held_back = 0
    reason: str | None = None
    recheck_at: float | None = None

    # Rule 4: a saturated CPU gets no extra processes while the queue is young.
    if start > floor and sample.cpu_idle is not None:
        patience = max(sample.spawn_time or 0.0, QUEUE_PATIENCE)
        if (
            sample.cpu_idle < limits.cpu_saturated_below
            and ready >= limits.cpu_count
            and sample.oldest_wait < patience
        ):
            held_back, start, reason = start - floor, floor, HELD_BY_CPU
            if sample.waiting:
                recheck_at = now + (patience - sample.oldest_wait)

    # Rule 5: never below the memory reserve, floor included.
    if start and limits.memory_reserve and sample.free_memory is not None:
        room = sample.free_memory - limits.memory_reserve
        allowed = 0 if room <= 0 else start
        if room > 0 and sample.worker_memory:
            allowed = min(start, room // sample.worker_memory)
        if allowed < start:
            held_back += start - allowed
            start = allowed
            reason = HELD_BY_MEMORY

    if start or held_back:
        return ScalingDecision(
            start=start, recheck_at=recheck_at, held_back=held_back, reason=reason
        )
    if sample.waiting > 0 or limits.idle_timeout is None:
        return ScalingDecision()

    # Rule 6: stop the longest idle workers above the floor and the load's needs.
    idle_timeout = limits.idle_timeout
    idle = sorted(
        (worker.idle_since, worker.worker_id)
        for worker in sample.workers
        if worker.active == 0 and worker.idle_since is not None
    )
    keep = max(limits.min_instances, needed_by_load)
    surplus = max(total - keep, 0)
    stop = tuple(worker_id for idle_since, worker_id in idle if now - idle_since >= idle_timeout)[
        :surplus
    ]

    # Rule 7.
    if total - len(stop) > keep:
        pending = [
            idle_since + idle_timeout
            for idle_since, worker_id in idle
            if worker_id not in stop and now - idle_since < idle_timeout
        ]
        if pending:
            recheck_at = min(pending)
    return ScalingDecision(stop=stop, recheck_at=recheck_at)


def queue_depth(service_time: float | None, limit: int) -> int:
    """How many requests one worker connection may carry at once when every worker is busy
    (pipelining, up to ``limit``): as many as leave at most ``QUEUE_AHEAD_LIMIT`` s of expected
    work (by the smoothed service time) ahead of the last. 1, nothing queued, while the service
    time is unknown or longer than that: a slow app's requests wait in the pool's queue for
    whichever worker is free first."""
    if limit < 2 or service_time is None:
        return 1
    if service_time * limit <= QUEUE_AHEAD_LIMIT:  # (also: no division by a tiny number)
        return limit
    return max(1, min(limit, 1 + int(QUEUE_AHEAD_LIMIT / service_time)))


def _ceil(value: float) -> int:
    whole = int(value)
    return whole + 1 if value > whole else whole
