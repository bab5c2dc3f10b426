"""How one application's pool behaves: ``PoolSettings``, validated once when built."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from corral.protocol.fastcgi.constants import MAX_PIPELINE_DEPTH
from corral.supervision.backoff import StartBackoff
from corral.supervision.scaling import ScalingLimits

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How one application's pool behaves. Times are in seconds."""

    #: Workers kept once the app has started (0: scale to zero when idle).
    min_instances: int = 1
    #: Most workers at once; 0 = as many as CPU cores.
    max_instances: int = 0
    #: Requests one worker serves at once (its threads); one FastCGI connection each.
    connections_per_worker: int = 1
    #: Requests that may wait for a worker; beyond that, PoolOverloaded.
    queue_size: int = 100
    #: How long a request may wait for a worker (default of ``acquire(timeout)``).
    queue_timeout: float = 30.0
    #: How long a new worker has to answer the readiness probe.
    start_timeout: float = 30.0
    #: Between SIGTERM and SIGKILL when a worker is stopped.
    graceful_shutdown_timeout: float = 10.0
    #: Idle time after which a worker above the floor is stopped; None = never.
    idle_timeout: float | None = 300.0
    #: Delays between failed starts (and when the app counts as FAILED).
    backoff: StartBackoff = field(default_factory=StartBackoff)
    #: WORKER_REQUEST_TIMEOUT: seconds a request may hold a worker; past it the request gets
    #: 504 and the worker is replaced (after its stack is logged). None = no limit.
    request_timeout: float | None = None
    #: memoryLimit: recycle a worker whose resident memory passes this many MiB; 0 = no limit.
    memory_limit_mb: int = 0
    #: timeLimit: recycle a worker this many seconds after it became ready; None = never.
    time_limit: float | None = None
    #: maxRequests: recycle a worker after this many requests (plus jitter); 0 = never.
    max_requests: int = 0
    #: Each worker's request limit is ``max_requests`` plus up to this fraction more, at random.
    max_requests_jitter: float = 0.1
    #: memoryReserve: no worker starts while the machine's available memory is below this (MiB).
    memory_reserve_mb: int = 64
    #: Seconds between health rounds (machine and worker memory, limits, idle probes).
    health_interval: float = 5.0
    #: An idle worker not used or probed for this many seconds is probed.
    probe_interval: float = 30.0
    #: Seconds an idle worker has to answer the health probe before it is replaced.
    probe_timeout: float = 10.0
    #: Suffixes of the application's files (under the plan's folder) whose change lets a failed
    #: application try to start again at once.
    source_suffixes: tuple[str, ...] = (".py",)
    #: pipelineDepth: when every worker is busy, up to this many requests without a body go to
    #: one worker's connection at once, queued behind the one it serves, for workers that
    #: accept it (Corral's own: ``CORRAL_PIPELINE``), as deep as ``scaling.queue_depth``
    #: allows for the app's service time; 1 = one at a time (no queueing).
    pipeline_depth: int = MAX_PIPELINE_DEPTH

    def __post_init__(self) -> None:
        for name in (
            "min_instances",
            "max_instances",
            "queue_size",
            "memory_limit_mb",
            "max_requests",
            "memory_reserve_mb",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not 1 <= self.pipeline_depth <= MAX_PIPELINE_DEPTH:
            raise ValueError(
                f"pipeline_depth must be between 1 and {MAX_PIPELINE_DEPTH}, "
                f"not {self.pipeline_depth}"
            )
        if self.connections_per_worker < 1:
            raise ValueError(
                f"connections_per_worker must be >= 1, not {self.connections_per_worker}"
            )
        for name in ("queue_timeout", "start_timeout", "graceful_shutdown_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        if self.idle_timeout is not None and self.idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0 or None, not {self.idle_timeout}")
        for name in ("health_interval", "probe_interval", "probe_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        for name in ("request_timeout", "time_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, not {value}")
        if not 0.0 <= self.max_requests_jitter <= 1.0:
            raise ValueError(
                f"max_requests_jitter must be between 0 and 1, not {self.max_requests_jitter}"
            )
        if 0 < self.max_instances < self.min_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) exceeds max_instances ({self.max_instances})"
            )

    def limits(self) -> ScalingLimits:
        """The policy's limits, with ``max_instances == 0`` resolved to the CPU count."""
        maximum = self.max_instances or max(os.cpu_count() or 1, self.min_instances, 1)
        return ScalingLimits(
            min_instances=self.min_instances,
            max_instances=maximum,
            idle_timeout=self.idle_timeout,
            capacity=self.connections_per_worker,
            memory_reserve=self.memory_reserve_mb * _MIB,
            cpu_count=os.cpu_count() or 1,
        )
