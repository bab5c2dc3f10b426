"""The pool with preloaded workers (``supervision.template.TemplateSpawner``), under both event
loops: workers forked from a template serve, rolling restarts under load fail no request and
start a new template, and a restart that comes while a template still imports the old code
does not let that template serve the new generation. Real processes and sockets."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fcgi_client import connect
from pool_testkit import LOOPS, get, pid_alive
from pool_testkit import run_closing as run
from test_pool_restart import Load, make_app, ready_pids, settings

from corral.supervision import Pool, python_worker_plan
from corral.supervision.template import TemplateSpawner, supported

pytestmark = pytest.mark.skipif(not supported(), reason="preloaded workers need Linux pidfds")


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def preloaded_pool(root: Path, name: str) -> tuple[Pool, TemplateSpawner]:
    spawner = TemplateSpawner(name, start_timeout=30.0)
    plan = python_worker_plan(root, app_env={}, title=f"corral worker test/{name} (python)")
    return Pool(name, plan, settings(), connect, spawner=spawner), spawner


def test_rolling_restarts_under_load_with_a_template(loop: str, tmp_path: Path) -> None:
    root = make_app(tmp_path / "app", "v1")
    pool, spawner = preloaded_pool(root, "preloaded")

    async def main() -> None:
        await get(pool, "/")
        old = await ready_pids(pool, 2)
        first_template = spawner.template_pid
        assert first_template is not None
        assert pool.snapshot().template_pid == first_template
        assert all(psutil.Process(pid).ppid() == first_template for pid in old)
        load = Load(pool)
        await asyncio.sleep(0.3)
        (root / "version.py").write_text("VERSION = 'v2'\n")
        assert await pool.restart("test: version.py changed") is True
        await asyncio.sleep(0.3)
        await load.stop()
        assert load.errors == []
        new = await ready_pids(pool, 2)
        assert not set(new) & set(old)
        second_template = spawner.template_pid
        assert second_template not in (None, first_template)
        assert all(psutil.Process(pid).ppid() == second_template for pid in new)
        _, body = await get(pool, "/")
        assert body.endswith(b" v2")
        # The old template went with its last worker.
        for _ in range(100):
            if not pid_alive(first_template):
                break
            await asyncio.sleep(0.05)
        assert not pid_alive(first_template)

    run(loop, pool, main())
    assert spawner.template_pid is None  # the pool's close stopped it


def test_a_restart_during_a_templates_import_gets_a_new_template(loop: str, tmp_path: Path) -> None:
    root = make_app(tmp_path / "app", "v1")
    (root / "version.py").write_text("import time\ntime.sleep(1.5)\nVERSION = 'v1'\n")
    pool, _spawner = preloaded_pool(root, "slow")

    async def main() -> None:
        first = asyncio.ensure_future(get(pool, "/"))
        for _ in range(100):  # the template is importing (sleeping in version.py)
            if any(
                p.cmdline()[:1] == ["corral template test/slow (python)"]
                for p in psutil.Process().children()
            ):
                break
            await asyncio.sleep(0.02)
        (root / "version.py").write_text("VERSION = 'v2'\n")
        assert await pool.restart("test: changed while importing") is True
        _, body = await first
        assert body.endswith(b" v2")
        for _pid in await ready_pids(pool, 2):
            _, body = await get(pool, "/")
            assert body.endswith(b" v2"), body

    run(loop, pool, main())
