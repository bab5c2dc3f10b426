"""The pool driving Corral's real Python worker (``python -m corral.worker``): spawned with its
fd-0 socket and liveness pipe, probed with FCGI_GET_VALUES, serving WSGI requests through leases
over a minimal connect function built on the codec."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from fcgi_client import connect
from pool_testkit import LOOPS, get, pid_alive
from pool_testkit import run_closing as run

from corral.supervision import (
    Pool,
    PoolSettings,
    PoolUnavailable,
    get_values,
    python_worker_plan,
)

WSGI_APP = textwrap.dedent(
    """
    import os, threading

    barrier = threading.Barrier(3)

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/barrier":  # all three requests must be inside the app at once
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                path = "/barrier-timeout"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{os.getpid()} {path}".encode()]
    """
)


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def make_app(root: Path, source: str = WSGI_APP) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wsgi.py").write_text(source)
    return root


def make_pool(
    root: Path, *, threads: int = 1, python: str = sys.executable, **overrides: Any
) -> Pool:
    plan = python_worker_plan(root, python=python, threads=threads, app_env={})
    values: dict[str, Any] = {
        "min_instances": 1,
        "max_instances": 2,
        "connections_per_worker": threads,
        "start_timeout": 20.0,
        "graceful_shutdown_timeout": 5.0,
        "idle_timeout": None,
    }
    values.update(overrides)
    return Pool("pyapp", plan, PoolSettings(**values), connect)


def test_a_wsgi_request_through_a_lease(
    loop: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")
    pool = make_pool(make_app(tmp_path / "app"))

    async def main() -> int:
        pid, body = await get(pool, "/hello")
        assert body == f"{pid} /hello".encode()
        lease = await pool.acquire()
        assert lease.worker_pid == pid
        assert await lease.conn.get("/again") == f"{pid} /again".encode()  # kept alive
        pool.release(lease, reusable=False)  # closed: the worker's one thread is free again
        worker = pool.snapshot().workers[0]
        assert worker.address is not None
        values = await get_values(worker.address, 5.0)
        assert values[b"FCGI_MAX_CONNS"] == b"1" and values[b"FCGI_MPXS_CONNS"] == b"0"
        return pid

    pid = run(loop, pool, main())
    assert not pid_alive(pid)
    messages = [r.getMessage() for r in caplog.records]
    # The worker's own stderr lines, tagged with the app and pid (its notice that it serves is
    # news, logged at INFO, not a warning); then a graceful stop.
    [banner] = [
        r for r in caplog.records if r.getMessage().startswith(f"pyapp[{pid}] corral worker[{pid}]")
    ]
    assert banner.getMessage().startswith(f"pyapp[{pid}] corral worker[{pid}] notice: serving")
    assert banner.levelno == logging.INFO
    assert f"app pyapp: worker pid {pid} stopped (exited with code 0)" in messages


def test_an_app_that_fails_to_import_reports_its_traceback(loop: str, tmp_path: Path) -> None:
    root = make_app(tmp_path / "broken", "import no_such_module_for_corral_worker_tests\n")
    pool = make_pool(root)

    async def main() -> None:
        with pytest.raises(PoolUnavailable) as info:
            await pool.acquire()
        error = info.value
        assert "could not be loaded (worker exited with code 4)" in error.reason
        assert "Traceback (most recent call last)" in error.stderr_tail
        assert "no_such_module_for_corral_worker_tests" in error.stderr_tail

    run(loop, pool, main())


def test_worker_threads_serve_requests_concurrently(loop: str, tmp_path: Path) -> None:
    pool = make_pool(make_app(tmp_path / "app"), threads=3, max_instances=1)

    async def main() -> None:
        results = await asyncio.gather(*(get(pool, "/barrier") for _ in range(3)))
        assert len({pid for pid, _ in results}) == 1
        assert all(body.endswith(b" /barrier") for _, body in results), results

    run(loop, pool, main())


def test_a_foreign_interpreter_imports_the_worker_through_pythonpath(
    loop: str, tmp_path: Path
) -> None:
    """A virtualenv without Corral installed: PYTHONPATH's last entry finds corral.worker."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import corral"], capture_output=True, timeout=30)
    assert probe.returncode != 0, "the fresh venv must not see corral on its own"
    pool = make_pool(make_app(tmp_path / "app"), python=python)

    async def main() -> None:
        pid, body = await get(pool, "/foreign")
        assert body == f"{pid} /foreign".encode()

    run(loop, pool, main())
