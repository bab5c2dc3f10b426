"""``/readyz``'s rules and ``/metrics``' families, from a status document."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from tests.unit.ops.fakehost import FakeHost, app, worker

from corral.front.stats import DURATION_BOUNDS
from corral.ops.metrics import Metrics
from corral.ops.readiness import readiness
from corral.ops.status import DEPLOYING, DORMANT, FAILED, STARTING


def test_ready_when_serving_and_every_app_is_as_it_must_be() -> None:
    host = FakeHost(apps=[app("a"), app("b", state=DORMANT, workers=())])
    assert readiness(host.status()).ready  # a dormant app starts on its first request
    host.apps.append(app("c", state=STARTING, min_workers=0))
    assert readiness(host.status()).ready  # no floor: it starts on demand


def test_not_ready_names_each_app_and_the_host_state() -> None:
    host = FakeHost(
        apps=[
            app("a", state=FAILED, reason="it cannot start\nTraceback..."),
            app("b", state=STARTING, min_workers=2),
            app("c", state=DEPLOYING),
            app("d"),
        ],
        state="stopping",
    )
    result = readiness(host.status())
    assert not result.ready
    assert result.reasons == (
        "corral is stopping",
        "app a: failed: it cannot start",
        "app b: starting, no ready worker yet (it keeps 2)",
        "app c: deploying, no ready worker yet (it keeps 1)",
    )
    assert result.body().startswith(b"not ready\ncorral is stopping\n")
    host.state = "starting"
    host.apps = [app("d")]
    assert readiness(host.status()).reasons == ("corral is starting",)
    host.state = "reloading"
    assert readiness(host.status()).ready


def _families(host: FakeHost) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = Metrics(host).render().decode()  # type: ignore[arg-type]
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def test_metrics_read_the_live_counters_at_scrape_time() -> None:
    host = FakeHost(apps=[app("hello", workers=(worker(1, 11, "busy"), worker(2, 12, "idle")))])
    first = _families(host)
    assert ("corral_app_requests_total", {"app": "hello", "site": "default", "code": "2xx"}, 0) in (
        first["corral_app_requests"]
    )
    stats = host.stats["hello"]
    stats.record(200, 0.003, 100, 10)
    stats.record(503, 0.2, 50, 5)
    stats.record(200, 99.0, 1, 1)
    again = _families(host)
    labels = {"app": "hello", "site": "default"}
    by_code = {s[1]["code"]: s[2] for s in again["corral_app_requests"]}
    assert by_code["2xx"] == 2 and by_code["5xx"] == 1 and by_code["4xx"] == 0
    buckets = {
        s[1]["le"]: s[2]
        for s in again["corral_app_request_duration_seconds"]
        if s[0].endswith("_bucket")
    }
    assert len(buckets) == len(DURATION_BOUNDS) + 1
    assert buckets["0.005"] == 1 and buckets["0.25"] == 2 and buckets["60"] == 2
    assert buckets["+Inf"] == 3
    count = [s for s in again["corral_app_request_duration_seconds"] if s[0].endswith("_count")]
    assert count == [("corral_app_request_duration_seconds_count", labels, 3.0)]
    workers = {s[1]["state"]: s[2] for s in again["corral_app_workers"]}
    assert workers["busy"] == 1 and workers["idle"] == 1 and workers["hung"] == 0
    limits = {s[1]["limit"]: s[2] for s in again["corral_app_recycled"]}
    assert limits == {
        "memory": 2,
        "age": 0,
        "requests": 0,
        "request_timeout": 0,
        "health_probe": 0,
        "other": 0,
    }
    reasons = {s[1]["reason"]: s[2] for s in again["corral_app_restarts"]}
    assert reasons == {"crash": 3, "recycled": 2, "rolling": 1, "failed_start": 4}
    rss = again["corral_worker_rss_bytes"]
    assert ("corral_worker_rss_bytes", {**labels, "worker": "1", "pid": "11"}, 31.5 * 2**20) in rss
    sent = {s[1]["direction"]: s[2] for s in again["corral_front_bytes"]}
    assert sent == {"received": 16, "sent": 151}
    assert again["corral_ready"] == [("corral_ready", {}, 1.0)]
    assert "process_cpu_seconds" in again  # the host process's own figures


def test_deploy_runs_only_for_apps_with_a_deploy_script() -> None:
    host = FakeHost(
        apps=[app("a"), app("b", deploy_phase="serving", deploy_runs=3, deploy_failures=1)]
    )
    runs = _families(host)["corral_app_deploy_runs"]
    assert sorted((s[1]["app"], s[1]["outcome"], s[2]) for s in runs) == [
        ("b", "failed", 1.0),
        ("b", "ok", 2.0),
    ]


def test_each_recycle_reason_the_supervisor_writes_has_its_kind() -> None:
    from corral.supervision.snapshot import recycle_kind

    assert recycle_kind("memory 75 MiB is above the limit of 60 MiB (memoryLimit)") == "memory"
    assert recycle_kind("ran 1.0 min (timeLimit)") == "age"
    assert recycle_kind("served 5 requests (maxRequests)") == "requests"
    assert recycle_kind("a request ran past the request timeout") == "request_timeout"
    assert recycle_kind("it did not answer the health probe") == "health_probe"
    assert recycle_kind("scaled down to 1") == "other"
