"""No orphans: when the host dies, even by SIGKILL, its workers die too.

A helper host process (tests/apps/pool_host.py) starts a pool of three workers, prints their pids
and sleeps; the test SIGKILLs it and watches the workers go. Two defences exist (the liveness pipe
at fd 3, and PR_SET_PDEATHSIG on Linux); each is also tested alone.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parents[2] / "apps"
sys.path.insert(0, str(APPS))

from pool_testkit import LOOPS, wait_gone  # noqa: E402

WORKERS = 3


def start_host(loop: str, *flags: str) -> tuple[subprocess.Popen[bytes], list[int]]:
    host = subprocess.Popen(
        [sys.executable, str(APPS / "pool_host.py"), loop, str(WORKERS), *flags],
        cwd=APPS,
        stdout=subprocess.PIPE,
    )
    assert host.stdout is not None
    ready, _, _ = select.select([host.stdout], [], [], 30)
    line = host.stdout.readline() if ready else b""
    if not line:
        host.kill()
        host.wait()
        pytest.fail("the host did not report its workers' pids")
    return host, json.loads(line)


def kill_host_and_check(host: subprocess.Popen[bytes], pids: list[int]) -> None:
    try:
        assert len(pids) == WORKERS
        assert sorted(wait_gone(pids, 0.0)) == sorted(pids), "workers run before the host dies"
        os.kill(host.pid, signal.SIGKILL)  # the host this test started
        host.wait()
        survivors = wait_gone(pids, 5.0)
        assert survivors == [], f"workers outlived their host: {survivors}"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if host.stdout is not None:
            host.stdout.close()
        for pid in wait_gone(pids, 0.0):  # pragma: no cover - cleanup after a failure
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("loop", LOOPS)
def test_workers_die_when_the_host_is_sigkilled(loop: str) -> None:
    host, pids = start_host(loop)
    kill_host_and_check(host, pids)


@pytest.mark.parametrize("loop", LOOPS)
def test_the_liveness_pipe_alone_ends_orphaned_workers(loop: str) -> None:
    """As on macOS, where PR_SET_PDEATHSIG does not exist."""
    host, pids = start_host(loop, "--no-pdeathsig")
    kill_host_and_check(host, pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("loop", LOOPS)
def test_pdeathsig_alone_ends_workers_that_ignore_the_liveness_pipe(loop: str) -> None:
    """php-cgi and other commands do not know about fd 3: the kernel still ends them."""
    host, pids = start_host(loop, "--ignore-liveness")
    kill_host_and_check(host, pids)


@pytest.mark.parametrize("loop", LOOPS)
def test_without_either_defence_workers_would_survive(loop: str) -> None:
    """The control experiment: proves the tests above can fail."""
    host, pids = start_host(loop, "--no-pdeathsig", "--ignore-liveness")
    try:
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        assert sorted(wait_gone(pids, 1.0)) == sorted(pids)
    finally:
        if host.stdout is not None:
            host.stdout.close()
        for pid in wait_gone(pids, 0.0):
            os.kill(pid, signal.SIGKILL)  # workers of the host this test started
        assert wait_gone(pids, 5.0) == []


@pytest.mark.parametrize("loop", LOOPS)
def test_the_real_python_worker_honours_the_liveness_pipe(loop: str, tmp_path: Path) -> None:
    """Corral's worker, given --liveness-fd 3 by python_worker_plan, ends itself when the host
    is gone, with PR_SET_PDEATHSIG out of the picture."""
    (tmp_path / "wsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
    )
    host, pids = start_host(loop, "--no-pdeathsig", f"--real-worker={tmp_path}")
    kill_host_and_check(host, pids)
