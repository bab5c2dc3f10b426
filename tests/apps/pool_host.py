"""A host process for the "no orphans" tests: start a pool of N workers, print their pids as one
JSON line, then sleep until killed.

    python pool_host.py LOOP N [--no-pdeathsig] [--ignore-liveness] [--real-worker=APP_ROOT]

--no-pdeathsig         do not ask the kernel for PR_SET_PDEATHSIG (only the liveness pipe is left)
--ignore-liveness      the workers ignore fd 3 (only PR_SET_PDEATHSIG is left)
--real-worker=APP_ROOT run Corral's Python worker (python -m corral.worker) on the app in
                       APP_ROOT instead of the stdlib responder fixture
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile

from fcgi_client import connect
from pool_testkit import responder_plan, run_under

import corral.supervision.process as process_module
from corral.supervision import Pool, PoolSettings
from corral.supervision.launch import LaunchPlan, python_worker_plan


async def main(count: int, plan: LaunchPlan) -> None:
    settings = PoolSettings(min_instances=count, max_instances=count)
    pool = Pool("orphans", plan, settings, connect)
    lease = await pool.acquire()
    pool.release(lease, reusable=True)
    for _ in range(600):
        if sum(1 for w in pool.snapshot().workers if w.state == "idle") >= count:
            break
        await asyncio.sleep(0.05)
    print(json.dumps([w.pid for w in pool.snapshot().workers]), flush=True)
    await asyncio.sleep(3600)


def choose_plan(flags: set[str]) -> LaunchPlan:
    for flag in flags:
        if flag.startswith("--real-worker="):
            return python_worker_plan(flag.split("=", 1)[1], app_env={})
    if "--ignore-liveness" in flags:
        return responder_plan(tempfile.gettempdir(), ignore_liveness="1")
    return responder_plan(tempfile.gettempdir())


if __name__ == "__main__":
    loop, count, flags = sys.argv[1], int(sys.argv[2]), set(sys.argv[3:])
    if "--no-pdeathsig" in flags:
        process_module._prctl = None
    run_under(loop, main(count, choose_plan(flags)))
