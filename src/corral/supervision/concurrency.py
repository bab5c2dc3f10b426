"""The concurrency policy: how many requests each worker of an application serves at once, as a
pure function (adaptive concurrency, the default for Corral's Python worker).

``scaling.decide`` sizes the number of workers; ``decide_capacity`` sizes each worker: how many
connections the pool opens to it, each served by a thread the worker starts on demand (an
*elastic* worker: ``WorkerTraits.elastic``). Both read the same observations, so an app gets
threads, more workers, or both. It reads no clock and touches no process: the pool samples (its
counters, and each worker's CPU time through psutil: ``adaptive.ConcurrencyTuner``), calls
``decide_capacity`` and carries the decision out, so every rule is tested with a table and a
fake clock.

What the policy sees (``ConcurrencySample``): the connections per worker the pool uses now
(``capacity``) and the most the workers take (``ceiling``, their ``FCGI_MAX_CONNS``), the ready
workers, the requests in flight and waiting, the smoothed arrival rate and service time (the
time a request holds a worker), the CPU the workers burn per request completed and per second
(cores per worker), the app's *base* (``Base``), the machine's idle CPU and available memory.

Why a base: a request's service time also counts its wait for the GIL behind the worker's other
requests. With k requests in flight in a worker of a CPU-bound app it is about k times the CPU
per request, which would read as an app that waits, and ask for more threads. So the service
time and the CPU per request are taken as the app's own (``next_base``) only when they were
measured with at most one request in flight per worker, during a sample in which requests
completed, once the smoothed service time has settled after the last change of capacity and
holds steady from one sample to the next (a request abandoned by its client, or a tunnel, is
no service time: ``Dispatcher.release``); the
time its threads waited for a core (Linux's schedstat, measured by the pool) is taken off it:
the machine's wait, not the app's. Under a steady load with many requests per worker the base
is kept; when the CPU per request moves away from the base's by more than ``STALE_FACTOR`` and
``STALE_MIN`` (the app's requests changed), the base no longer counts and the capacity goes
back to 1 (rule 5) until a new base is measured there.

The rules, in order:

1. **Does the app wait?** A request whose base service time is at least ``MIN_SERVICE`` and at
   least ``WAIT_RATIO`` times the base CPU per request spends three quarters of its time or
   more off the CPU: waiting on a database, an API, a sleep. Such an app needs more requests
   in flight, not more cores. Below ``MIN_SERVICE`` (5 ms, ``scaling.QUEUE_AHEAD_LIMIT``) the
   requests of a busy worker queue on its connection instead (pipelining,
   ``scaling.queue_depth``), and its service time is mostly the front's and the machine's.
   On a saturated machine (idle CPU below ``cpu_saturated_below``), where a request also
   waits for a core, the ratio asked of a base whose waits for a core were not measured (no
   schedstat: not Linux) is ``WAIT_RATIO_SATURATED``. Until the CPU per request is known,
   nothing changes; without a valid base, the app does not count as waiting.
2. **Enough for the load.** The requests present now (in flight and waiting) and Little's law
   (``arrival rate x service time``), shared by the ready workers at ``target_utilisation``.
3. **No more than one core per worker.** A worker's threads share one core at most (the GIL):
   ``GIL_SHARE x base service time / CPU per request`` threads keep it ``GIL_SHARE`` busy, and more
   only add latency; a worker already burning ``GIL_SHARE`` of a core gets no more threads. The next
   requests go to more workers (``scaling.decide``, rules 1-2, up to ``max_instances``), which
   it sizes with the capacity chosen here.
4. **Grow at once** to what rules 2-3 allow, up to the ceiling, when the app waits. Never while
   the machine's available memory is below the reserve, and no more threads than fit above it
   at ``THREAD_MEMORY`` each.
5. **Back down fast past the CPU cap.** A capacity above rule 3's cap, or above 1 for an app
   that no longer waits (its requests turned CPU-bound), only makes requests queue for the
   GIL: it goes down to the cap at once (then at most every ``CAP_SHRINK_AFTER`` seconds).
6. **Back down slowly when the load goes.** A capacity that the load (rule 2, never below the
   requests in flight now) keeps less than ``SHRINK_BELOW`` busy is halved (not below the
   load's), at most once every ``SHRINK_AFTER`` seconds since the last change. The idle
   connections above the new capacity are closed, and the threads that served them end when
   idle.
7. **Say when to look again** (``recheck_at``): when a back-down becomes due.

Explicit settings win: a worker that is not elastic (``threads`` or ``connections_per_worker``
set, an ASGI worker, php-cgi, Node, a service) never reaches this policy; ``min_instances`` and
``max_instances`` stay ``scaling.decide``'s bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.supervision.scaling import QUEUE_AHEAD_LIMIT, ScalingLimits

#: Rule 1: a request holds its worker at least this long (seconds) to count as waiting (below
#: it, requests queue on a busy worker's connection instead: ``scaling.queue_depth``)...
MIN_SERVICE = QUEUE_AHEAD_LIMIT
#: ...and at least this many times the CPU its worker burns for it (75 % off the CPU)...
WAIT_RATIO = 4.0
#: ...or this many times on a saturated machine.
WAIT_RATIO_SATURATED = 8.0
#: Rule 3: the share of one core a worker's threads are sized to keep busy at most.
GIL_SHARE = 0.8
#: Rule 4: what one more thread may cost the machine, at most (bytes: its stack pages, the
#: pages of its 256 KiB receive buffer that its requests wrote (all of them for a large
#: upload), the frames of a request; a thread of small requests costs about 64 KiB).
THREAD_MEMORY = 1024 * 1024
#: Rule 5: seconds between two back-downs to the CPU cap.
CAP_SHRINK_AFTER = 1.0
#: Rule 6: seconds between two back-downs (and after any change)...
SHRINK_AFTER = 5.0
#: ...and only when the load keeps at most this share of the capacity busy (hysteresis: a
#: load that wavers around the capacity does not make it go down and up again).
SHRINK_BELOW = 0.75
#: A base is measured with at most this many requests in flight per worker...
BASE_IN_FLIGHT = 1
#: ...at least this long (seconds) after the last change of capacity...
BASE_SETTLE = 1.0
#: ...with a service time that moved by at most this share since the previous sample (the
#: smoothed value lags behind a change of the app's requests)...
STEADY = 0.2
#: ...and no longer counts when the CPU per request is this many times more or less than its,
#: and more than STALE_MIN seconds away (CPU time is counted in ticks of 10 ms: a reading of
#: a few requests that cost little is coarse).
STALE_FACTOR = 3.0
STALE_MIN = 0.001

GROW = "grow"
SHRINK = "shrink"
CPU_BOUND = "cpu-bound"
HELD_BY_GIL = "worker CPU"
HELD_BY_MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class Base:
    """The app's own service time and CPU per request (seconds), measured without requests
    queueing for the GIL."""

    service: float
    cpu: float
    #: Its waits for a core were measured and taken off ``service`` (Linux's schedstat).
    net: bool = False


def stale(base: Base, cpu: float) -> bool:
    """Whether the CPU per request has moved more than STALE_FACTOR (and STALE_MIN) away from
    the base's."""
    if abs(cpu - base.cpu) <= STALE_MIN:
        return False
    return cpu > base.cpu * STALE_FACTOR or cpu * STALE_FACTOR < base.cpu


