"""What a pool shows of itself: ``Pool.snapshot()`` -> ``PoolSnapshot``, plain frozen data.

Read by the status page, and by the coming status command, metrics endpoint and dashboard: every
figure an operator needs about one application's workers, its queue, its load and its failures.
Times are seconds; memory is MiB. Nothing here refers back to the live pool.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker process."""

    #: The pool's id for it (``%INSTANCE_ID%``), and its process id (None before it spawned).
    worker_id: int
    pid: int | None
    #: ``lifecycle.WorkerState`` value: "starting", "idle", "probing", "busy", "draining",
    #: "hung", "stopping", "lost".
    state: str
    #: Requests in flight on it now (including those queued on its connections).
    active: int
    #: Requests it has served since it started.
    requests_served: int
    #: Where it listens (a Unix socket path, or "host:port").
    address: str | None
    #: Resident memory at the last health round, in MiB (None before the first).
    memory_mb: float | None = None
    #: Seconds since it became ready (None while starting).
    age: float | None = None
    #: Why it is being retired, if it is.
    retiring: str | None = None
    #: CPU time it used (user + system, seconds) at the last health round.
    cpu_time: float | None = None
    #: The rolling-restart generation it belongs to.
    generation: int = 0


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """A worker that ended after it was ready (the last few are kept)."""

    worker_id: int
    pid: int | None
    #: "exited with code 0", "killed by signal 9"...
    reason: str
    #: The host stopped it (idle, retired, closing); False: it crashed.
    expected: bool
    #: When (the pool's clock; ``PoolSnapshot.exits`` gives seconds ago instead).
    at: float
    #: Why it was retired, if it was.
    retired_for: str | None = None


@dataclass(frozen=True, slots=True)
class ServerSnapshot:
    """One server of a service (``tcp.service``; ``ServicePool.servers``)."""

    #: "host:port" or "unix:/path".
    address: str
    #: ``balance.ServerState`` value: "up", "down", "slow-start".
    state: str
    #: Requests on it now, requests given to it, failures seen (connections refused, resets,
    #: 5xx to idempotent requests, failed health checks).
    in_flight: int
    requests: int
    failures: int
    #: Its share while in slow start (0..1; 0 when down).
    weight: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One application's pool."""

    app: str
    workers: tuple[WorkerInfo, ...]
    #: Requests waiting for a worker in the pool's queue.
    waiting: int
    #: Leases out (requests being served, or queued on a busy connection).
    in_flight: int
    #: Consecutive failed starts, and the last reason (with its stderr tail).
    start_failures: int
    last_error: str | None
    closing: bool
    #: The bounds in force (``max_instances == 0`` already resolved to the CPU count).
    min_instances: int
    max_instances: int
    #: ``lifecycle.PoolState`` value: "dormant" (nothing started yet, or scaled to zero),
    #: "running", "stopping" (stop_workers), "backoff" (the app failed to start; retried in
    #: ``retry_in`` s), "failed" (gave up: retried when its files change or after the backoff
    #: ceiling), "closing".
    state: str = "running"
    retry_in: float | None = None
    #: Requests queued on busy workers' connections, not yet begun (pipelining; not counted in
    #: ``waiting``).
    queued: int = 0
    #: Seconds the oldest waiting request has waited.
    oldest_wait: float = 0.0
    #: Recent requests per second, and seconds a request holds a worker (smoothed).
    arrival_rate: float = 0.0
    service_time: float | None = None
    #: Recent seconds from spawn to ready (smoothed).
    spawn_time: float | None = None
    #: The machine at the last sample: available memory (MiB) and idle CPU (0..1).
    free_memory_mb: float | None = None
    cpu_idle: float | None = None
    #: Starts the policy wanted but held back, and why ("free memory 40 MiB is below...").
    held_back: int = 0
    held_reason: str | None = None
    #: Connections one worker takes at once (connections_per_worker, or its FCGI_MAX_CONNS;
    #: for elastic workers, the concurrency policy's choice up to ``thread_ceiling``).
    capacity: int = 0
    #: Elastic workers: the most connections (threads) one takes; 0: not elastic (fixed).
    thread_ceiling: int = 0
    #: Elastic workers: the CPU seconds they burn per request (smoothed; None: not measured).
    cpu_per_request: float | None = None
    #: Rolling restarts completed; workers retired for a limit (memory, time, requests, the
    #: request timeout, a failed health probe); workers that crashed.
    restarts: int = 0
    recycled: int = 0
    crashed: int = 0
    #: The last workers that ended, oldest first (``at``: seconds ago).
    exits: tuple[ExitInfo, ...] = ()
    #: Every request not yet begun: ``waiting`` in the queue plus ``queued`` on connections.
    queue_length: int = 0
    #: Failed starts since the pool was made (``start_failures`` counts the consecutive ones).
    failed_starts: int = 0
    #: ``recycled`` by the limit that retired them (``RECYCLE_KINDS``), each kind listed.
    recycled_for: tuple[tuple[str, int], ...] = ()
    #: The template its workers are forked from (preloaded workers), while one runs.
    template_pid: int | None = None
    #: A service's servers (``tcp.service``); empty for a pool of workers.
    servers: tuple[ServerSnapshot, ...] = ()


#: Why workers are recycled: the limit (a Zoo setting, named in the reason) or the check.
RECYCLE_KINDS = ("memory", "age", "requests", "request_timeout", "health_probe", "other")
_RECYCLE_TAGS = (
    ("(memoryLimit)", "memory"),
    ("(timeLimit)", "age"),
    ("(maxRequests)", "requests"),
    ("request timeout", "request_timeout"),
    ("health probe", "health_probe"),
)


def recycle_kind(why: str) -> str:
    """The ``RECYCLE_KINDS`` entry for a recycled worker's reason (``Worker.retiring``): the
    reasons the health monitor and the pool write name their limit's setting."""
    for tag, kind in _RECYCLE_TAGS:
        if tag in why:
            return kind
    return "other"
