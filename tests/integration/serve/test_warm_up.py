"""Warm-up requests (WARM_UP, WARM_UP_REQUESTS) through `corral serve`, end to end.

The template requests the page through the app, in its own process, before it forks the
workers; an answer that is not 2xx (an exception: its traceback) is logged and the workers are
forked and serve all the same; web.config and corral.toml both set it, and a broken value is a
configuration error naming its file, line and setting. Without the setting the app's code never
runs in the template (Corral's own warm-up serves an internal app)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest
from tests.harness import WAIT, CorralServer, request, run_corral

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="preloaded workers need Linux (pidfd)"
)

WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="warm.app">
        <environmentVariables>
          <add name="PYTHONPATH" value="%APPL_PHYSICAL_PATH%" />
          <add name="WSGI_APP" value="wsgi.application" />
          <add name="PRELOAD" value="on" />
{extra}
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="warm.app#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""

TOML = """[apps.warm]
engine = "python"
wsgi_app = "wsgi:application"
preload = "on"
{extra}
"""

#: Notes each request it serves (pid, path, query, Host, SCRIPT_NAME, scheme) in requests.log.
APP = """import json, os, time

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requests.log")

def application(environ, start_response):
    with open(LOG, "a") as log:
        log.write(json.dumps({
            "pid": os.getpid(),
            "path": environ["PATH_INFO"],
            "query": environ["QUERY_STRING"],
            "host": environ.get("HTTP_HOST"),
            "script": environ["SCRIPT_NAME"],
            "scheme": environ["wsgi.url_scheme"],
        }) + "\\n")
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("the warm-up page is broken on purpose")
    if environ["PATH_INFO"] == "/hang":
        time.sleep(3600)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def make_site(root: Path, *, web_config: str | None = None, toml: str | None = None) -> Path:
    site = root / "site"
    site.mkdir(parents=True)
    if web_config is not None:
        (site / "web.config").write_text(WEB_CONFIG.format(extra=web_config))
    if toml is not None:
        (site / "corral.toml").write_text(TOML.format(extra=toml))
    (site / "wsgi.py").write_text(APP)
    return site


def start(site: Path, *args: str) -> CorralServer:
    return CorralServer(site, args=("--no-access-log", "--min", "2", "--max", "2", *args)).start(
        wait_ready=False
    )


def served(site: Path) -> list[dict[str, object]]:
    log = site / "requests.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def serve_from_workers(server: CorralServer) -> tuple[int, set[int]]:
    """Requests until both workers are up: (the template's pid, the pids that answered), every
    one of them a worker forked from the template."""
    answered: set[int] = set()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        response = request(server.port)
        assert response.status == 200, server.text()
        answered.add(int(response.body))
        if len(server.workers()) == 2 and server.templates():
            break
        time.sleep(0.05)
    [template] = server.templates()
    assert template not in answered
    for pid in answered:
        assert psutil.Process(pid).ppid() == template
    return template, answered


def test_the_template_requests_the_warm_up_page_before_forking(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        web_config='<add name="WARM_UP" value="/warm?x=1" />\n'
        '<add name="WARM_UP_REQUESTS" value="3" />',
    )
    server = start(site)
    try:
        template, workers = serve_from_workers(server)
        warm = [entry for entry in served(site) if entry["path"] == "/warm"]
        assert len(warm) == 3, served(site)
        for entry in warm:
            assert entry == {
                "pid": template,
                "path": "/warm",
                "query": "x=1",
                "host": "localhost",
                "script": "",
                "scheme": "http",
            }
        # Every other request was a worker's; the warm-ups came before any of them.
        assert [e["path"] for e in served(site)][:3] == ["/warm"] * 3
        assert all(e["pid"] in workers for e in served(site)[3:])
        server.wait_log(
            rf"\[{template}\] corral worker\[{template}\] notice: warm-up request GET "
            r"/warm\?x=1: 3 x 200 in \d+ ms, before forking"
        )
    finally:
        server.stop()


def test_a_failing_warm_up_is_logged_and_the_workers_serve(tmp_path: Path) -> None:
    site = make_site(
        tmp_path, toml='warm_up = "https://example.test:8443/boom"\nwarm_up_requests = 2'
    )
    server = start(site)
    try:
        template, _ = serve_from_workers(server)
        boom = [entry for entry in served(site) if entry["path"] == "/boom"]
        assert [(e["pid"], e["host"], e["scheme"]) for e in boom] == [
            (template, "example.test:8443", "https")
        ] * 2
        server.wait_log(r"GET /boom: the application failed; answering 500")
        assert "RuntimeError: the warm-up page is broken on purpose" in server.text()
        server.wait_log(
            r"warm-up request GET /boom: 2 of 2 not 2xx \(500 x2\); the workers are forked all "
            "the same"
        )
    finally:
        server.stop()


def test_a_stuck_warm_up_gives_up_preloading_and_the_workers_start_directly(
    tmp_path: Path,
) -> None:
    site = make_site(tmp_path, toml='warm_up = "/hang"')
    server = start(site, "--set", "start_timeout=4")
    try:
        # (The first request starts the pool: it waits for the template, then a direct worker.)
        response = request(server.port)
        assert response.status == 200, server.text()
        assert server.proc is not None
        assert psutil.Process(int(response.body)).ppid() == server.proc.pid  # started directly
        server.wait_log(
            r"not preloading workers: its warm-up request was still unanswered 3\.0 s after "
            r"the template started \(its start timeout less a margin\): its workers are "
            "started directly"
        )
        [hung] = [entry["pid"] for entry in served(site) if entry["path"] == "/hang"]
        assert isinstance(hung, int)
        deadline = time.monotonic() + WAIT
        while psutil.pid_exists(hung) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == "zombie"
        assert server.templates() == []
    finally:
        server.stop()


ASGI_APP = """async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi"})
"""


def test_an_asgi_app_s_template_says_it_sent_no_warm_up(tmp_path: Path) -> None:
    site = make_site(tmp_path, toml='warm_up = "/"')
    (site / "corral.toml").write_text(
        (site / "corral.toml").read_text().replace("wsgi_app", "asgi_app")
    )
    (site / "wsgi.py").write_text(ASGI_APP)
    server = start(site)
    try:
        response = request(server.port)
        assert (response.status, response.body) == (200, b"asgi"), server.text()
        server.wait_log(r"warm-up request /: not sent \(an ASGI app\)")
        server.wait_log(r"has loaded the app; workers are forked from it")
    finally:
        server.stop()


def test_without_the_setting_the_app_never_runs_in_the_template(tmp_path: Path) -> None:
    site = make_site(tmp_path, toml="")
    server = start(site)
    try:
        template, workers = serve_from_workers(server)
        assert served(site)
        assert {entry["pid"] for entry in served(site)} <= workers
        assert "warm-up" not in server.text()
        assert template
    finally:
        server.stop()


def test_a_broken_warm_up_names_file_line_and_setting(tmp_path: Path) -> None:
    xml = make_site(tmp_path / "xml", web_config='<add name="WARM_UP" value="admin/login" />')
    toml = make_site(tmp_path / "toml", toml='warm_up = "ftp://example.com/"')
    for site, where in ((xml, "web.config:10: WARM_UP"), (toml, "corral.toml:5: warm_up")):
        result = run_corral("check", str(site))
        assert result.returncode == 1, result.stdout + result.stderr
        assert (
            f"{site}/{where}: a warm-up request is a path (/...) or an http(s)://host/... URL"
            in result.stdout + result.stderr
        )
