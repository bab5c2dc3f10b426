"""Is each worker still well? ``HealthMonitor`` runs one pool's health rounds: it sweeps request
timeouts often, and every ``health_interval`` samples the machine (available memory, idle CPU)
and each worker (RSS, CPU time) with psutil in a thread, recycles workers past
``memory_limit_mb`` or ``time_limit``, and probes workers idle for ``probe_interval`` (one that
does not answer within ``probe_timeout`` is killed and replaced).

Its collaborators are injected (clocks, the sampler, the probe, what recycling and asking the
policy mean), so that a round can be driven directly in tests (``sweep``, ``apply``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]

from corral.supervision.lease import Lease, Probe
from corral.supervision.lifecycle import WorkerState
from corral.supervision.load import MIB, LoadMeter
from corral.supervision.probe import ProbeFailed
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker, WorkerSet

_log = logging.getLogger("corral.supervision.pool")


@dataclass(frozen=True, slots=True)
class MachineSample:
    """One health round's look at the machine and the workers (by worker id)."""

    free_memory: int | None = None
    cpu_idle: float | None = None
    rss: dict[int, int] = field(default_factory=dict)
    cpu_time: dict[int, float] = field(default_factory=dict)


def sample_machine(pids: dict[int, int]) -> MachineSample:
    """The machine (available memory, idle CPU since the last call) and each worker's RSS and
    CPU time, from ``{worker id: pid}``. Blocking (/proc reads): called in a thread."""
    try:
        free: int | None = int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):  # pragma: no cover - /proc unreadable
        free = None
    try:
        cpu_idle: float | None = float(psutil.cpu_times_percent(interval=None).idle) / 100.0
    except (OSError, RuntimeError, AttributeError):  # pragma: no cover
        cpu_idle = None
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for worker_id, pid in pids.items():
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                rss[worker_id] = int(process.memory_info().rss)
                times = process.cpu_times()
                cpu[worker_id] = float(times.user + times.system)
        except (psutil.Error, OSError):
            continue
    return MachineSample(free, cpu_idle, rss, cpu)


async def _sample_in_thread(pids: dict[int, int]) -> MachineSample:
    return await asyncio.to_thread(sample_machine, pids)


