"""Carrying out the concurrency policy: ``ConcurrencyTuner`` samples the CPU time of one pool's
workers (psutil, in a thread) with the requests each completed, turns them into the CPU per
request and the CPU each worker burns, asks the pure ``concurrency.decide_capacity`` how many
connections each worker should take, and applies the answer (``Dispatcher.set_capacity``, and
the scaling policy's ``capacity``).

It runs only for a pool of elastic workers (``Dispatcher.ceiling``), every ``SAMPLE_EVERY``
seconds while the pool has traffic or more than one connection per worker, and rests otherwise
(``wake`` starts it again: the scaler calls it whenever it looks at the pool).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]

from corral.supervision.concurrency import (
    BASE_IN_FLIGHT,
    BASE_SETTLE,
    Base,
    ConcurrencySample,
    decide_capacity,
    next_base,
)
from corral.supervision.dispatch import Dispatcher
from corral.supervision.load import LoadMeter
from corral.supervision.scaling import ScalingLimits
from corral.supervision.workers import Worker

_log = logging.getLogger("corral.supervision.pool")

#: Seconds between two samples (and decisions) while the tuner runs.
SAMPLE_EVERY = 0.25
#: A CPU-per-request reading waits for this many requests, and for MIN_CPU seconds of CPU or
#: PRECISE_REQUESTS requests (CPU time is counted in 10 ms ticks: a few cheap requests read
#: as 0 or as a whole tick each).
MIN_REQUESTS = 8
MIN_CPU = 0.02
PRECISE_REQUESTS = 32
#: Weight of a new reading in the smoothed CPU per request.
CPU_WEIGHT = 0.3


@dataclass(frozen=True, slots=True)
class CpuReading:
    """The workers' CPU times so far (``{worker id: seconds}``, user + system), the seconds
    their threads waited for a CPU (Linux; only when asked), and the machine's CPU times (all
    cores: idle and total seconds)."""

    workers: dict[int, float]
    waited: dict[int, float] = field(default_factory=dict)
    idle: float | None = None
    total: float | None = None


def runqueue_wait(pid: int) -> float | None:
    """Seconds the threads of process ``pid`` have spent runnable but waiting for a CPU, from
    Linux's ``/proc/PID/task/TID/schedstat`` (its second field); None where there is none."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as stat:
                total += int(stat.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def read_cpu_times(pids: dict[int, int], waits: bool = False) -> CpuReading:
    """Each worker's CPU time so far, from ``{worker id: pid}`` (a worker that cannot be read
    is left out), with ``waits`` the time its threads waited for a CPU, and the machine's.
    Blocking (/proc reads): called in a thread."""
    times: dict[int, float] = {}
    waited: dict[int, float] = {}
    for worker_id, pid in pids.items():
        try:
            cpu = psutil.Process(pid).cpu_times()
        except (psutil.Error, OSError):
            continue
        times[worker_id] = float(cpu.user + cpu.system)
        wait = runqueue_wait(pid) if waits else None
        if wait is not None:
            waited[worker_id] = wait
    try:
        machine = psutil.cpu_times()
    except (OSError, RuntimeError):  # pragma: no cover - /proc unreadable
        return CpuReading(times, waited)
    return CpuReading(times, waited, float(machine.idle), float(sum(machine)))


async def _read_in_thread(pids: dict[int, int], waits: bool) -> CpuReading:
    return await asyncio.to_thread(read_cpu_times, pids, waits)


class ConcurrencyTuner:
    """One pool's adaptive concurrency: sample, decide, apply, sleep."""

    def __init__(
        self,
        app: str,
        dispatcher: Dispatcher,
        workers: dict[int, Worker],
        load: LoadMeter,
        *,
        limits: Callable[[], ScalingLimits],
        clock: Callable[[], float],
        changed: Callable[[int], None],
        read_cpu: Callable[[dict[int, int], bool], Awaitable[CpuReading]] = _read_in_thread,
    ) -> None:
        """
        Args:
            workers: the worker set's workers (read here).
            limits: the scaling policy's limits now (target utilisation, memory reserve...).
            clock: the loop's clock.
            changed: the capacity changed (the scaler updates its limits and looks again).
            read_cpu: reads the workers' CPU times (``{worker id: pid}``; the bool: and how
                long their threads waited for a CPU) and the machine's.
        """
        self.app = app
        self._dispatcher = dispatcher
        self._workers = workers
        self._load = load
        self._limits = limits
        self._clock = clock
        self._changed = changed
        self._read_cpu = read_cpu
        self._task: asyncio.Task[None] | None = None
        #: The smoothed CPU seconds per request, and the workers' CPU use (cores per worker),
        #: as last measured; None until then.
        self.cpu_per_request: float | None = None
        self.worker_cpu: float | None = None
        #: When the capacity last changed (loop clock).
        self.changed_at = -1e9
        #: Per worker: its CPU time, requests completed and the time of the last reading.
        self._last: dict[int, tuple[float, int, float]] = {}
        self._cpu_sum = 0.0
        self._requests = 0
        #: The app's own service time and CPU per request (``concurrency.next_base``).
        self.base: Base | None = None
        self._previous_service: float | None = None
        #: Seconds a request's threads waited for a CPU (Linux schedstat; measured with few
        #: requests in flight), as last measured; the workers' last wait readings.
        self.cpu_wait: float | None = None
        self._waited: dict[int, tuple[float, float]] = {}
        self._wait_sum = 0.0
        self._wait_requests = 0
        self._served_at_rest = -1
        #: The machine's idle CPU (0..1) between the last two readings, and the last reading.
        self.cpu_idle: float | None = None
        self._machine: tuple[float, float] | None = None

    # ------------------------------------------------------------------- running

    def wake(self) -> None:
        """Run, if the pool's workers are elastic and the tuner is not running already."""
        if self._task is None and self._dispatcher.ceiling:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"corral-concurrency-{self.app}")

    def stop(self) -> None:
        """No more samples (the pool stops its workers, or closes); ``wake`` resumes."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(SAMPLE_EVERY)
                pids = {
                    w.id: w.process.pid
                    for w in self._workers.values()
                    if w.process is not None and w.state.is_ready
                }
                # The threads' waits for a CPU matter for the base only, measured with few
                # requests in flight (and few threads to read).
                clean = len(self._dispatcher.leases) <= BASE_IN_FLIGHT * max(len(pids), 1)
                reading = await self._read_cpu(pids, clean)
                now = self._clock()
                self.observe(reading, now)
                self.decide(now)
                if self._at_rest():
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not end the pool's adaptation for good
            _log.exception("app %s: concurrency sample failed", self.app, extra={"app": self.app})
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _at_rest(self) -> bool:
        """Nothing to adapt: one connection per worker, and no request since the last look."""
        served = sum(w.requests_served for w in self._workers.values())
        quiet = served == self._served_at_rest and not self._dispatcher.leases
        self._served_at_rest = served
        return quiet and self._dispatcher.capacity == 1

    # ------------------------------------------------------------------- measuring

    def observe(self, reading: CpuReading, now: float) -> None:
        """Fold a reading of the workers' CPU times with the requests each completed since the
        last one: the CPU per request (once ``MIN_REQUESTS`` are counted), each worker's CPU
        use, the machine's idle CPU since the last reading, and the app's base."""
        times = reading.workers
        if reading.idle is not None and reading.total is not None:
            if self._machine is not None and reading.total > self._machine[1]:
                idle, total = reading.idle - self._machine[0], reading.total - self._machine[1]
                self.cpu_idle = min(max(idle / total, 0.0), 1.0)
            self._machine = (reading.idle, reading.total)
        used: list[float] = []
        last = self._last
        for worker_id in [w for w in last if w not in times]:
            del last[worker_id]
        waited_now = {w: (value, now) for w, value in reading.waited.items()}
        completed = 0
        for worker_id, cpu in times.items():
            worker = self._workers.get(worker_id)
            if worker is None:
                continue
            before = last.get(worker_id)
            last[worker_id] = (cpu, worker.requests_served, now)
            if before is None:
                continue
            spent, served, elapsed = (
                cpu - before[0],
                worker.requests_served - before[1],
                now - before[2],
            )
            if spent < 0 or served < 0 or elapsed <= 0:
                continue
            completed += served
            used.append(spent / elapsed)
            if not served:
                # An idle worker's CPU (its waiting threads' wake-ups) is no request's: counted
                # into the next requests' it made a burst after a quiet spell read as CPU-bound
                # (the base thrown away, the capacity cut to 1 at the start of the burst).
                continue
            self._cpu_sum += spent
            self._requests += served
            waited = reading.waited.get(worker_id)
            waited_before = self._waited.get(worker_id)
            if waited is not None and waited_before is not None and waited >= waited_before[0]:
                self._wait_sum += waited - waited_before[0]
                self._wait_requests += served
        if used:
            self.worker_cpu = sum(used) / len(used)
        self._waited = waited_now
        if self._wait_requests >= MIN_REQUESTS:
            self.cpu_wait = self._wait_sum / self._wait_requests
            self._wait_sum, self._wait_requests = 0.0, 0
        elif not waited_now:
            self._wait_sum, self._wait_requests = 0.0, 0
        if self._requests >= MIN_REQUESTS and (
            self._cpu_sum >= MIN_CPU or self._requests >= PRECISE_REQUESTS
        ):
            per_request = self._cpu_sum / self._requests
            known = self.cpu_per_request
            self.cpu_per_request = (
                per_request if known is None else known + CPU_WEIGHT * (per_request - known)
            )
            self._cpu_sum, self._requests = 0.0, 0
        smoothed = service = self._load.service_time
        if service is not None and self.cpu_wait is not None:
            # A request's wait for a core is the machine's, not the app's.
            service = max(service - self.cpu_wait, self.cpu_per_request or 0.0)
        self.base = next_base(
            self.base,
            service=service,
            cpu=self.cpu_per_request,
            in_flight=len(self._dispatcher.leases),
            workers=sum(1 for w in self._workers.values() if w.state.is_ready),
            settled=now - self.changed_at >= BASE_SETTLE,
            completed=completed,
            smoothed=smoothed,
            previous=self._previous_service,
            net=service is not None and self.cpu_wait is not None,
        )
        self._previous_service = smoothed

    # ------------------------------------------------------------------- deciding

    def sample(self) -> ConcurrencySample:
        dispatcher = self._dispatcher
        load = self._load
        ready = sum(1 for w in self._workers.values() if w.state.is_ready)
        ceiling = dispatcher.ceiling
        return ConcurrencySample(
            capacity=min(max(dispatcher.capacity, 1), ceiling),
            ceiling=ceiling,
            workers=ready,
            in_flight=len(dispatcher.leases),
            waiting=len(dispatcher.waiters),
            arrival_rate=load.arrival_rate,
            service_time=load.service_time,
            base=self.base,
            cpu_per_request=self.cpu_per_request,
            worker_cpu=self.worker_cpu,
            cpu_idle=load.cpu_idle if self.cpu_idle is None else self.cpu_idle,
            free_memory=load.free_memory,
        )

    def decide(self, now: float) -> None:
        """Ask the policy; apply a new capacity."""
        if not self._dispatcher.ceiling:
            return
        sample = self.sample()
        decision = decide_capacity(sample, self._limits(), self.changed_at, now)
        if decision.capacity == self._dispatcher.capacity:
            return
        before = self._dispatcher.capacity
        self.changed_at = now
        self._dispatcher.set_capacity(decision.capacity)
        _log.info(
            "app %s: %d connections per worker (was %d, %s): a request holds its worker "
            "%.1f ms (base %.1f ms) and burns %.2f ms of CPU; %d in flight, "
            "%d waiting",
            self.app,
            decision.capacity,
            before,
            decision.reason,
            (sample.service_time or 0.0) * 1000,
            (sample.base.service if sample.base else 0.0) * 1000,
            (sample.cpu_per_request or 0.0) * 1000,
            sample.in_flight,
            sample.waiting,
            extra={"app": self.app},
        )
        self._changed(decision.capacity)
