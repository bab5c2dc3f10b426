"""What the scaling policy sees of one application: ``LoadMeter`` counts arrivals, smooths the
arrival rate, the service time and the spawn time, keeps the machine's last samples (available
memory, idle CPU), and turns all that into the ``LoadSample`` that the pure ``scaling.decide``
reads; it also says why starts are held back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import psutil  # type: ignore[import-untyped]

from corral.supervision.lifecycle import WorkerState
from corral.supervision.scaling import (
    HELD_BY_MEMORY,
    LoadSample,
    ScalingDecision,
    ScalingLimits,
    WorkerLoad,
)
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker

_log = logging.getLogger("corral.supervision.pool")

#: Smoothing of the arrival rate (time constant, seconds), of the service time and of the
#: spawn time (weights).
RATE_WINDOW = 5.0
SERVICE_WEIGHT = 0.05
SPAWN_WEIGHT = 0.3
#: The arrival rate is folded at most this often (seconds).
_RATE_MIN_ELAPSED = 0.25
#: Available memory is read at most this often (seconds) between health rounds.
_MEMORY_EVERY = 1.0
#: A held-back start is logged again at most this often (seconds).
HELD_LOG_INTERVAL = 10.0
MIB = 1024 * 1024


def available_memory() -> int | None:
    """The machine's available memory in bytes (None when it cannot be read)."""
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):  # pragma: no cover - /proc unreadable
        return None


class LoadMeter:
    """One pool's observed load. The dispatcher counts ``arrivals`` and folds each release
    into ``service_time`` itself (the hot path: no call); the rest is read when the policy is
    asked."""

    def __init__(
        self,
        app: str,
        settings: PoolSettings,
        *,
        read_free_memory: Callable[[], int | None] = available_memory,
    ) -> None:
        self.app = app
        self.settings = settings
        self._read_free_memory = read_free_memory
        #: Requests that arrived since the rate was last folded.
        self.arrivals = 0
        self.arrival_rate = 0.0
        self._rate_at = 0.0
        #: Seconds a request holds a worker, and from spawn to ready (smoothed; None: unknown).
        self.service_time: float | None = None
        self.spawn_time: float | None = None
        #: The machine's last sample: available memory (bytes), idle CPU (0..1).
        self.free_memory: int | None = None
        self.cpu_idle: float | None = None
        self._memory_at = -1e9
        #: Starts the policy held back at its last look, and why.
        self.held_back = 0
        self.held_reason: str | None = None
        self._held_logged = -1e9

    def served(self, held: float) -> None:
        """A request held a worker ``held`` seconds."""
        service = self.service_time
        self.service_time = held if service is None else service + SERVICE_WEIGHT * (held - service)

    def spawned(self, took: float) -> None:
        """A worker became ready ``took`` seconds after its spawn."""
        spawn = self.spawn_time
        self.spawn_time = took if spawn is None else spawn + SPAWN_WEIGHT * (took - spawn)

    def machine(self, free_memory: int | None, cpu_idle: float | None, now: float) -> None:
        """The health round sampled the machine."""
        self.free_memory, self.cpu_idle = free_memory, cpu_idle
        self._memory_at = now

    def update_rate(self, now: float) -> None:
        """Fold the arrivals counted since the last update into the smoothed rate."""
        if self._rate_at == 0.0:  # the first look: count from here
            self._rate_at = now
            return
        elapsed = now - self._rate_at
        if elapsed < _RATE_MIN_ELAPSED:
            return
        instant = self.arrivals / elapsed
        weight = 1.0 - math.exp(-elapsed / RATE_WINDOW)
        self.arrival_rate += weight * (instant - self.arrival_rate)
        self.arrivals = 0
        self._rate_at = now

    def sample(
        self,
        now: float,
        workers: Iterable[Worker],
        limits: ScalingLimits,
        *,
        waiting: int,
        oldest_wait: float,
    ) -> LoadSample:
        """What the policy sees: the workers, the queue (``waiting`` includes requests queued
        on busy connections: they wait as much), and the machine (memory read at most once a
        second; CPU from the last health round)."""
        starting = 0
        ready: list[WorkerLoad] = []
        rss: list[int] = []
        for worker in workers:
            if worker.state is WorkerState.STARTING:
                starting += 1
            elif worker.state.is_ready:
                ready.append(WorkerLoad(worker.id, worker.active, worker.idle_since))
                if worker.rss:
                    rss.append(worker.rss)
        self.update_rate(now)
        if limits.memory_reserve and now - self._memory_at >= _MEMORY_EVERY:
            self._memory_at = now
            self.free_memory = self._read_free_memory()
        return LoadSample(
            waiting=waiting,
            starting=starting,
            workers=tuple(ready),
            oldest_wait=oldest_wait,
            arrival_rate=self.arrival_rate,
            service_time=self.service_time,
            spawn_time=self.spawn_time,
            free_memory=self.free_memory,
            worker_memory=sum(rss) // len(rss) if rss else None,
            cpu_idle=self.cpu_idle,
        )

    def note_held_back(
        self, decision: ScalingDecision, sample: LoadSample, now: float, cpu_count: int
    ) -> None:
        """Say (in the status, and in the log at most every few seconds) why starts wait."""
        if not decision.held_back:
            if self.held_back and decision.start:
                _log.info("app %s: starting workers again", self.app, extra={"app": self.app})
            self.held_back = 0
            self.held_reason = None
            return
        reserve = self.settings.memory_reserve_mb
        if decision.reason == HELD_BY_MEMORY:
            free = (sample.free_memory or 0) / MIB
            reason = (
                f"free memory {free:.0f} MiB is below the reserve of {reserve} MiB (memoryReserve)"
            )
            if sample.worker_memory and free > reserve:
                reason = (
                    f"free memory {free:.0f} MiB leaves room above the reserve of "
                    f"{reserve} MiB for no more workers of "
                    f"{sample.worker_memory / MIB:.0f} MiB"
                )
        else:
            reason = (
                f"the CPU is saturated ({(sample.cpu_idle or 0.0) * 100:.0f}% idle) and "
                f"{len(sample.workers)} workers already run on {cpu_count} cores"
            )
        self.held_back = decision.held_back
        self.held_reason = reason
        if now - self._held_logged >= HELD_LOG_INTERVAL:
            self._held_logged = now
            level = logging.WARNING if decision.reason == HELD_BY_MEMORY else logging.INFO
            _log.log(
                level,
                "app %s: not starting %d worker(s): %s",
                self.app,
                decision.held_back,
                reason,
                extra={"app": self.app},
            )
