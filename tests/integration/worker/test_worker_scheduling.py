"""A worker's threads run under SCHED_BATCH on Linux (``worker.serving.batch_scheduling``): a
worker the front wakes for a request does not preempt the front in the middle of a turn of its
event loop. Through a real ``corral serve``: a worker forked from its template (the default with
more than one worker) and one started with its own import (a single worker), WSGI and ASGI; the
app reports the policy of the thread that runs it. ``WORKER_SCHEDULING=normal`` keeps the
default policy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tests.harness import CorralServer, request, serve_asgi, serving

from corral.supervision.launch import python_worker_plan

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's"
)

WSGI_APP = """
import os

def application(environ, start_response):
    body = str(os.sched_getscheduler(0)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI_APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.sched_getscheduler(0)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.parametrize(
    "args",
    [("--min", "1", "--max", "2"), ("--min", "1", "--max", "1")],
    ids=["forked-from-template", "own-import"],
)
def test_a_wsgi_worker_serves_under_sched_batch(tmp_path: Path, args: tuple[str, ...]) -> None:
    with serving(tmp_path, *args, "--no-access-log", app=WSGI_APP) as server:
        answers = {request(server.port, path="/").body for _ in range(4)}
    assert answers == {str(os.SCHED_BATCH).encode()}


def test_an_asgi_worker_serves_under_sched_batch(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "asgi_sched.py").write_text(ASGI_APP)
    server = serve_asgi(tmp_path, "asgi_sched:app").start()
    try:
        answer = request(server.port, path="/")
    finally:
        server.stop()
    assert answer.body == str(os.SCHED_BATCH).encode()


def test_the_front_keeps_the_default_policy(tmp_path: Path) -> None:
    """Only the workers: the front's event loop keeps SCHED_OTHER, so that it is the one that
    gets the CPU when it wakes."""
    with serving(tmp_path, "--no-access-log", app=WSGI_APP) as server:
        request(server.port, path="/")
        assert server.proc is not None
        assert os.sched_getscheduler(server.proc.pid) == os.SCHED_OTHER


WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="sched.app">
        <environmentVariables>
          <add name="WSGI_APP" value="wsgi.application" />
          <add name="WORKER_SCHEDULING" value="normal" />
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="sched.app#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""


def test_worker_scheduling_normal_keeps_the_default_policy(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "web.config").write_text(WEB_CONFIG)
    (site / "wsgi.py").write_text(WSGI_APP)
    server = CorralServer(site, args=("--no-access-log", "--min", "1", "--max", "2")).start()
    try:
        answers = {request(server.port, path="/").body for _ in range(4)}
    finally:
        server.stop()
    assert answers == {str(os.SCHED_OTHER).encode()}


def test_the_launch_plan_names_the_policy_only_when_not_the_default(tmp_path: Path) -> None:
    assert "--scheduling" not in python_worker_plan(tmp_path).argv
    argv = python_worker_plan(tmp_path, scheduling="normal").argv
    assert argv[argv.index("--scheduling") + 1] == "normal"
