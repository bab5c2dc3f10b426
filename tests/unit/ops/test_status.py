"""The status document (``ops/status.py``): an application's state from its pool and deploy
phase, how commands name applications, and the JSON schema's shape."""

from __future__ import annotations

import json

import pytest

from corral.config.builtin_engines import PYTHON, built_in
from corral.config.model import AppConfig
from corral.front.stats import RequestStats
from corral.ops.history import History
from corral.ops.status import (
    DEPLOYING,
    DORMANT,
    FAILED,
    SERVING,
    STARTING,
    STOPPING,
    FrontStatus,
    HostStatus,
    app_ids,
    app_state,
    build_app_status,
    find_app,
)
from corral.runtime.policy import Phase
from corral.supervision.snapshot import ExitInfo, PoolSnapshot, WorkerInfo


def snapshot(*states: str, pool: str = "running", error: str | None = None) -> PoolSnapshot:
    workers = tuple(
        WorkerInfo(i, 100 + i, state, 0, 3, "/tmp/s", 12.5, 4.0, None, 0.25)
        for i, state in enumerate(states, 1)
    )
    return PoolSnapshot(
        app="site:/:blog",
        workers=workers,
        waiting=2,
        in_flight=1,
        start_failures=0,
        last_error=error,
        closing=False,
        min_instances=0,
        max_instances=4,
        state=pool,
        queue_length=2,
        restarts=1,
        crashed=1,
        failed_starts=2,
        exits=(ExitInfo(9, 99, "killed by signal 9", False, 3.5),),
    )


@pytest.mark.parametrize(
    ("snap", "phase", "state"),
    [
        (snapshot(), None, DORMANT),
        (snapshot(pool="dormant"), None, DORMANT),
        (snapshot("starting"), None, STARTING),
        (snapshot("starting", "idle"), None, SERVING),
        (snapshot("busy"), Phase.SERVING, SERVING),
        (snapshot("probing"), None, SERVING),
        (snapshot("draining"), None, DORMANT),
        (snapshot(pool="backoff", error="exit 3"), None, FAILED),
        (snapshot(pool="failed"), None, FAILED),
        (snapshot("idle", pool="closing"), None, STOPPING),
        (snapshot(), Phase.DEPLOYING, DEPLOYING),
        (snapshot(), Phase.FAILED, FAILED),
        (snapshot(), Phase.DEPLOY_NEEDED, DORMANT),
    ],
)
def test_an_apps_state_comes_from_its_pool_and_its_deploy_phase(
    snap: PoolSnapshot, phase: Phase | None, state: str
) -> None:
    assert app_state(snap, phase)[0] == state


def test_a_failed_app_says_why_and_a_service_is_serving_with_its_last_error() -> None:
    assert app_state(snapshot(pool="backoff", error="exit 3"), None) == (FAILED, "exit 3")
    assert app_state(snapshot(pool="failed"), None) == (FAILED, "it cannot start")
    assert app_state(snapshot(), Phase.FAILED) == (FAILED, "its deploy script failed")
    refused = snapshot(error="cannot connect to 127.0.0.1:9000: Connection refused")
    assert app_state(refused, None, service=True) == (SERVING, refused.last_error)


def test_apps_are_named_by_name_or_site_and_name_where_two_sites_share_one() -> None:
    apps = [("www", "blog"), ("shop", "blog"), ("www", "api")]
    assert app_ids(apps) == ["www/blog", "shop/blog", "api"]
    assert find_app("api", apps) == 2
    assert find_app("www/api", apps) == 2
    assert find_app("shop/blog", apps) == 1
    with pytest.raises(LookupError, match=r"several sites: say which \(www/blog, shop/blog\)"):
        find_app("blog", apps)
    with pytest.raises(LookupError, match=r"no application 'nope' \(applications: www/blog"):
        find_app("nope", apps)
    with pytest.raises(LookupError, match="no application 'x/api'"):
        find_app("x/api", apps)


def test_the_document_is_plain_json_with_every_figure() -> None:
    engine = built_in(PYTHON)
    assert engine is not None
    app = AppConfig(
        name="blog",
        site="www",
        virtual_path="/blog",
        physical_path="/srv/www",
        engine=engine,
        handlers=(),
        env=(),
        module_vars=(),
        argv=(),
        current_directory="/srv/www",
    )
    stats = RequestStats()
    stats.record(200, 0.01, 10, 0)
    status = build_app_status(
        "blog", app, snapshot("idle"), stats, History(), 10.0, phase=Phase.SERVING
    )
    host = HostStatus(
        schema=1,
        version="0",
        pid=1,
        config="/srv/www",
        started=0.0,
        uptime=1.0,
        state="serving",
        listening=("http://127.0.0.1:8080",),
        front=FrontStatus(1, 2, {"400": 1}),
        apps=(status,),
    )
    document = json.loads(json.dumps(host.to_json()))
    (shown,) = document["apps"]
    assert shown["id"] == "blog" and shown["engine"] == PYTHON
    assert shown["state"] == "serving" and shown["deploy_phase"] == "serving"
    assert shown["workers"][0] == {
        "id": 1,
        "pid": 101,
        "state": "idle",
        "age": 4.0,
        "requests": 3,
        "in_flight": 0,
        "rss_mb": 12.5,
        "cpu_seconds": 0.25,
        "retiring": None,
        "generation": 0,
    }
    assert shown["requests"]["total"] == 1 and shown["requests"]["by_class"]["2xx"] == 1
    assert shown["last_exits"][0]["reason"] == "killed by signal 9"
    assert (shown["queue_length"], shown["failed_starts"], shown["crashed"]) == (2, 2, 1)
    assert host.app("blog") is status and host.app("nope") is None
