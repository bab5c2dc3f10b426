"""Zoo's behaviours around a real pool: the deploy script (DEPLOY_FILE / DEPLOY_LOG), file-change
restarts (WATCH_FILE_CHANGES_MASK, restart.txt) and per-application error logs (ERROR_LOG_DIR).

Each test loads a fixture site's web.config (copied to a temporary folder: the scripts write
files), starts its application's pool of real Python workers with an ``AppController``, and
sends requests through the route's ``pool`` attribute as the front does. ``corral serve`` end to
end (HTTP, pages, streaming) is in test_serve_zoo.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from fcgi_client import connect
from pool_testkit import pid_alive, run_under

from corral.config import load_site
from corral.config.model import AppConfig
from corral.runtime.controller import AppController, runtime_spec
from corral.runtime.errorlog import ErrorLogs
from corral.runtime.gate import DeployFailed, DeployInProgress
from corral.runtime.policy import Phase
from corral.supervision import Pool, PoolSettings, python_worker_plan

T = TypeVar("T")
SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"
WAIT = 30.0


@dataclass
class FakeRoute:
    """The attribute of the front's Route that the controller switches."""

    pool: Any


def copy_site(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(SITES / name, target)
    return target


def app_config(root: Path) -> AppConfig:
    (app,) = load_site(str(root), default_engine="python").apps
    return app


class Harness:
    def __init__(self, app: AppConfig, *, error_logs: ErrorLogs | None = None, **spec: Any):
        plan = python_worker_plan(
            app.current_directory, python=app.interpreter, app_env=dict(app.env)
        )
        settings = PoolSettings(
            min_instances=1,
            max_instances=2,
            start_timeout=30.0,
            graceful_shutdown_timeout=5.0,
            idle_timeout=None,
            queue_timeout=WAIT,
        )
        self.pool: Pool = Pool(app.name, plan, settings, connect)
        self.route = FakeRoute(self.pool)
        self.controller = AppController(
            runtime_spec(app, plan, **spec), self.pool, self.route, error_logs=error_logs
        )

    async def get(self, path: str = "/") -> tuple[int, bytes]:
        lease = await self.route.pool.acquire()
        try:
            body = await lease.conn.get(path)
        except BaseException:
            self.route.pool.release(lease, False)
            raise
        self.route.pool.release(lease, True)
        return lease.worker_pid, body

    async def until(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def wait_serving(self) -> None:
        await self.until(lambda: self.controller.phase is Phase.SERVING, "the app to serve")

    async def wait_failed(self) -> None:
        await self.until(lambda: self.controller.phase is Phase.FAILED, "the deploy to fail")


def run(h: Harness, main: Coroutine[Any, Any, T]) -> T:
    async def guarded() -> T:
        await h.controller.start()
        try:
            return await main
        finally:
            await h.controller.close()
            await h.pool.close(grace=2.0)

    return run_under("uvloop", guarded())


async def touch_until(h: Harness, path: Path, text: str, done: Callable[[], bool]) -> None:
    """Write ``path`` until ``done()`` (the watcher may still be installing its watches when
    the first write happens)."""
    deadline = time.monotonic() + WAIT
    while True:
        _write(path, text)
        for _ in range(60):
            if done():
                return
            await asyncio.sleep(0.05)
        if time.monotonic() > deadline:
            raise AssertionError(f"no reaction to writing {path}")


# ------------------------------------------------------------------------------------ deploy


def test_the_first_request_runs_the_deploy_script_and_streams_its_output(tmp_path: Path) -> None:
    root = copy_site("deploy-ok", tmp_path)
    h = Harness(app_config(root))

    async def main() -> bytes:
        assert h.route.pool is not h.pool  # held back from the start
        with pytest.raises(DeployInProgress) as first:
            await h.get()
        assert first.value.output is not None  # this request streams the output (no DEPLOY_LOG)
        with pytest.raises(DeployInProgress) as second:
            await h.get()
        assert second.value.output is None  # others get the self-refreshing page
        output = b"".join([chunk async for chunk in first.value.output])
        assert b"deploy: starting\n" in output
        assert b"deploy: wrote generated/greeting.txt\n" in output
        assert b"the deploy script succeeded" in output
        await h.wait_serving()
        assert h.route.pool is h.pool
        _, body = await h.get()
        assert h.controller.last_deploy is not None and h.controller.last_deploy.ok
        return body

    greeting, executable, cwd = run(h, main()).decode().split("|")[1:]
    # The engine's interpreter, the app's environment and working directory.
    assert greeting == "hello from the deploy script"
    assert os.path.samefile(executable, sys.executable)
    assert os.path.samefile(cwd, root)


def test_a_failing_deploy_script_stops_the_app_until_its_files_change(tmp_path: Path) -> None:
    root = copy_site("deploy-fails", tmp_path)
    h = Harness(app_config(root))

    async def main() -> None:
        with pytest.raises(DeployInProgress) as first:
            await h.get()
        assert first.value.output is None  # DEPLOY_LOG is set: no stream
        await h.wait_failed()
        for _ in range(2):  # it stays failed: requests do not rerun it
            with pytest.raises(DeployFailed) as failed:
                await h.get()
            assert "it exited with code 3" in failed.value.reason
            assert "no matching distribution" in failed.value.stderr_tail
            assert not failed.value.public  # DEPLOY_LOG is set: loopback clients only
        assert h.pool.snapshot().workers == ()
        log = (root / "log" / "deploy.log").read_text()
        assert "deploy: installing requirements" in log
        assert "no matching distribution" in log
        assert "the deploy script failed: it exited with code 3" in log
        # Fix the script: the change makes the next request run it again.
        fixed = 'print("deploy: fixed")\n'
        await touch_until(
            h,
            root / "deploy.py",
            fixed,
            lambda: h.controller.phase is Phase.DEPLOY_NEEDED,
        )
        with pytest.raises(DeployInProgress):
            await h.get()
        await h.wait_serving()
        _, body = await h.get()
        assert body == b"deployed"
        assert "deploy: fixed" in (root / "log" / "deploy.log").read_text()

    run(h, main())


def test_a_deploy_script_past_its_time_limit_is_stopped_and_fails(tmp_path: Path) -> None:
    root = copy_site("deploy-ok", tmp_path)
    (root / "deploy.py").write_text(
        "import time\nprint('deploy: hanging', flush=True)\ntime.sleep(600)\n"
    )
    app = app_config(root)
    h = Harness(replace(app, deploy_timeout=1))

    async def main() -> None:
        with pytest.raises(DeployInProgress) as first:
            await h.get()
        assert first.value.output is not None
        output = b"".join([chunk async for chunk in first.value.output])
        assert b"deploy: hanging" in output
        await h.wait_failed()
        with pytest.raises(DeployFailed) as failed:
            await h.get()
        assert "did not finish within its time limit" in failed.value.reason
        assert failed.value.public  # no DEPLOY_LOG: the output was the browser's anyway

    run(h, main())


def test_a_config_change_redeploys_after_stopping_the_workers(tmp_path: Path) -> None:
    root = copy_site("deploy-ok", tmp_path)
    h = Harness(app_config(root))

    async def main() -> None:
        with pytest.raises(DeployInProgress):
            await h.get()
        await h.wait_serving()
        pid, _ = await h.get()
        h.controller.redeploy()
        with pytest.raises(DeployInProgress):
            await h.get()
        await h.wait_serving()
        assert not pid_alive(pid)  # stopped before the script ran
        pid2, _ = await h.get()
        assert pid2 != pid

    run(h, main())


# ------------------------------------------------------------------------------------ watching


def test_a_masked_file_change_restarts_rolling_under_load(tmp_path: Path) -> None:
    root = copy_site("deploy-ok", tmp_path)
    app = replace(app_config(root), deploy_file=None)
    (root / "generated").mkdir()
    (root / "generated" / "greeting.txt").write_text("v1")
    (root / "wsgi.py").write_text(
        "import os\nfrom version import V\n\ndef application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [f'{os.getpid()}|{V}'.encode()]\n"
    )
    (root / "version.py").write_text("V = 'v1'\n")
    h = Harness(app)
    errors: list[str] = []
    seen: list[bytes] = []

    async def client(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                _, body = await h.get()
                seen.append(body)
            except Exception as exc:
                errors.append(repr(exc))

    async def main() -> None:
        first_pid, _ = await h.get()
        stop = asyncio.Event()
        clients = [asyncio.ensure_future(client(stop)) for _ in range(3)]
        await touch_until(
            h, root / "version.py", "V = 'v2'\n", lambda: bool(seen) and seen[-1].endswith(b"v2")
        )
        await h.until(lambda: not pid_alive(first_pid), "the old worker to stop")
        await h.until(lambda: not h.controller.restarting, "the restart to end")
        stop.set()
        await asyncio.gather(*clients)
        assert errors == []
        assert any(body.endswith(b"|v1") for body in seen)
        # A file that matches no mask restarts nothing.
        pids = [w.pid for w in h.pool.snapshot().workers if w.state in ("idle", "busy")]
        _write(root / "notes.txt", "hello")
        await asyncio.sleep(1.5)
        assert pids and all(pid is not None and pid_alive(pid) for pid in pids)
        assert not h.controller.restarting

    run(h, main())


def test_touching_restart_txt_restarts_without_a_mask(tmp_path: Path) -> None:
    root = copy_site("deploy-fails", tmp_path)
    app = replace(app_config(root), deploy_file=None, watch_file_changes_mask=())
    h = Harness(app)

    async def main() -> None:
        pid, body = await h.get()
        assert body == b"deployed"
        await touch_until(h, root / "restart.txt", "", lambda: not pid_alive(pid))
        pid2, _ = await h.get()
        assert pid2 != pid

    run(h, main())


# ------------------------------------------------------------------------------------ error log


def test_the_error_log_has_worker_output_and_lifecycle_events(tmp_path: Path) -> None:
    root = copy_site("deploy-fails", tmp_path)
    (root / "wsgi.py").write_text(
        "import os, sys\n\ndef application(environ, start_response):\n"
        "    if environ['PATH_INFO'] == '/crash':\n"
        "        os.kill(os.getpid(), 9)\n"
        "    print('a warning from the app', file=sys.stderr, flush=True)\n"
        "    if environ['PATH_INFO'] == '/boom':\n"
        "        raise RuntimeError('boom from the app')\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    app = replace(app_config(root), deploy_file=None)
    logs = ErrorLogs()
    h = Harness(app, error_logs=logs)
    log_file = root / "log" / "deploy.fails.log"

    async def main() -> None:
        pid, _ = await h.get("/")
        await h.get("/boom")
        with pytest.raises(ConnectionError):
            await h.get("/crash")
        await h.until(lambda: not pid_alive(pid), "the crash")
        await h.get("/")  # a replacement serves
        await h.until(
            lambda: "killed by signal SIGKILL" in _read(log_file) or not logs.flush(0.5),
            "the crash in the log",
        )

    try:
        run(h, main())
    finally:
        logs.close()
    text = log_file.read_text()
    assert "a warning from the app" in text
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: boom from the app" in text
    assert f"started worker pid {pid_of(text)}" in text
    assert "is ready" in text
    assert "killed by signal SIGKILL" in text
    assert " WARNING " in text and " INFO " in text


def test_the_error_log_rotates_by_size(tmp_path: Path) -> None:
    root = copy_site("deploy-fails", tmp_path)
    (root / "wsgi.py").write_text(
        "import sys\n\ndef application(environ, start_response):\n"
        "    print('x' * 300, file=sys.stderr, flush=True)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    app = replace(app_config(root), deploy_file=None, error_log_max_kb=1, error_log_files=2)
    logs = ErrorLogs()
    h = Harness(app, error_logs=logs)

    async def main() -> None:
        for _ in range(40):
            await h.get("/")

    try:
        run(h, main())
        assert logs.flush()
    finally:
        logs.close()
    folder = root / "log"
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith("deploy.fails.log"))
    assert names == ["deploy.fails.log", "deploy.fails.log.1", "deploy.fails.log.2"]
    for name in names:
        assert (folder / name).stat().st_size <= 1024 + 400


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def pid_of(text: str) -> str:
    marker = "started worker pid "
    return text[text.index(marker) + len(marker) :].split()[0]
