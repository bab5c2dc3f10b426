"""The servers under test: how each one is started, checked and stopped.

Every server is a subprocess in a process group of its own, listening on a free loopback port,
running bench/site/wsgi.py, either with its own defaults (workers None: defaults.py) or with the
same number of worker processes. Its output goes to a log file that is shown when it fails to
start.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import defaults
import psutil
from proctree import tree_pids

BENCH_DIR = Path(__file__).resolve().parent
SITE_DIR = BENCH_DIR / "site"
BACKLOG = 1024
START_TIMEOUT = 60.0
STOP_GRACE = 10.0


class ServerError(Exception):
    """A server could not be started, or misbehaved: the message says why and shows its log."""


def _venv_program(name: str) -> str | None:
    """The program next to the running interpreter (the virtualenv's bin), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the server if the harness dies (killed by a test's timeout, say)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerKind:
    name: str
    description: str
    program: str  # the executable looked up next to sys.executable, then on PATH

    def command(self, exe: str, port: int, workers: int | None) -> list[str]:
        if workers is None:
            return defaults.command(self.name, exe, port, SITE_DIR)
        listen = f"127.0.0.1:{port}"
        site = str(SITE_DIR)
        if self.name == "corral":
            return [exe, "serve", site, "--listen", listen, "--min", str(workers),
                    "--max", str(workers), "--no-access-log"]  # fmt: skip
        if self.name == "gunicorn":
            return [exe, "--worker-class", "sync", "--workers", str(workers), "--bind", listen,
                    "--backlog", str(BACKLOG), "--chdir", site, "--log-level", "warning",
                    "wsgi:application"]  # fmt: skip
        if self.name == "gunicorn-nginx":
            return [*defaults.command(self.name, exe, port, SITE_DIR), "--workers", str(workers)]
        if self.name == "granian":
            return [exe, "--interface", "wsgi", "--workers", str(workers), "--host", "127.0.0.1",
                    "--port", str(port), "--backlog", str(BACKLOG), "--working-dir", site,
                    "wsgi:application"]  # fmt: skip
        if self.name == "uwsgi":
            return [exe, "--master", "--processes", str(workers), "--http11-socket", listen,
                    "--listen", str(BACKLOG), "--wsgi-file", str(SITE_DIR / "wsgi.py"),
                    "--need-app", "--die-on-term", "--disable-logging", "--ignore-sigpipe",
                    "--ignore-write-errors", "--disable-write-exception"]  # fmt: skip
        raise AssertionError(self.name)

    def version(self, exe: str) -> str:
        args = [exe, "--version"]  # (Corral's says which build runs: compiled or pure Python)
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"


KINDS = {
    "corral": ServerKind("corral", "Corral: front + N FastCGI workers", "corral"),
    "gunicorn": ServerKind("gunicorn", "gunicorn, sync workers", "gunicorn"),
    "gunicorn-nginx": ServerKind(
        "gunicorn-nginx",
        "gunicorn, sync workers, behind nginx (its documented deployment)",
        "gunicorn",
    ),
    "granian": ServerKind("granian", "granian, WSGI interface", "granian"),
    "uwsgi": ServerKind("uwsgi", "uWSGI, prefork, --http11-socket", "uwsgi"),
}


@dataclass
class Server:
    kind: ServerKind
    workers: int | None  # None: the server's own defaults (defaults.py)
    log_dir: Path
    port: int = 0
    exe: str = ""
    version: str = ""
    proc: subprocess.Popen[bytes] | None = None
    # What the preflight check found out about the server's connection handling, as notes for
    # the kept-alive scenarios and for the Connection: close one.
    keepalive_notes: list[str] = field(default_factory=list)
    close_notes: list[str] = field(default_factory=list)
    #: More arguments for the server's command line (bench/run.py --corral-set).
    extra_args: tuple[str, ...] = ()
    argv: list[str] = field(default_factory=list)  # the command line it was started with
    #: The folder of the server's program (bench/run.py --corral-build compiled); None: next
    #: to this interpreter, else on PATH.
    bin_dir: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.kind.name}.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        tail = "\n".join("    " + line for line in text[-lines:])
        return tail or "    (empty log)"

    def start(self) -> None:
        exe = (
            _venv_program(self.kind.program)
            if self.bin_dir is None
            else str(self.bin_dir / self.kind.program)
        )
        if exe is None:
            raise ServerError(
                f"{self.kind.name}: program {self.kind.program!r} not found next to "
                f"{sys.executable} nor on PATH (install the bench extras: "
                f"pip install -e '.[bench]')"
            )
        self.exe = exe
        self.version = self.kind.version(exe)
        self.port = free_port()
        cmd = [*self.kind.command(exe, self.port, self.workers), *self.extra_args]
        if "--access-log" in self.extra_args:  # (bench/run.py --corral-access-log)
            cmd.remove("--no-access-log")
        self.argv = cmd
        env = dict(defaults.clean_environment(os.environ), PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=SITE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(
                    f"{self.kind.name} exited with status {code} before serving "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            try:
                status, _, _ = request(self.port, "GET", "/hello", timeout=5.0)
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    return
                last_error = f"GET /hello answered {status}"
            time.sleep(0.1)
        raise ServerError(
            f"{self.kind.name} did not answer GET /hello with 200 within {START_TIMEOUT:.0f} s "
            f"({last_error}; log {self.log_path}):\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the server's process group, then any descendant that left the group."""
        if self.proc is None:
            return
        descendants = tree_pids(self.proc.pid)
        pgid = self.proc.pid  # process_group=0: the group we created has the child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # stragglers still in our group
        # Workers that a server put into process groups of their own (Corral does) are still
        # descendants we started; give them the same grace, by pid (psutil checks the pid was not
        # reused).
        _, alive = psutil.wait_procs(descendants, timeout=STOP_GRACE)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=STOP_GRACE)
        self.proc = None


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 10.0,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on ``conn`` (or a fresh connection): (status, headers, body)."""
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        if own:
            conn.close()
