"""A worker's threads run under SCHED_BATCH on Linux (``worker.serving.batch_scheduling``): a
worker the front wakes for a request does not preempt the front in the middle of a turn of its
event loop. Through a real ``corral serve``: a worker forked from its template (the default with
more than one worker) and one started with its own import (a single worker), WSGI and ASGI; the
app reports the policy of the thread that runs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tests.harness import request, serve_asgi, serving

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
