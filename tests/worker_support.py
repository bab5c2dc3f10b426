"""Starting and stopping real worker processes for the worker's tests (fixtures live here and
are imported by the test_worker_* modules)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ports import port

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "tests" / "apps"
SRC = ROOT / "src"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

import fcgiclient  # noqa: E402 - lives in tests/apps, made importable just above

__all__ = ["fcgiclient"]

STARTUP_TIMEOUT = 15.0


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ASGI_APP", "WSGI_APP", "WSGI_HANDLER", "DJANGO_SETTINGS_MODULE")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path
    address: str | tuple[str, int] | None = None
    extra_fds: list[int] = field(default_factory=list)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if "serving" in self.log:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.02)
        raise AssertionError(f"worker did not start:\n{self.log}")

    def stop(self) -> int:
        """SIGTERM (graceful), then SIGKILL to its process group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        for fd in self.extra_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.extra_fds.clear()
        return self.proc.returncode


def start_worker(
    tmp_path: Path,
    *args: str,
    cwd: Path = APPS,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    pass_fds: tuple[int, ...] = (),
    wait: bool = True,
    address: str | tuple[str, int] | None = None,
) -> Worker:
    log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral.worker", *args],
            cwd=cwd,
            env=worker_env(env),
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=True,  # its own process group: teardown kills only what we started
        )
    worker = Worker(proc, log_path, address)
    if wait:
        try:
            worker.wait_ready()
        except BaseException:
            worker.stop()
            raise
    return worker


class Workers:
    """The workers a test started; the test module's fixture stops them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Worker] = []

    def start(self, *args: str, **kwargs: object) -> Worker:
        worker = start_worker(self.tmp_path, *args, **kwargs)  # type: ignore[arg-type]
        self.started.append(worker)
        return worker

    def unix(self, *args: str, app: str = "worker_apps:application", **kwargs: object) -> Worker:
        """A worker bound to a fresh Unix socket serving ``app``."""
        address = unix_address(self.tmp_path, f"w{len(self.started)}.sock")
        worker = self.start("--bind", f"unix:{address}", "--app", app, *args, **kwargs)
        worker.address = address
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


def workers_fixture(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def unix_address(tmp_path: Path, name: str = "w.sock") -> str:
    # AF_UNIX paths are limited to ~100 bytes; tmp_path can be long.
    path = tmp_path / name
    if len(str(path)) < 100:
        return str(path)
    import tempfile

    short = tempfile.mkdtemp(prefix="cw")
    return os.path.join(short, name)


def free_port() -> int:
    """A TCP port leased machine-wide for the rest of this process (see tests/ports.py)."""
    return port()
