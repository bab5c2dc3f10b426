"""A hung handler costs its own request a 504, never the app: whichever timeout fires (the
front's ``response_timeout`` or the pool's ``request_timeout``, WORKER_REQUEST_TIMEOUT), the
worker stuck in the request is retired (its stack to the log first) and replaced, so that normal
traffic recovers within the timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.harness import Response, request, serving

TIMEOUT = 1.5


@pytest.mark.parametrize(
    "which",
    [
        ("response_timeout", f"response_timeout={TIMEOUT}"),
        ("request timeout", f"request_timeout={TIMEOUT}"),
    ],
    ids=["front-response-timeout", "pool-request-timeout"],
)
def test_two_hung_requests_do_not_take_a_two_worker_app_down(
    tmp_path: Path, which: tuple[str, str]
) -> None:
    logged, setting = which
    with serving(tmp_path, "--min", "2", "--max", "2", "--no-access-log", "--set", setting) as srv:
        before = {request(srv.port, path="/pid").body for _ in range(6)}
        hung: list[Response] = []

        def hang() -> None:
            hung.append(request(srv.port, path="/sleep?3600"))  # an hour

        threads = [threading.Thread(target=hang, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(4 * TIMEOUT + 10)
        assert [r.status for r in hung] == [504, 504]
        srv.wait_log(logged)
        srv.wait_log("in application")  # the stuck worker's stack (faulthandler), in the log
        # Normal traffic recovers within the timeout: the stuck workers were replaced.
        began = time.monotonic()
        answers = [request(srv.port, path="/pid") for _ in range(6)]
        took = time.monotonic() - began
        assert [r.status for r in answers] == [200] * 6, srv.text()
        assert not {r.body for r in answers} & before  # new workers
        assert took < 4 * TIMEOUT + 5, took