class HealthMonitor:
    """One pool's health rounds, request-timeout sweep, limits and idle probes."""

    def __init__(
        self,
        app: str,
        settings: PoolSettings,
        workers: WorkerSet,
        leases: set[Lease],
        load: LoadMeter,
        probe: Probe,
        *,
        clock: Callable[[], float],
        create_task: Callable[[Coroutine[object, object, None], str | None], asyncio.Task[None]],
        recycle: Callable[[Worker, str, bool], None],
        evaluate: Callable[[], None],
        sample: Callable[[dict[int, int]], Awaitable[MachineSample]] = _sample_in_thread,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            workers: the pool's workers.
            leases: the leases out (the dispatcher's; read here).
            load: where the machine's samples go.
            probe: the readiness probe, asked again of idle workers.
            clock: the loop's clock; ``monotonic``: the clock of ``Lease.started``.
            create_task: the loop's ``create_task`` (the rounds, the probes).
            recycle: retire a ready worker for a reason, and have it replaced (the bool: a
                request hung in it, so kill it once drained).
            evaluate: ask the scaling policy again.
            sample: samples the machine and the workers (``{worker id: pid}``).
        """
        self.app = app
        self.settings = settings
        self._workers = workers
        self._leases = leases
        self._load = load
        self._probe = probe
        self._clock = clock
        self._create_task = create_task
        self._recycle = recycle
        self._evaluate = evaluate
        self._sample = sample
        self._monotonic = monotonic
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._round_at = -1e9
        self._stopped = False

    def start(self) -> None:
        """Begin the rounds (once; a worker became ready)."""
        if self._task is None and not self._stopped:
            self._task = self._create_task(self._rounds(), f"corral-health-{self.app}")

    async def stop(self) -> None:
        """End the rounds and the probes in flight."""
        self._stopped = True
        background = [t for t in (self._task, *self._probes) if t is not None]
        self._task = None
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def _rounds(self) -> None:
        """Until stopped: sweep request timeouts often, and every ``health_interval`` sample
        memory and CPU, apply memory and time limits, probe idle workers."""
        settings = self.settings
        tick = settings.health_interval
        if settings.request_timeout is not None:
            tick = min(tick, max(settings.request_timeout / 4, 0.05))
        while not self._stopped:
            await asyncio.sleep(tick)
            try:
                self.sweep()
                now = self._clock()
                if now - self._round_at >= settings.health_interval:
                    self._round_at = now
                    await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end health checking for good
                _log.exception("app %s: health round failed", self.app, extra={"app": self.app})

    # ------------------------------------------------------------------- request timeouts

    def sweep(self) -> None:
        """Cut every request (begun, not queued) held longer than ``request_timeout``."""
        timeout = self.settings.request_timeout
        if timeout is None or not self._leases:
            return
        now = self._monotonic()
        for lease in [
            lease
            for lease in self._leases
            if now - lease.started > timeout and not lease.queued and not lease.open_ended
        ]:
            if not lease.timed_out:
                self._request_timed_out(
                    lease,
                    f"ran {now - lease.started:.1f} s, past the request timeout of {timeout:g} s "
                    "(WORKER_REQUEST_TIMEOUT)",
                )

    def stuck(self, lease: Lease) -> None:
        """The front gave up on the lease's request (no sign of it for ``response_timeout``,
        504): the worker is stuck in it, as past the request timeout."""
        if not lease.timed_out:
            held = self._monotonic() - lease.started
            self._request_timed_out(
                lease, f"gave no sign of life for the front's response_timeout ({held:.1f} s)"
            )

    def _request_timed_out(self, lease: Lease, why: str) -> None:
        """Cut the request (the front answers 504), log the worker's stack, replace it."""
        lease.timed_out = True
        worker = self._workers.workers.get(lease.worker_id)
        _log.error(
            "app %s: a request on worker pid %s %s: answered 504; the worker's stack follows "
            "in its log, and it is replaced",
            self.app,
            lease.worker_pid,
            why,
            extra={"app": self.app, "pid": lease.worker_pid},
        )
        if worker is not None and worker.process is not None:
            worker.process.dump_stack()
            if worker.state.is_ready:
                self._recycle(worker, "a request ran past the request timeout", True)
            elif worker.state is WorkerState.DRAINING:
                self._workers.set_state(worker, WorkerState.HUNG)  # killed once drained
        lease.conn.close()

    # ------------------------------------------------------------------- health rounds

    async def round(self) -> None:
        """Sample (in a thread), then apply."""
        pids = {w.id: w.process.pid for w in self._workers.workers.values() if w.process}
        sample = await self._sample(pids)
        if self._stopped:
            return
        self.apply(sample, self._clock())

    def apply(self, sample: MachineSample, now: float) -> None:
        """Take a round's sample: the machine to the load meter, each worker's figures; recycle
        workers past their memory or time limit (the time limit: one per round, so that workers
        started together leave in turn); probe idle ones; ask the policy."""
        self._load.machine(sample.free_memory, sample.cpu_idle, now)
        settings = self.settings
        limit = settings.memory_limit_mb * MIB
        aged_out = False
        for worker in list(self._workers.workers.values()):
            if worker.id in sample.rss:
                worker.rss = sample.rss[worker.id]
            if worker.id in sample.cpu_time:
                worker.cpu_time = sample.cpu_time[worker.id]
            if not worker.state.is_ready:
                continue
            if limit and worker.rss is not None and worker.rss > limit:
                self._recycle(
                    worker,
                    f"memory {worker.rss / MIB:.0f} MiB is above the limit of "
                    f"{settings.memory_limit_mb} MiB (memoryLimit)",
                    False,
                )
            elif (
                settings.time_limit is not None
                and not aged_out
                and now - worker.ready_at >= settings.time_limit
            ):
                aged_out = True
                self._recycle(
                    worker, f"ran {(now - worker.ready_at) / 60:.1f} min (timeLimit)", False
                )
            elif (
                worker.state is WorkerState.IDLE
                and now - max(worker.last_used, worker.last_probe) >= settings.probe_interval
            ):
                self._probe_idle(worker, now)
        self._evaluate()

    def _probe_idle(self, worker: Worker, now: float) -> None:
        """Check that an idle worker still answers (PROBING); kill it (and let it be replaced)
        if not."""
        process = worker.process
        if process is None:
            return
        self._workers.set_state(worker, WorkerState.PROBING)
        # A kept-alive connection may hold a worker's only thread (php-cgi): free it first.
        self._workers.close_idle_connections(worker)

        async def probe() -> None:
            try:
                await self._probe(process.address, self.settings.probe_timeout)
                failure = None
            except (OSError, ProbeFailed) as exc:
                failure = str(exc) or type(exc).__name__
            probing = worker.state is WorkerState.PROBING
            if failure is None:
                worker.last_probe = self._clock()
                if probing:
                    self._workers.set_state(worker, WorkerState.IDLE)
                return
            # Leased meanwhile: a busy worker answers late; that says nothing about its health.
            if not (probing or worker.state is WorkerState.IDLE) or worker.last_used > now:
                return
            if self._stopped:
                return
            _log.warning(
                "app %s: idle worker pid %s did not answer the health probe (%s); replacing it",
                self.app,
                worker.pid,
                failure,
                extra={"app": self.app, "pid": worker.pid},
            )
            # Its exit is reaped and logged by the worker set, then it is replaced.
            self._workers.kill(worker, "it did not answer the health probe")
            self._evaluate()

        task = self._create_task(probe(), None)
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)
