"""The status screen (``corral.ops.screen``) drawn from a handmade ``HostStatus`` as the
control socket sends it (``to_json()`` through JSON), and ``corral top``'s frame."""

from __future__ import annotations

import json

import pytest

from corral.ops.screen import duration, millis, render
from corral.ops.status import (
    AppStatus,
    ExitStatus,
    FrontStatus,
    HostStatus,
    RequestFigures,
    ServerStatus,
    WorkerStatus,
)
from corral.ops.top import CLEAR_BELOW, CLEAR_LINE, HOME, frame


def worker(pid: int, state: str = "idle", retiring: str | None = None) -> WorkerStatus:
    return WorkerStatus(
        id=pid % 100,
        pid=pid,
        state=state,
        age=125.0,
        requests=42,
        in_flight=1 if state == "busy" else 0,
        rss_mb=24.5,
        cpu_seconds=1.25,
        retiring=retiring,
        generation=1,
    )


def app(ident: str, **changes: object) -> AppStatus:
    values: dict[str, object] = {
        "id": ident,
        "name": ident.rpartition("/")[2],
        "site": "main",
        "virtual_path": "/blog",
        "engine": "python",
        "state": "serving",
        "reason": None,
        "retry_in": None,
        "min_workers": 1,
        "max_workers": 4,
        "workers": (worker(4101), worker(4102, "busy", "recycled after 1000 requests")),
        "queue_length": 3,
        "oldest_wait": 0.25,
        "in_flight": 1,
        "arrival_rate": 12.5,
        "service_time": 0.012,
        "requests": RequestFigures(
            total=1234,
            by_class={"1xx": 0, "2xx": 1200, "3xx": 0, "4xx": 30, "5xx": 4, "other": 0},
            window_seconds=60.0,
            rate=2.5,
            mean=0.011,
            p99=0.045,
        ),
        "restarts": 2,
        "recycled": 1,
        "crashed": 1,
        "failed_starts": 0,
        "last_error": None,
        "last_exits": (ExitStatus(4000, "killed by signal 9", False, 30.0, None),),
        "deploy_phase": None,
        "last_deploy": None,
    }
    values.update(changes)
    return AppStatus(**values)  # type: ignore[arg-type]


def host(*apps: AppStatus) -> HostStatus:
    return HostStatus(
        schema=1,
        version="0.1.0",
        pid=4000,
        config="/srv/www",
        started=1_700_000_000.0,
        uptime=7380.0,
        state="serving",
        listening=("http://127.0.0.1:8080",),
        front=FrontStatus(connections_open=3, connections_opened=99, protocol_errors={"400": 2}),
        apps=apps,
    )


def wire(status: HostStatus) -> object:
    """What the client gets: the document through the socket's JSON."""
    return json.loads(json.dumps(status.to_json()))


def test_the_screen_shows_every_figure_of_an_app_and_its_workers() -> None:
    text = "\n".join(render(wire(host(app("blog")))))
    assert text.splitlines()[0] == "corral 0.1.0  pid 4000  serving  up 2h03m  /srv/www"
    assert "connections 3 open, 99 since start;  refused: 400 x2" in text
    assert "1 application, 2 workers" in text
    assert "blog  (site main, /blog, engine python)  serving" in text
    assert (
        "  workers 2 (min 1, max 4)   queue 3 (oldest 250 ms)   in flight 1   arrivals 12.5/s   "
        "service 12 ms"
    ) in text
    assert (
        "  requests 1234 (2xx 1200, 4xx 30, 5xx 4)   last 1m00s: 2.5/s, mean 11 ms, p99 45 ms"
        in text
    )
    assert "restarts 2   recycled 1   crashed 1   failed starts 0" in text
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "PID" in line)
    assert lines[head].split() == ["PID", "STATE", "AGE", "REQUESTS", "IN", "FLIGHT", "RSS", "MB",
                                   "CPU", "s", "NOTE"]  # fmt: skip
    assert lines[head + 1].split() == ["4101", "idle", "2m05s", "42", "0", "24.5", "1.25"]
    assert lines[head + 2].split()[:7] == ["4102", "busy", "2m05s", "42", "1", "24.5", "1.25"]
    assert lines[head + 2].endswith("recycled after 1000 requests")
    assert "last exit: pid 4000 killed by signal 9 (crashed), 30.0s ago" in text