def next_base(
    base: Base | None,
    *,
    service: float | None,
    cpu: float | None,
    in_flight: int,
    workers: int,
    settled: bool,
    completed: int,
    smoothed: float | None = None,
    previous: float | None = None,
    net: bool = False,
) -> Base | None:
    """The base after a sample: the sample's figures when they are clean (both known, at most
    ``BASE_IN_FLIGHT`` requests in flight per worker, some requests ``completed`` during the
    sample (an idle sample's smoothed service time is an old one), the capacity ``settled``,
    the smoothed service time within ``STEADY`` of the ``previous`` sample's), else the base
    as it was, or
    None once the CPU per request has moved away from it (``stale``). ``service`` is the app's
    own part of the ``smoothed`` service time (``net``: without its waits for a core, which
    were measured; the same by default)."""
    if base is not None and cpu is not None and stale(base, cpu):
        base = None
    if smoothed is None:
        smoothed = service
    if service is None or cpu is None or smoothed is None or previous is None or not settled:
        return base
    if completed < 1:
        return base
    if abs(smoothed - previous) > STEADY * max(smoothed, previous):
        return base
    if in_flight > BASE_IN_FLIGHT * max(workers, 1):
        return base
    return Base(service, cpu, net)


@dataclass(frozen=True, slots=True)
class ConcurrencySample:
    """One observation of a pool of elastic workers (and of the machine)."""

    #: Connections per worker the pool uses now (1..ceiling).
    capacity: int
    #: The most connections a worker takes (its FCGI_MAX_CONNS).
    ceiling: int
    #: Ready workers.
    workers: int
    #: Requests holding a worker now, and requests waiting for one (the pool's queue and
    #: requests queued on busy connections).
    in_flight: int = 0
    waiting: int = 0
    #: Requests per second, and seconds a request holds a worker (smoothed; None: unknown).
    arrival_rate: float = 0.0
    service_time: float | None = None
    #: The app's own service time and CPU per request (``next_base``; None: not measured).
    base: Base | None = None
    #: Seconds of the workers' CPU per request completed (smoothed; None: not measured yet).
    cpu_per_request: float | None = None
    #: The workers' CPU use, in cores per worker (None: not measured yet).
    worker_cpu: float | None = None
    #: The machine's idle CPU (0..1) and available memory (bytes); None when unknown.
    cpu_idle: float | None = None
    free_memory: int | None = None

    def __post_init__(self) -> None:
        if self.ceiling < 1 or not 1 <= self.capacity <= self.ceiling:
            raise ValueError(f"capacity {self.capacity} must be in 1..ceiling ({self.ceiling})")

    def own(self) -> Base | None:
        """The base, while the CPU per request is still within STALE_FACTOR of its."""
        base, cpu = self.base, self.cpu_per_request
        if base is None or cpu is None or stale(base, cpu):
            return None
        return base


