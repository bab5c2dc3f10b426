"""How one application's pool behaves: ``PoolSettings``, validated once when built.

Its fields are declared with the configuration's settings (``corral.config.settings``, pure),
which this module reads for the defaults and bounds: config stays below supervision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from corral.config.settings import POOL_BY_FIELD
from corral.protocol.fastcgi.constants import MAX_PIPELINE_DEPTH
from corral.supervision.backoff import StartBackoff
from corral.supervision.scaling import ScalingLimits

_MIB = 1024 * 1024

__all__ = ["MAX_PIPELINE_DEPTH", "PoolSettings"]


def _default(name: str) -> object:
    """The pool's default of a declared setting: the declaration's default, in the pool's units."""
    setting = POOL_BY_FIELD[name]
    assert setting.pool is not None
    return setting.pool.convert(setting.default)


def _int(name: str) -> int:
    value = _default(name)
    assert isinstance(value, int)
    return value


def _float(name: str) -> float:
    value = _default(name)
    assert isinstance(value, float)
    return value


def _optional_float(name: str) -> float | None:
    value = _default(name)
    assert value is None or isinstance(value, float)
    return value


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How one application's pool behaves. Times are in seconds.

    Each field but ``backoff`` and ``source_suffixes`` is filled by one declared setting
    (``corral.config.settings.POOL_BY_FIELD``: its spellings, doc, default and bounds, and the
    name ``corral serve --set`` takes); the defaults and the checks below are read from there.
    """

    #: Workers kept once the app has started (0: scale to zero when idle). minInstances.
    min_instances: int = _int("min_instances")
    #: Most workers at once; 0 = as many as CPU cores. maxInstances.
    max_instances: int = _int("max_instances")
    #: Requests one worker serves at once (its threads); one FastCGI connection each.
    connections_per_worker: int = _int("connections_per_worker")
    #: Adaptive concurrency: the most connections (threads) one worker takes, for a worker
    #: that starts threads on demand (``WorkerTraits.elastic``); the pool uses between 1 and
    #: this many, as ``concurrency.decide_capacity`` says. 0: ``connections_per_worker``,
    #: fixed (an explicit setting, or an engine that cannot grow).
    max_threads_per_worker: int = _int("max_threads_per_worker")
    #: Requests that may wait for a worker; beyond that, PoolOverloaded.
    queue_size: int = _int("queue_size")
    #: How long a request may wait for a worker (default of ``acquire(timeout)``).
    queue_timeout: float = _float("queue_timeout")
    #: How long a new worker has to answer the readiness probe.
    start_timeout: float = _float("start_timeout")
    #: Between SIGTERM and SIGKILL when a worker is stopped. gracefulShutdownTimeout.
    graceful_shutdown_timeout: float = _float("graceful_shutdown_timeout")
    #: Idle time after which a worker above the floor is stopped; None = never. idleTimeout.
    idle_timeout: float | None = _optional_float("idle_timeout")
    #: Delays between failed starts (and when the app counts as FAILED).
    backoff: StartBackoff = field(default_factory=StartBackoff)
    #: WORKER_REQUEST_TIMEOUT: seconds a request may hold a worker; past it the request gets
    #: 504 and the worker is replaced (after its stack is logged). None = no limit.
    request_timeout: float | None = _optional_float("request_timeout")
    #: memoryLimit: recycle a worker whose resident memory passes this many MiB; 0 = no limit.
    memory_limit_mb: int = _int("memory_limit_mb")
    #: timeLimit: recycle a worker this many seconds after it became ready; None = never.
    time_limit: float | None = _optional_float("time_limit")
    #: maxRequests: recycle a worker after this many requests (plus jitter); 0 = never.
    max_requests: int = _int("max_requests")
    #: Each worker's request limit is ``max_requests`` plus up to this fraction more, at random.
    max_requests_jitter: float = _float("max_requests_jitter")
    #: memoryReserve: no worker starts while the machine's available memory is below this (MiB).
    memory_reserve_mb: int = _int("memory_reserve_mb")
    #: Seconds between health rounds (machine and worker memory, limits, idle probes).
    health_interval: float = _float("health_interval")
    #: An idle worker not used or probed for this many seconds is probed.
    probe_interval: float = _float("probe_interval")
    #: Seconds an idle worker has to answer the health probe before it is replaced.
    probe_timeout: float = _float("probe_timeout")
    #: Suffixes of the application's files (under the plan's folder) whose change lets a failed
    #: application try to start again at once.
    source_suffixes: tuple[str, ...] = (".py",)
    #: pipelineDepth: when every worker is busy, up to this many requests without a body go to
    #: one worker's connection at once, queued behind the one it serves, for workers that
    #: accept it (Corral's own: ``CORRAL_PIPELINE``), as deep as ``scaling.queue_depth``
    #: allows for the app's service time; 1 = one at a time (no queueing).
    pipeline_depth: int = _int("pipeline_depth")

    def __post_init__(self) -> None:
        for item in fields(self):
            setting = POOL_BY_FIELD.get(item.name)
            if setting is not None and setting.pool is not None:
                setting.pool.check(getattr(self, item.name))
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
