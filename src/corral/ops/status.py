"""The status of a running Corral: one typed document, built from every pool's ``snapshot()``,
its controller's phase and its route's request counters.

Read by ``corral status`` (through the control socket), ``/metrics`` and the dashboard: all three
show the same figures from the same document. ``HostStatus.to_json()`` is the stable, versioned
schema that ``corral status --json`` prints (``docs/operating.md`` documents every field): a new
field may be added within a version, nothing is renamed or removed without a new one.

Pure: no I/O, no clock of its own (``now`` is passed in).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Final

from corral.config.model import AppConfig
from corral.front.stats import STATUS_CLASSES, RequestStats
from corral.ops.history import History
from corral.runtime.policy import Phase
from corral.supervision.snapshot import PoolSnapshot

#: The version of ``to_json()``'s schema.
SCHEMA: Final = 1

#: Seconds over which status shows the request rate, the mean and the p99 duration.
WINDOW: Final = 60.0

#: An application's state, as status shows it.
DORMANT: Final = "dormant"  # no worker (none started yet, or stopped when idle)
STARTING: Final = "starting"  # workers are starting; none is ready yet
SERVING: Final = "serving"
DEPLOYING: Final = "deploying"  # its deploy script runs
FAILED: Final = "failed"  # cannot start (or its deploy script failed): see ``reason``
STOPPING: Final = "stopping"

_READY_STATES = frozenset({"idle", "busy", "probing"})


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    id: int
    pid: int | None
    #: "starting", "idle", "probing", "busy", "draining", "hung", "stopping", "lost".
    state: str
    #: Seconds since it became ready (None while starting).
    age: float | None
    requests: int
    in_flight: int
    rss_mb: float | None
    cpu_seconds: float | None
    #: Why it is being retired, if it is.
    retiring: str | None
    generation: int


@dataclass(frozen=True, slots=True)
class ExitStatus:
    pid: int | None
    #: "exited with code 1", "killed by signal 9"...
    reason: str
    #: The host stopped it (idle, recycled, restarted); False: it crashed.
    expected: bool
    seconds_ago: float
    retired_for: str | None


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One server of a service application (``tcp.service`` with ``servers``)."""

    address: str
    #: "up", "down" or "slow-start".
    state: str
    in_flight: int
    requests: int
    #: Connections refused, resets, 5xx to idempotent requests, failed health checks.
    failures: int
    #: Its share of requests (0..1: below 1 in slow start, 0 when down).
    weight: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class RequestFigures:
    """An application's requests: totals since it started, and the last ``WINDOW`` seconds."""

    total: int
    #: Totals by status class: "1xx".."5xx", and "other" (cut short before a response).
    by_class: dict[str, int]
    window_seconds: float
    #: Over the window: requests per second, mean and 99th percentile duration (seconds).
    rate: float
    mean: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class AppStatus:
    #: How commands name it: "NAME", or "SITE/NAME" where two sites use the same name.
    id: str
    name: str
    site: str
    virtual_path: str
    engine: str
    #: ``DORMANT``, ``STARTING``, ``SERVING``, ``DEPLOYING``, ``FAILED``, ``STOPPING``.
    state: str
    #: Why it is failed or dormant, when there is something to say.
    reason: str | None
    #: Seconds until the next start is tried (a failed application), if one is planned.
    retry_in: float | None
    min_workers: int
    max_workers: int
    workers: tuple[WorkerStatus, ...]
    #: Requests not yet begun: in the pool's queue plus queued on busy workers' connections.
    queue_length: int
    #: Seconds the oldest request in the queue has waited.
    oldest_wait: float
    in_flight: int
    #: The pool's smoothed arrival rate (requests/s) and service time (seconds a request holds
    #: a worker), as its scaling policy sees them.
    arrival_rate: float
    service_time: float | None
    requests: RequestFigures
    #: Rolling restarts done; workers retired for a limit; crashes; failed starts (all since
    #: the application started), and the last start error.
    restarts: int
    recycled: int
    crashed: int
    failed_starts: int
    last_error: str | None
    last_exits: tuple[ExitStatus, ...]
    #: The deploy script's phase ("serving", "deploy needed", "deploying", "deploy failed"),
    #: None without a deploy script; the last run, described.
    deploy_phase: str | None
    last_deploy: str | None
    #: Deploy script runs since the application started, and how many of them failed.
    deploy_runs: int = 0
    deploy_failures: int = 0
    #: Connections (requests at once) per worker: fixed, or, up to ``thread_ceiling`` (0: not
    #: adaptive), the concurrency policy's; the CPU seconds a request costs the workers.
    capacity: int = 0
    thread_ceiling: int = 0
    cpu_per_request: float | None = None
    #: ``recycled`` by the limit that retired them: memory, age, requests, request_timeout,
    #: health_probe, other (``supervision.snapshot.RECYCLE_KINDS``).
    recycled_for: dict[str, int] = field(default_factory=dict)
    #: The process its workers are forked from (preloaded workers), while one runs.
    template_pid: int | None = None
    #: A service application's servers (``tcp.service``): empty for an app with workers.
    servers: tuple[ServerStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class FrontStatus:
    connections_open: int
    connections_opened: int
    #: Requests refused before reaching an application, by status code.
    protocol_errors: dict[str, int]
    #: The front processes' pids (``front_processes`` > 1); empty: this process is the front.
    processes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HostStatus:
    schema: int
    version: str
    pid: int
    #: The site folder or server file being served.
    config: str
    #: Wall-clock start (seconds since the epoch) and seconds since.
    started: float
    uptime: float
    #: "starting", "serving", "reloading", "stopping".
    state: str
    #: The addresses listened on, as URLs.
    listening: tuple[str, ...]
    front: FrontStatus
    apps: tuple[AppStatus, ...]

    def to_json(self) -> dict[str, object]:
        """The document ``corral status --json`` prints (schema ``SCHEMA``)."""
        return asdict(self)

    def app(self, ident: str) -> AppStatus | None:
        for app in self.apps:
            if app.id == ident:
                return app
        return None


def app_state(
    snapshot: PoolSnapshot, phase: Phase | None, service: bool = False
) -> tuple[str, str | None]:
    """The state status shows for an application, and why (for a failed or dormant one).
    ``service``: a server Corral does not start (``tcp.service``): serving unless stopping;
    its last connection error, if any, is the reason shown."""
    if phase is Phase.DEPLOYING:
        return DEPLOYING, None
    if phase is Phase.FAILED:
        return FAILED, "its deploy script failed"
    if phase is Phase.DEPLOY_NEEDED:
        return DORMANT, "its deploy script runs on the first request"
    pool = snapshot.state
    if pool in ("closing", "stopping"):
        return STOPPING, None
    if service:
        return SERVING, snapshot.last_error
    if pool in ("failed", "backoff"):
        return FAILED, snapshot.last_error or "it cannot start"
    if any(worker.state in _READY_STATES for worker in snapshot.workers):
        return SERVING, None
    if any(worker.state == "starting" for worker in snapshot.workers):
        return STARTING, None
    return DORMANT, None


def app_ids(names: list[tuple[str, str]]) -> list[str]:
    """How commands name each application of ``(site, name)``: its name, or ``SITE/NAME``
    where another site has an application of the same name."""
    count: dict[str, int] = {}
    for _, name in names:
        count[name] = count.get(name, 0) + 1
    return [name if count[name] == 1 else f"{site}/{name}" for site, name in names]


def find_app(ident: str, apps: list[tuple[str, str]]) -> int:
    """The index in ``apps`` (``(site, name)``) of the application ``ident`` names: ``NAME``
    (when one site only has it) or ``SITE/NAME``. ``LookupError`` says what exists."""
    ids = app_ids(apps)
    if ident in ids:
        return ids.index(ident)
    site, slash, name = ident.rpartition("/")
    if slash:
        for index, (app_site, app_name) in enumerate(apps):
            if (app_site, app_name) == (site, name):
                return index
    elif sum(1 for _, app_name in apps if app_name == ident) > 1:
        sites = ", ".join(f"{s}/{n}" for s, n in apps if n == ident)
        raise LookupError(f"{ident!r} names an application in several sites: say which ({sites})")
    known = ", ".join(ids) or "none"
    raise LookupError(f"no application {ident!r} (applications: {known})")


def request_figures(
    key: str, stats: RequestStats, history: History, now: float, window: float = WINDOW
) -> RequestFigures:
    recent = history.window(key, window, stats, now)
    return RequestFigures(
        total=stats.count,
        by_class={name: count for name, count in zip(STATUS_CLASSES, stats.by_class, strict=True)},
        window_seconds=round(recent.seconds, 3),
        rate=round(recent.rate, 3),
        mean=None if recent.mean is None else round(recent.mean, 6),
        p99=None if recent.p99 is None else round(recent.p99, 6),
    )


def worker_status(snapshot: PoolSnapshot) -> tuple[WorkerStatus, ...]:
    return tuple(
        WorkerStatus(
            id=w.worker_id,
            pid=w.pid,
            state=w.state,
            age=w.age,
            requests=w.requests_served,
            in_flight=w.active,
            rss_mb=w.memory_mb,
            cpu_seconds=None if w.cpu_time is None else round(w.cpu_time, 3),
            retiring=w.retiring,
            generation=w.generation,
        )
        for w in snapshot.workers
    )


def exit_status(snapshot: PoolSnapshot) -> tuple[ExitStatus, ...]:
    return tuple(
        ExitStatus(e.pid, e.reason, e.expected, e.at, e.retired_for) for e in snapshot.exits
    )


def build_app_status(
    ident: str,
    config: AppConfig,
    snapshot: PoolSnapshot,
    stats: RequestStats,
    history: History,
    now: float,
    *,
    phase: Phase | None = None,
    last_deploy: str | None = None,
    service: bool = False,
    deploys: tuple[int, int] = (0, 0),
) -> AppStatus:
    state, reason = app_state(snapshot, phase, service)
    return AppStatus(
        id=ident,
        name=config.name,
        site=config.site,
        virtual_path=config.virtual_path,
        engine=config.engine.name,
        state=state,
        reason=reason,
        retry_in=None if snapshot.retry_in is None else round(snapshot.retry_in, 1),
        min_workers=snapshot.min_instances,
        max_workers=snapshot.max_instances,
        workers=worker_status(snapshot),
        queue_length=snapshot.queue_length,
        oldest_wait=round(snapshot.oldest_wait, 3),
        in_flight=snapshot.in_flight,
        arrival_rate=snapshot.arrival_rate,
        service_time=None if snapshot.service_time is None else round(snapshot.service_time, 6),
        requests=request_figures(ident, stats, history, now),
        restarts=snapshot.restarts,
        recycled=snapshot.recycled,
        crashed=snapshot.crashed,
        failed_starts=snapshot.failed_starts,
        last_error=snapshot.last_error,
        last_exits=exit_status(snapshot),
        deploy_phase=None if phase is None else phase.value,
        last_deploy=last_deploy,
        deploy_runs=deploys[0],
        deploy_failures=deploys[1],
        recycled_for=dict(snapshot.recycled_for),
        template_pid=snapshot.template_pid,
        capacity=snapshot.capacity,
        thread_ceiling=snapshot.thread_ceiling,
        cpu_per_request=None
        if snapshot.cpu_per_request is None
        else round(snapshot.cpu_per_request, 6),
        servers=tuple(
            ServerStatus(
                s.address, s.state, s.in_flight, s.requests, s.failures, s.weight, s.last_error
            )
            for s in snapshot.servers
        ),
    )