@dataclass(frozen=True, slots=True)
class ConcurrencyDecision:
    """The connections per worker the pool should use from now on, and why."""

    capacity: int
    #: ``GROW``, ``SHRINK``, ``CPU_BOUND`` (a change), a hold (``HELD_BY_GIL``,
    #: ``HELD_BY_MEMORY``), or None.
    reason: str | None = None
    #: When to decide again even if nothing else happens; None = at the next sample.
    recheck_at: float | None = None


def _saturated(sample: ConcurrencySample, limits: ScalingLimits) -> bool:
    return sample.cpu_idle is not None and sample.cpu_idle < limits.cpu_saturated_below


def waits(sample: ConcurrencySample, limits: ScalingLimits) -> bool:
    """Rule 1: whether the app's requests mostly wait off the CPU (False without a base)."""
    base = sample.own()
    if base is None or base.service < MIN_SERVICE:
        return False
    # On a saturated machine, a base whose waits for a core could not be measured asks more.
    saturated = _saturated(sample, limits) and not base.net
    return base.service >= (WAIT_RATIO_SATURATED if saturated else WAIT_RATIO) * base.cpu


def cpu_cap(sample: ConcurrencySample) -> int:
    """Rule 3: the threads that keep one worker's core at most GIL_SHARE busy (the ceiling
    for a base of no CPU at all): the base's service time over the base's CPU per request, or
    over the CPU per request measured now when that is lower. Unlike the service time, a
    request's CPU time does not count its waits for the GIL, so a lower figure measured under
    load is the app's own: the base's is taken from few requests at the start of a burst (new
    threads, cold caches) and read up to five times the steady figure, which held a sleeping
    app at 73 threads per worker where it needed 125. A higher figure of the moment is not
    taken: at the end of a burst a few requests carry the idle threads' CPU, and the cap would
    fall (rule 5) just before the next burst."""
    base = sample.own()
    if base is None:
        return 1
    cpu = base.cpu if sample.cpu_per_request is None else min(base.cpu, sample.cpu_per_request)
    if GIL_SHARE * base.service >= sample.ceiling * cpu:  # (no or next to no CPU: the
        return sample.ceiling  # quotient could be too large for an int, even infinite)
    return max(1, int(GIL_SHARE * base.service / cpu))


