"""One worker process (``supervision.process``): what the child receives (fd 0 listening socket,
fd 3 liveness pipe, its own session), how its output is logged and kept, how it is stopped. Under
asyncio's default loop and under uvloop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from pool_testkit import LOOPS, pid_alive, run_under, wait_gone

from corral.supervision import (
    LIVENESS_FD,
    LaunchPlan,
    SpawnError,
    WorkerProcess,
    WorkerSocket,
    describe_returncode,
)

REPORT = textwrap.dedent(
    """
    import json, os, socket, stat
    sock = socket.socket(fileno=0)
    print(json.dumps({
        "fd0_listening": sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1,
        "fd0_name": (
            sock.getsockname() if sock.family == socket.AF_UNIX else list(sock.getsockname()[:2])
        ),
        "fd3_is_pipe": stat.S_ISFIFO(os.fstat(3).st_mode),
        "own_session": os.getsid(0) == os.getpid(),
        "own_group": os.getpgid(0) == os.getpid(),
        "cwd": os.getcwd(),
        "marker": os.environ.get("MARKER"),
    }), flush=True)
    sock.detach()
    """
)


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app_log() -> Any:
    handler = Collect()
    logger = logging.getLogger("corral.app.proc")
    logger.addHandler(handler)
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(saved)


def plan(tmp_path: Path, code: str, transport: WorkerSocket = WorkerSocket.UNIX) -> LaunchPlan:
    env = dict(os.environ, MARKER="from-the-plan")
    return LaunchPlan(
        argv=(sys.executable, "-c", code), env=env, cwd=str(tmp_path), transport=transport
    )


async def spawn_and_wait(p: LaunchPlan, socket_path: str | None) -> WorkerProcess:
    process = await WorkerProcess.spawn(p, app="proc", socket_path=socket_path)
    try:
        await process.wait()
        await process.wait_output()
    finally:
        await process.close()
    return process


def test_the_child_gets_its_socket_its_liveness_pipe_and_its_own_session(
    loop: str, tmp_path: Path, app_log: list[logging.LogRecord]
) -> None:
    socket_path = str(tmp_path / "w.sock")
    process = run_under(loop, spawn_and_wait(plan(tmp_path, REPORT), socket_path))
    assert process.returncode == 0
    lines = [r.getMessage() for r in app_log if getattr(r, "stream", "") == "stdout"]
    assert len(lines) == 1
    prefix = f"proc[{process.pid}] "
    assert lines[0].startswith(prefix)
    report = json.loads(lines[0][len(prefix) :])
    assert report == {
        "fd0_listening": True,
        "fd0_name": socket_path,
        "fd3_is_pipe": True,
        "own_session": True,
        "own_group": True,
        "cwd": str(tmp_path),
        "marker": "from-the-plan",
    }
    assert LIVENESS_FD == 3
    assert not os.path.exists(socket_path)  # removed once the worker is gone


def test_tcp_transport_passes_a_loopback_listening_socket(loop: str, tmp_path: Path) -> None:
    process = run_under(loop, spawn_and_wait(plan(tmp_path, REPORT, WorkerSocket.TCP), None))
    address = process.address
    assert isinstance(address, tuple) and address[0] == "127.0.0.1" and address[1] > 0
    assert process.returncode == 0


def test_no_host_descriptor_leaks_into_the_child_under_the_default_loop(tmp_path: Path) -> None:
    """Only 0, 1, 2 and 3. (uvloop/libuv leaves its own duplicates of the stdio descriptors in
    the child, and does not close inherited ones; it is checked for fd 0-3 by the test above.)"""
    code = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    records: list[logging.LogRecord] = []
    handler = Collect()
    logger = logging.getLogger("corral.app.proc")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run_under("asyncio", spawn_and_wait(plan(tmp_path, code), str(tmp_path / "w.sock")))
        records = handler.records
    finally:
        logger.removeHandler(handler)
    fds = json.loads(records[0].getMessage().split(" ", 1)[1])
    # The listing's own directory fd shows up too (opened by listdir at 4 or above).
    assert fds[:4] == [0, 1, 2, 3] and len(fds) <= 5


def test_output_lines_are_logged_split_and_the_stderr_tail_is_kept(
    loop: str, tmp_path: Path, app_log: list[logging.LogRecord]
) -> None:
    code = textwrap.dedent(
        """
        import sys
        for n in range(250):
            sys.stderr.write(f"err {n}\\r\\n")
        sys.stdout.write("x" * 40000 + "\\n")
        sys.stdout.write("caf\\xe9 \\udcff tail without newline")
        sys.stdout.flush()
        sys.exit(3)
        """
    )
    process = run_under(loop, spawn_and_wait(plan(tmp_path, code), str(tmp_path / "w.sock")))
    assert process.returncode == 3 and process.describe_exit() == "exited with code 3"
    stderr = [r for r in app_log if getattr(r, "stream", "") == "stderr"]
    stdout = [r for r in app_log if getattr(r, "stream", "") == "stdout"]
    assert len(stderr) == 250 and all(r.levelno == logging.WARNING for r in stderr)
    assert stderr[0].getMessage() == f"proc[{process.pid}] err 0"  # \r stripped
    assert all(
        getattr(r, "app", "") == "proc" and getattr(r, "pid", 0) == process.pid for r in stderr
    )
    tail = process.stderr_tail().splitlines()
    assert len(tail) == 200 and tail[0] == "err 50" and tail[-1] == "err 249"
    # 40000 bytes: split at 16 KiB; the unterminated last line is logged at EOF.
    sizes = [len(r.getMessage()) - len(f"proc[{process.pid}] ") for r in stdout]
    assert sizes[:3] == [16384, 16384, 40000 - 2 * 16384]
    assert stdout[-1].getMessage().endswith("tail without newline")
    assert all(r.levelno == logging.INFO for r in stdout)


def test_stop_terminates_then_kills_the_group(loop: str, tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )

    async def main() -> tuple[int, int, int]:
        process = await WorkerProcess.spawn(
            plan(tmp_path, source), app="proc", socket_path=str(tmp_path / "w.sock")
        )
        lines: list[str] = []
        handler = Collect()
        logger = logging.getLogger("corral.app.proc")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            for _ in range(200):
                lines = [r.getMessage() for r in handler.records]
                if lines:
                    break
                await asyncio.sleep(0.05)
            returncode = await process.stop(0.3)
        finally:
            logger.removeHandler(handler)
        grandchild = int(lines[0].split()[-1])
        return process.pid, grandchild, returncode

    pid, grandchild, code = run_under(loop, main())
    assert describe_returncode(code) == "killed by signal SIGKILL"
    assert not pid_alive(pid)
    # The grandchild got its SIGKILL with the group, but it dies (and is reaped by whoever
    # inherited it) in its own time: wait for that, boundedly.
    assert wait_gone([grandchild], within=10) == []


def test_a_missing_program_is_a_spawn_error(loop: str, tmp_path: Path) -> None:
    missing = LaunchPlan(argv=(str(tmp_path / "missing"),), env={}, cwd=str(tmp_path))
    with pytest.raises(SpawnError, match="missing"):
        run_under(loop, WorkerProcess.spawn(missing, app="proc", socket_path=str(tmp_path / "s")))
    assert not os.path.exists(tmp_path / "s")
    bad_cwd = LaunchPlan(argv=(sys.executable,), env={}, cwd=str(tmp_path / "nowhere"))
    with pytest.raises(SpawnError, match="nowhere"):
        run_under(loop, WorkerProcess.spawn(bad_cwd, app="proc", socket_path=str(tmp_path / "s")))


def test_describe_returncode() -> None:
    assert describe_returncode(0) == "exited with code 0"
    assert describe_returncode(-9) == "killed by signal SIGKILL"
    assert describe_returncode(-15) == "killed by signal SIGTERM"
