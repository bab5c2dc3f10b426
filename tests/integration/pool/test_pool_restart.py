"""Rolling restarts (``Pool.restart``): new workers are ready before old ones retire, a retired
worker finishes its requests before it gets SIGTERM, and requests under load never fail. Real
worker processes (Corral's Python worker and the stdlib responder fixture), real sockets."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from fcgi_client import connect
from pool_testkit import LOOPS, get, pid_alive, responder_plan
from pool_testkit import run_closing as run

from corral.supervision import Pool, PoolSettings, python_worker_plan

VERSIONED_APP = """
import os
from version import VERSION

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {VERSION}".encode()]
"""


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def make_app(root: Path, version: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wsgi.py").write_text(VERSIONED_APP)
    (root / "version.py").write_text(f"VERSION = {version!r}\n")
    return root


def settings(**overrides: Any) -> PoolSettings:
    values: dict[str, Any] = {
        "min_instances": 2,
        "max_instances": 2,
        "start_timeout": 30.0,
        "graceful_shutdown_timeout": 10.0,
        "idle_timeout": None,
        "queue_timeout": 60.0,
    }
    values.update(overrides)
    return PoolSettings(**values)


class Load:
    """``clients`` loops sending requests back to back until stopped; counts what happened."""

    def __init__(self, pool: Pool, clients: int = 4) -> None:
        self.pool = pool
        self.ok = 0
        self.errors: list[str] = []
        self.bodies: list[bytes] = []
        self._stop = False
        self._tasks = [asyncio.ensure_future(self._client()) for _ in range(clients)]

    async def _client(self) -> None:
        while not self._stop:
            try:
                _, body = await get(self.pool, "/")
            except Exception as exc:  # every failure counts
                self.errors.append(repr(exc))
            else:
                self.ok += 1
                self.bodies.append(body)

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)


async def ready_pids(pool: Pool, count: int) -> list[int]:
    for _ in range(600):
        workers = [w for w in pool.snapshot().workers if w.state in ("idle", "busy")]
        if len(workers) >= count:
            return [w.pid for w in workers if w.pid is not None]
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} ready workers: {pool.snapshot()}")


def test_rolling_restart_under_load_fails_no_request(loop: str, tmp_path: Path) -> None:
    root = make_app(tmp_path / "app", "v1")
    pool = Pool("rolling", python_worker_plan(root, app_env={}), settings(), connect)

    async def main() -> None:
        await get(pool, "/")
        old = await ready_pids(pool, 2)
        load = Load(pool)
        await asyncio.sleep(0.3)
        (root / "version.py").write_text("VERSION = 'v2'\n")
        assert await pool.restart("test: version.py changed") is True
        after_first = load.ok
        # Requests keep being served by the new generation; then a second restart at once.
        await asyncio.sleep(0.3)
        (root / "version.py").write_text("VERSION = 'v3'\n")
        assert await pool.restart("test: again") is True
        await asyncio.sleep(0.3)
        await load.stop()
        assert load.errors == []
        assert after_first > 0 and load.ok > after_first
        new = await ready_pids(pool, 2)
        assert not set(new) & set(old)
        assert all(not pid_alive(pid) for pid in old)
        _, body = await get(pool, "/")
        assert body.endswith(b" v3")
        assert any(b.endswith(b" v1") for b in load.bodies)
        assert any(b.endswith(b" v2") for b in load.bodies)

    run(loop, pool, main())


def test_a_retired_worker_finishes_its_request_before_sigterm(loop: str, tmp_path: Path) -> None:
    """The responder fixture dies on SIGTERM at once: its slow request only succeeds if the pool
    waits for it before stopping the old worker."""
    plan = responder_plan(tmp_path)
    pool = Pool("drain", plan, settings(min_instances=1, max_instances=1), connect)

    async def main() -> None:
        (old,) = await ready_pids_after_first(pool)
        slow = asyncio.ensure_future(get(pool, "/sleep/1.5"))
        await asyncio.sleep(0.3)  # the slow request is on the old worker
        assert await pool.restart("test") is True
        pid, body = await slow
        assert pid == old and body == str(old).encode()
        assert not pid_alive(old)
        pid2, _ = await get(pool, "/pid")
        assert pid2 != old

    run(loop, pool, main())


async def ready_pids_after_first(pool: Pool) -> list[int]:
    await get(pool, "/pid")
    return await ready_pids(pool, 1)


def test_new_code_that_cannot_start_leaves_the_old_workers_serving(
    loop: str, tmp_path: Path
) -> None:
    root = make_app(tmp_path / "app", "v1")
    pool = Pool(
        "broken-edit", python_worker_plan(root, app_env={}), settings(min_instances=1), connect
    )

    async def main() -> None:
        await get(pool, "/")
        (old,) = await ready_pids(pool, 1)
        load = Load(pool, clients=2)
        (root / "version.py").write_text("VERSION = = 'syntax error'\n")
        assert await pool.restart("test: broken edit") is False
        await asyncio.sleep(0.2)
        assert load.errors == []
        assert pid_alive(old)
        (root / "version.py").write_text("VERSION = 'fixed'\n")
        assert await pool.restart("test: fixed") is True
        await load.stop()
        assert load.errors == []
        assert not pid_alive(old)
        _, body = await get(pool, "/")
        assert body.endswith(b" fixed")

    run(loop, pool, main())


def test_a_dormant_pool_has_nothing_to_restart(loop: str, tmp_path: Path) -> None:
    root = make_app(tmp_path / "app", "v1")
    pool = Pool("dormant", python_worker_plan(root, app_env={}), settings(), connect)

    async def main() -> None:
        assert await pool.restart("nothing runs") is True
        assert pool.snapshot().workers == ()
        _, body = await get(pool, "/")
        assert body.endswith(b" v1")

    run(loop, pool, main())