def load_capacity(sample: ConcurrencySample, limits: ScalingLimits) -> int:
    """Rule 2: connections per worker for the requests present and for Little's law, at the
    target utilisation; at least 1."""
    per_worker = max(sample.workers, 1) * limits.target_utilisation
    need = _ceil((sample.in_flight + sample.waiting) / per_worker)
    if sample.service_time is not None:
        need = max(need, _ceil(sample.arrival_rate * sample.service_time / per_worker))
    return max(1, need)


def decide_capacity(
    sample: ConcurrencySample, limits: ScalingLimits, changed_at: float, now: float
) -> ConcurrencyDecision:
    """The connections per worker to use, given the last change at ``changed_at``."""
    capacity = sample.capacity
    if sample.cpu_per_request is None:
        return ConcurrencyDecision(capacity)
    waiting_app = waits(sample, limits)
    cap = cpu_cap(sample) if waiting_app else 1

    # Rules 1-4: grow.
    if waiting_app and sample.workers:
        wanted = min(load_capacity(sample, limits), cap)
        if wanted > capacity:
            if sample.worker_cpu is not None and sample.worker_cpu >= GIL_SHARE:
                return ConcurrencyDecision(capacity, HELD_BY_GIL)
            room = _memory_room(sample, limits)
            if room is not None:
                wanted = min(wanted, capacity + room // (THREAD_MEMORY * sample.workers))
                if wanted <= capacity:
                    return ConcurrencyDecision(capacity, HELD_BY_MEMORY)
            return ConcurrencyDecision(wanted, GROW)

    # Rule 5: past the CPU cap, down to it.
    if capacity > cap:
        due = changed_at + CAP_SHRINK_AFTER
        if now < due:
            return ConcurrencyDecision(capacity, recheck_at=due)
        return ConcurrencyDecision(cap, CPU_BOUND, recheck_at=now + CAP_SHRINK_AFTER)

    # Rule 6: more than the load needs, one halving at a time.
    if capacity == 1:
        return ConcurrencyDecision(capacity)
    keep = max(
        _ceil(sample.in_flight / max(sample.workers, 1)), min(load_capacity(sample, limits), cap)
    )
    if keep > capacity * SHRINK_BELOW:
        return ConcurrencyDecision(capacity)
    due = changed_at + SHRINK_AFTER
    if now < due:
        return ConcurrencyDecision(capacity, recheck_at=due)
    return ConcurrencyDecision(max(keep, capacity // 2), SHRINK, recheck_at=now + SHRINK_AFTER)


def _memory_room(sample: ConcurrencySample, limits: ScalingLimits) -> int | None:
    """Bytes of available memory above the reserve (0 when below); None without a reserve or
    a reading."""
    if not limits.memory_reserve or sample.free_memory is None:
        return None
    return max(sample.free_memory - limits.memory_reserve, 0)


def _ceil(value: float) -> int:
    whole = int(value)
    return whole + 1 if value > whole else whole
