"""``/metrics``: the host's figures in the Prometheus text exposition format.

A ``prometheus_client`` collector (``HostCollector``) that reads the status document and the
live request counters when Prometheus scrapes, and only then: nothing is updated on the request
path (the front's counters are plain integers, ``front.stats``). ``render`` gives the body of
one scrape, with the host process's own figures (``process_*``: CPU, memory, open files) from
``prometheus_client``'s process collector.

Every application's series carry the labels ``app`` (its status id: ``NAME`` or ``SITE/NAME``)
and ``site``; ``docs/operating.md`` lists every metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from corral.front.stats import DURATION_BOUNDS, STATUS_CLASSES, RequestStats
from corral.ops.hostview import AdminHost
from corral.ops.readiness import readiness
from corral.ops.status import (
    DEPLOYING,
    DORMANT,
    FAILED,
    SERVING,
    STARTING,
    STOPPING,
    AppStatus,
    FrontStatus,
)
from corral.supervision.snapshot import RECYCLE_KINDS

#: The classic text format (every name here is a legacy-valid one, so the body is the same in
#: 0.0.4 and 1.0.0): what every Prometheus version reads.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Every worker state (``supervision.lifecycle.WorkerState``): each gets a series, 0 when no
#: worker is in it, so that a state appearing is a change of value, not a new series.
WORKER_STATES: Final = (
    "starting",
    "idle",
    "probing",
    "busy",
    "draining",
    "hung",
    "stopping",
    "lost",
)
APP_STATES: Final = (DORMANT, STARTING, SERVING, DEPLOYING, FAILED, STOPPING)
HOST_STATES: Final = ("starting", "serving", "reloading", "stopping")
_BOUNDS: Final = tuple(f"{bound:g}" for bound in DURATION_BOUNDS)
_LABELS: Final = ["app", "site"]


def _counter(name: str, doc: str, extra: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=[*_LABELS, *extra])


def _gauge(name: str, doc: str, extra: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=[*_LABELS, *extra])


class HostCollector(Collector):
    """Reads ``host`` at each scrape."""

    def __init__(self, host: AdminHost) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        host = self._host
        status = host.status()
        live = host.request_stats()
        info = InfoMetricFamily("corral", "The running Corral.", labels=["version"])
        info.add_metric([status.version], {"config": status.config})
        yield info
        state = GaugeMetricFamily(
            "corral_state", "1 for the host's state, 0 for the others.", labels=["state"]
        )
        for name in HOST_STATES:
            state.add_metric([name], 1.0 if status.state == name else 0.0)
        yield state
        yield GaugeMetricFamily(
            "corral_ready",
            "1 when /readyz answers 200 (serving, every application as it must be).",
            value=1.0 if readiness(status).ready else 0.0,
        )
        yield GaugeMetricFamily(
            "corral_start_time_seconds", "When Corral started (Unix time).", value=status.started
        )
        yield from _app_metrics(status.apps, live)
        yield from self._front_metrics(status.front, live.values())

    def _front_metrics(self, status: FrontStatus, apps: Iterable[RequestStats]) -> Iterator[Metric]:
        stats = self._host.front_stats()
        opened = GaugeMetricFamily("corral_front_connections_open", "Client connections open now.")
        total = CounterMetricFamily(
            "corral_front_connections", "Client connections accepted since start."
        )
        errors = CounterMetricFamily(
            "corral_front_protocol_errors",
            "Requests refused before reaching an application (bad request, timeouts, limits), "
            "by the status answered.",
            labels=["status"],
        )
        unrouted = CounterMetricFamily(
            "corral_front_unrouted_requests",
            "Requests that ended without reaching an application or a static folder.",
        )
        moved = CounterMetricFamily(
            "corral_front_bytes",
            "Bytes of requests received and responses sent (bodies and heads as counted per "
            "request), every application and unrouted request together.",
            labels=["direction"],
        )
        if stats is not None:
            opened.add_metric([], float(status.connections_open))
            total.add_metric([], float(stats.connections_opened))
            for code, count in sorted(stats.protocol_errors.items()):
                errors.add_metric([str(code)], float(count))
            unrouted.add_metric([], float(stats.unrouted.count))
            every = [*apps, stats.unrouted]
            moved.add_metric(["received"], float(sum(s.bytes_received for s in every)))
            moved.add_metric(["sent"], float(sum(s.bytes_sent for s in every)))
        yield from (opened, total, errors, unrouted, moved)


def _app_metrics(apps: Iterable[AppStatus], live: Mapping[str, RequestStats]) -> Iterator[Metric]:
    requests = _counter(
        "corral_app_requests", "Requests answered, by status class (other: cut short).", ["code"]
    )
    duration = HistogramMetricFamily(
        "corral_app_request_duration_seconds",
        "Seconds from the request head received to the response sent.",
        labels=_LABELS,
    )
    moved = _counter("corral_app_bytes", "Request and response bytes.", ["direction"])
    state = _gauge(
        "corral_app_state", "1 for the application's state, 0 for the others.", ["state"]
    )
    workers = _gauge("corral_app_workers", "Worker processes by state.", ["state"])
    bounds = _gauge("corral_app_workers_limit", "The worker bounds in force.", ["bound"])
    queue = _gauge(
        "corral_app_queue_length",
        "Requests waiting for a worker (the pool's queue and busy workers' connections).",
    )
    wait = _gauge(
        "corral_app_queue_oldest_wait_seconds", "Seconds the oldest waiting request has waited."
    )
    in_flight = _gauge("corral_app_in_flight", "Requests being served now.")
    service = _gauge(
        "corral_app_service_time_seconds",
        "Smoothed seconds a request holds a worker (the scaling policy's figure).",
    )
    restarts = _counter(
        "corral_app_restarts",
        "Worker restarts by reason: crash (ended by itself), recycled (retired for a limit: "
        "memory, age, requests, request timeout, failed health probe), rolling (rolling "
        "restarts done: restart.txt, corral restart, a file change), failed_start (a worker that "
        "could not start).",
        ["reason"],
    )
    deploys = _counter("corral_app_deploy_runs", "Deploy script runs by outcome.", ["outcome"])
    recycled = _counter(
        "corral_app_recycled",
        "Workers recycled, by the limit that retired them (memory, age, requests, "
        "request_timeout, health_probe, other); their sum is restarts{reason=recycled}.",
        ["limit"],
    )
    rss = _gauge("corral_worker_rss_bytes", "A worker's resident memory.", ["worker", "pid"])
    cpu = _counter(
        "corral_worker_cpu_seconds", "A worker's CPU time (user + system).", ["worker", "pid"]
    )
    served = _counter("corral_worker_requests", "Requests a worker has served.", ["worker", "pid"])
    for app in apps:
        labels = [app.id, app.site]
        stats = live.get(app.id)
        if stats is not None:
            for name, count in zip(STATUS_CLASSES, stats.by_class, strict=True):
                requests.add_metric([*labels, name], float(count))
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(_BOUNDS, stats.buckets, strict=False):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            buckets.append(("+Inf", float(stats.count)))
            duration.add_metric(labels, buckets, stats.duration_sum)
            moved.add_metric([*labels, "received"], float(stats.bytes_received))
            moved.add_metric([*labels, "sent"], float(stats.bytes_sent))
        for name in APP_STATES:
            state.add_metric([*labels, name], 1.0 if app.state == name else 0.0)
        by_state = dict.fromkeys(WORKER_STATES, 0)
        for worker in app.workers:
            by_state[worker.state] = by_state.get(worker.state, 0) + 1
            ident = [*labels, str(worker.id), "" if worker.pid is None else str(worker.pid)]
            if worker.rss_mb is not None:
                rss.add_metric(ident, worker.rss_mb * 1024 * 1024)
            if worker.cpu_seconds is not None:
                cpu.add_metric(ident, worker.cpu_seconds)
            served.add_metric(ident, float(worker.requests))
        for name, count in by_state.items():
            workers.add_metric([*labels, name], float(count))
        bounds.add_metric([*labels, "min"], float(app.min_workers))
        bounds.add_metric([*labels, "max"], float(app.max_workers))
        queue.add_metric(labels, float(app.queue_length))
        wait.add_metric(labels, app.oldest_wait)
        in_flight.add_metric(labels, float(app.in_flight))
        if app.service_time is not None:
            service.add_metric(labels, app.service_time)
        restarts.add_metric([*labels, "crash"], float(app.crashed))
        restarts.add_metric([*labels, "recycled"], float(app.recycled))
        restarts.add_metric([*labels, "rolling"], float(app.restarts))
        restarts.add_metric([*labels, "failed_start"], float(app.failed_starts))
        for limit in RECYCLE_KINDS:
            recycled.add_metric([*labels, limit], float(app.recycled_for.get(limit, 0)))
        if app.deploy_phase is not None:
            deploys.add_metric([*labels, "ok"], float(app.deploy_runs - app.deploy_failures))
            deploys.add_metric([*labels, "failed"], float(app.deploy_failures))
    yield from (requests, duration, moved, state, workers, bounds, queue, wait, in_flight)
    yield from (service, restarts, recycled, deploys, rss, cpu, served)


class Metrics:
    """One registry per host: its collector and the host process's own figures."""

    def __init__(self, host: AdminHost) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HostCollector(host))
        self.registry.register(ProcessCollector(registry=None))

    def render(self) -> bytes:
        """The body of one scrape (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