def test_a_failed_app_shows_its_reason_and_next_try_and_a_deploying_one_its_phase() -> None:
    failed = app(
        "shop",
        state="failed",
        reason="exited with code 4 while starting",
        retry_in=12.0,
        workers=(),
        last_exits=(),
        failed_starts=3,
        service_time=None,
        requests=RequestFigures(0, {}, 5.0, 0.0, None, None),
    )
    deploying = app(
        "main/blog", state="deploying", deploy_phase="deploying", last_deploy="ok in 2.0s"
    )
    text = "\n".join(render(wire(host(failed, deploying))))
    assert "shop  (site main, /blog, engine python)  failed: exited with code 4 while starting " \
        "(next try in 12.0s)" in text  # fmt: skip
    assert "failed starts 3" in text
    assert "requests 0 (none)   last 5.0s: 0.0/s, mean -, p99 -" in text
    assert "service -" in text
    assert "main/blog  (site main, /blog, engine python)  deploying" in text
    assert "  deploy: deploying (last: ok in 2.0s)" in text
    # No worker table for an app without workers.
    shop = text.split("shop  (")[1].split("main/blog")[0]
    assert "PID" not in shop


def test_a_document_of_another_schema_or_shape_is_refused_by_name() -> None:
    document = wire(host(app("blog")))
    assert isinstance(document, dict)
    with pytest.raises(ValueError, match="status schema 2"):
        render({**document, "schema": 2})
    broken = json.loads(json.dumps(document))
    broken["apps"][0]["workers"][0]["requests"] = "many"
    with pytest.raises(ValueError, match=r"status\.apps\[0\]\.workers\[0\]\.requests: not a whole"):
        render(broken)
    with pytest.raises(ValueError, match="status: not an object"):
        render([1])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.85, "850ms"),
        (12.34, "12.3s"),
        (245, "4m05s"),
        (7380, "2h03m"),
        (273600, "3d04h"),
    ],
)
def test_durations(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_request_durations() -> None:
    assert [millis(s) for s in (None, 0.0004, 0.012, 1.25)] == ["-", "0.4 ms", "12 ms", "1.25 s"]


def test_a_top_frame_fits_the_terminal() -> None:
    lines = [f"line {i} " + "x" * 200 for i in range(50)]
    drawn = frame("header", lines, width=40, height=10)
    assert drawn.startswith(HOME) and drawn.endswith(CLEAR_LINE + CLEAR_BELOW)
    rows = (
        drawn.removeprefix(HOME).removesuffix(CLEAR_LINE + CLEAR_BELOW).split(CLEAR_LINE + "\r\n")
    )
    assert len(rows) == 10
    assert rows[0] == "header"
    assert rows[1] == ("line 0 " + "x" * 200)[:40]
    assert all(len(row) <= 40 for row in rows)
    assert rows[-1] == "... 42 more lines (a taller terminal sho"
    short = frame("header", ["a", "b"], width=40, height=10)
    assert (
        short
        == HOME + "header" + CLEAR_LINE + "\r\na" + CLEAR_LINE + "\r\nb" + CLEAR_LINE + CLEAR_BELOW
    )


def test_a_service_shows_each_server_and_an_older_document_without_servers_still_renders() -> None:
    servers = (
        ServerStatus("10.0.0.1:8080", "up", 2, 900, 0, 1.0, None),
        ServerStatus("10.0.0.2:8080", "down", 0, 450, 3, 0.0, "health check: GET /readyz 503"),
        ServerStatus("unix:/run/app.sock", "slow-start", 1, 12, 1, 0.35, "refused"),
    )
    text = "\n".join(render(wire(host(app("tier", workers=(), servers=servers)))))
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "SERVER" in line)
    assert lines[head].split() == ["SERVER", "STATE", "WEIGHT", "IN", "FLIGHT", "REQUESTS",
                                   "FAILURES"]  # fmt: skip
    assert lines[head + 1].split() == ["10.0.0.1:8080", "up", "1.00", "2", "900", "0"]
    assert lines[head + 2].split()[:6] == ["10.0.0.2:8080", "down", "0.00", "0", "450", "3"]
    assert lines[head + 2].endswith("health check: GET /readyz 503")
    assert lines[head + 3].split() == ["unix:/run/app.sock", "slow-start", "0.35", "1", "12", "1",
                                       "refused"]  # fmt: skip
    document = wire(host(app("blog")))
    assert isinstance(document, dict)
    for shown in document["apps"]:
        del shown["servers"]
    assert "SERVER" not in "\n".join(render(document))
