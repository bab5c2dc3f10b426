"""Helpers shared by the pool's integration tests and the host script they kill."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil  # type: ignore[import-untyped]
import uvloop

from corral.backends import PooledUpstream
from corral.supervision.launch import LaunchPlan, WorkerSocket
from corral.supervision.pool import Pool

APPS = Path(__file__).resolve().parent
RESPONDER = APPS / "fcgi_responder.py"
LOOPS = ("asyncio", "uvloop")

T = TypeVar("T")
C = TypeVar("C", bound=PooledUpstream)


class Getter(PooledUpstream, Protocol):
    async def get(self, path: str) -> bytes: ...


G = TypeVar("G", bound=Getter)


def responder_plan(
    cwd: str | os.PathLike[str], *, transport: WorkerSocket = WorkerSocket.UNIX, **env: str
) -> LaunchPlan:
    """Start the stdlib FastCGI responder fixture, with RESPONDER_* switches from ``env``."""
    full_env = dict(os.environ)
    full_env.update({f"RESPONDER_{key.upper()}": value for key, value in env.items()})
    return LaunchPlan(
        argv=(sys.executable, str(RESPONDER)), env=full_env, cwd=os.fspath(cwd), transport=transport
    )


def run_under(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a fresh event loop of the given kind ("asyncio" or "uvloop")."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = (
        uvloop.new_event_loop if loop == "uvloop" else None
    )
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def run_closing(loop: str, pool: Pool, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` under ``loop``, then close ``pool`` (2 s grace) whatever happened."""

    async def guarded() -> T:
        try:
            return await main
        finally:
            await pool.close(grace=2.0)

    return run_under(loop, guarded())


async def with_lease(pool: Pool, use: Callable[[C], Awaitable[T]]) -> tuple[int, T]:
    """Lease a worker, ``use`` its connection, release it (kept alive unless ``use`` failed);
    return the worker's pid and what ``use`` returned."""
    lease = await pool.acquire()
    try:
        result = await use(lease.conn)
    except BaseException:
        pool.release(lease, reusable=False)
        raise
    pool.release(lease, reusable=True)
    return lease.worker_pid, result


async def get(pool: Pool, path: str = "/pid") -> tuple[int, bytes]:
    """One GET through the pool: (the pid of the worker that answered, the body)."""
    return await with_lease(pool, lambda conn: conn.get(path))


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], within: float) -> list[int]:
    """Poll until every pid is gone or ``within`` seconds pass; return those still alive."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
