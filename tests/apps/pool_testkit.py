"""Helpers shared by the pool's integration tests and the host script they kill."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil  # type: ignore[import-untyped]
import uvloop

from corral.supervision.launch import LaunchPlan, Transport

APPS = Path(__file__).resolve().parent
RESPONDER = APPS / "fcgi_responder.py"
LOOPS = ("asyncio", "uvloop")

T = TypeVar("T")


def responder_plan(
    cwd: str | os.PathLike[str], *, transport: Transport = Transport.UNIX, **env: str
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
