"""Preloaded workers and server hooks through `corral serve`, end to end.

A template process imports the app once and forks its workers (PRELOAD); a broken import at a
restart leaves the old workers serving; the hooks (HOOK_APP_START, HOOK_AFTER_FORK,
HOOK_WORKER_EXIT) run in the right processes and order; an app whose import starts a thread is
started directly; a template that dies is replaced, and its workers go on serving.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from tests.harness import WAIT, CorralServer, request, run_corral

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="preloaded workers need Linux (pidfd)"
)

WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="pre.app">
        <environmentVariables>
          <add name="PYTHONPATH" value="%APPL_PHYSICAL_PATH%" />
          <add name="WSGI_APP" value="wsgi.application" />
{extra}
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="pre.app#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""

APP = """import os
from version import V

def application(environ, start_response):
    if environ["PATH_INFO"] == "/die":
        os._exit(3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()}|{V}".encode()]
"""

HOOKS = """import os

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.log")

def _note(what):
    with open(LOG, "a") as log:
        log.write(f"{what} {os.getpid()}\\n")

def start():
    _note("app-start")

def after_fork():
    _note("after-fork")

def worker_exit():
    _note("worker-exit")
"""

HOOK_VARS = (
    '<add name="HOOK_APP_START" value="hooks:start" />\n'
    '<add name="HOOK_AFTER_FORK" value="hooks:after_fork" />\n'
    '<add name="HOOK_WORKER_EXIT" value="hooks:worker_exit" />'
)


def make_site(root: Path, preload: str = "on", extra: str = "", app: str = APP) -> Path:
    site = root / "site"
    site.mkdir()
    (site / "web.config").write_text(
        WEB_CONFIG.format(extra=f'<add name="PRELOAD" value="{preload}" />\n{extra}')
    )
    (site / "wsgi.py").write_text(app)
    (site / "version.py").write_text("V = 1\n")
    (site / "hooks.py").write_text(HOOKS)
    return site


def start(site: Path, *args: str) -> CorralServer:
    return CorralServer(site, args=("--no-access-log", "--min", "2", "--max", "2", *args)).start(
        wait_ready=False
    )


def answer(server: CorralServer) -> tuple[int, int]:
    """(pid, version) of the worker that served one request."""
    response = request(server.port)
    assert response.status == 200, server.text()
    pid, version = response.body.decode().split("|")
    return int(pid), int(version)


def wait_for(predicate: object, what: str, server: CorralServer) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}:\n{server.text()}")


def worker_pids(server: CorralServer) -> set[int]:
    return {p.pid for p in server.workers()}


def test_workers_are_forked_from_one_template(tmp_path: Path) -> None:
    control = str(Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"pre-{os.getpid()}.sock")
    server = start(make_site(tmp_path), "--control", control)
    try:
        answer(server)
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
        [template] = server.templates()
        title = psutil.Process(template).cmdline()[0]
        assert title == "corral template default/pre.app (python.3.wsgi)"
        for pid in worker_pids(server):
            worker = psutil.Process(pid)
            assert worker.ppid() == template
            assert os.getpgid(pid) == pid  # its own process group, as a direct worker's
            assert worker.cmdline()[0] == "corral worker default/pre.app (python.3.wsgi)"
        server.wait_log(rf"template pid {template} has loaded the app")
        assert "forked from the template" in server.text()
        status = json.loads(run_corral("status", "--json", "--control", control).stdout)
        [app] = status["apps"]
        assert app["template_pid"] == template
        assert {w["pid"] for w in app["workers"]} == worker_pids(server)
        # A worker holds its own output pipes, never the template's (nor the control socket).
        template_ends = {os.readlink(f"/proc/{template}/fd/{fd}") for fd in (1, 2)}
        for pid in worker_pids(server):
            held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            assert not held & template_ends
        for pid in worker_pids(server):  # each worker's output is logged under its own pid
            server.wait_log(rf"\[{pid}\] corral worker\[{pid}\] notice: serving")
    finally:
        server.stop()


def test_preload_off_starts_each_worker_directly(tmp_path: Path) -> None:
    server = start(make_site(tmp_path, preload="off"))
    try:
        answer(server)
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
        assert server.templates() == []
        assert server.proc is not None
        for pid in worker_pids(server):
            assert psutil.Process(pid).ppid() == server.proc.pid
    finally:
        server.stop()


def test_a_broken_import_at_a_restart_leaves_the_old_workers_serving(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    server = start(site)
    try:
        _old_pid, version = answer(server)
        assert version == 1
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
        old_workers = worker_pids(server)
        [old_template] = server.templates()

        (site / "version.py").write_text("raise ImportError('version.py is broken on purpose')\n")
        (site / "restart.txt").write_text("1")
        server.wait_log(r"rolling restart failed: the new workers cannot start; the old ones keep")
        assert "ImportError: version.py is broken on purpose" in server.text()
        assert "the application could not be loaded (template exited with code 4)" in (
            server.text()
        )
        for _ in range(10):
            pid, version = answer(server)
            assert version == 1 and pid in old_workers
        assert worker_pids(server) == old_workers
        assert server.templates() == [old_template]  # it still reaps its workers

        (site / "version.py").write_text("V = 2\n")
        (site / "restart.txt").write_text("2")
        wait_for(lambda: answer(server)[1] == 2, "the new code served", server)
        wait_for(
            lambda: len(worker_pids(server)) == 2 and not worker_pids(server) & old_workers,
            "old workers replaced",
            server,
        )
        # The old template stops once its last worker has gone.
        wait_for(lambda: old_template not in server.templates(), "old template gone", server)
        [new_template] = server.templates()
        assert all(psutil.Process(p).ppid() == new_template for p in worker_pids(server))
    finally:
        server.stop()


def hook_lines(site: Path) -> list[tuple[str, int]]:
    path = site / "hooks.log"
    if not path.exists():
        return []
    return [(w, int(p)) for w, p in (line.split() for line in path.read_text().splitlines())]


def test_hooks_run_in_the_template_and_in_each_forked_worker(tmp_path: Path) -> None:
    site = make_site(tmp_path, extra=HOOK_VARS)
    server = start(site)
    answer(server)
    wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
    workers = worker_pids(server)
    [template] = server.templates()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    server.stop()
    for pid in (template, *workers):  # a clean stop leaves nothing behind
        assert not psutil.pid_exists(pid)
    lines = hook_lines(site)
    assert lines[0] == ("app-start", template), lines
    assert [w for w, _ in lines].count("app-start") == 1  # once, in the template
    forks = [pid for what, pid in lines if what == "after-fork"]
    exits = [pid for what, pid in lines if what == "worker-exit"]
    assert sorted(forks) == sorted(workers)
    assert sorted(exits) == sorted(workers)
    for pid in workers:
        assert lines.index(("after-fork", pid)) < lines.index(("worker-exit", pid))


def test_without_preloading_app_start_runs_in_each_worker_and_no_after_fork(
    tmp_path: Path,
) -> None:
    site = make_site(tmp_path, preload="off", extra=HOOK_VARS)
    server = start(site)
    answer(server)
    wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
    workers = worker_pids(server)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    server.stop()
    lines = hook_lines(site)
    assert sorted(pid for what, pid in lines if what == "app-start") == sorted(workers)
    assert sorted(pid for what, pid in lines if what == "worker-exit") == sorted(workers)
    assert not [line for line in lines if line[0] == "after-fork"]


def test_a_failing_after_fork_hook_keeps_the_worker_from_serving(tmp_path: Path) -> None:
    site = make_site(tmp_path, extra='<add name="HOOK_AFTER_FORK" value="hooks:missing" />')
    server = start(site)
    try:
        response = request(server.port)
        assert response.status == 503, server.text()
        server.wait_log(r"the after fork hook 'hooks:missing' failed")
    finally:
        server.stop()


THREADED_APP = APP.replace(
    "from version import V",
    "from version import V\nimport threading, time\n"
    "threading.Thread(target=time.sleep, args=(3600,), name='poller', daemon=True).start()",
)


def test_an_app_that_starts_threads_at_import_is_started_directly(tmp_path: Path) -> None:
    server = start(make_site(tmp_path, app=THREADED_APP))
    try:
        answer(server)
        server.wait_log(r"not preloading workers: its import started 1 thread\(s\) \(poller\)")
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
        wait_for(lambda: server.templates() == [], "the template gone", server)
        assert server.proc is not None
        assert all(psutil.Process(p).ppid() == server.proc.pid for p in worker_pids(server))
    finally:
        server.stop()


def test_crashes_of_workers_and_of_the_template(tmp_path: Path) -> None:
    server = start(make_site(tmp_path))
    try:
        answer(server)
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
        [template] = server.templates()
        # A worker that crashes: its template reports the code, the pool replaces it.
        request(server.port, path="/die")
        server.wait_log(r"exited with code 3")
        wait_for(lambda: len(worker_pids(server)) == 2, "the crashed worker replaced", server)
        # The template dies: its workers go on serving.
        workers = worker_pids(server)
        for _ in range(4):
            answer(server)  # both ready
        os.kill(template, signal.SIGKILL)
        server.wait_log(rf"template pid {template} ended; the next worker starts a new one")
        for _ in range(5):
            assert answer(server)[0] in workers
        # A worker that dies now has nobody to report its code; its pidfd says it ended, and
        # its replacement comes from a new template.
        request(server.port, path="/die")
        server.wait_log(r"ended after its template; its exit status is unknown")
        wait_for(lambda: len(server.templates()) == 1, "a new template", server)
        [new_template] = server.templates()
        assert new_template != template
        wait_for(
            lambda: any(psutil.Process(p).ppid() == new_template for p in worker_pids(server)),
            "a worker forked from the new template",
            server,
        )
        answer(server)
    finally:
        server.stop()


def test_nothing_outlives_a_killed_host(tmp_path: Path) -> None:
    """The template and its workers each read EOF on their own liveness pipe."""
    server = start(make_site(tmp_path))
    try:
        answer(server)
        wait_for(lambda: len(worker_pids(server)) == 2, "two workers", server)
        left = [server.templates()[0], *worker_pids(server)]
        server.signal(signal.SIGKILL)
        server.wait()

        def gone() -> bool:
            for pid in left:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        return False
                except psutil.NoSuchProcess:
                    pass
            return True

        wait_for(gone, "the template and workers gone with their host", server)
    finally:
        server.stop()


SHARED_HOOK = """import os
import sys

def after_fork():
    # Runs in the forked worker before it serves: what it already has came from the template.
    mine = sorted(m for m in sys.modules if m.startswith("corral.worker."))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared.log")
    with open(path, "a") as log:
        log.write(" ".join(mine) + "\\n")
"""


def test_the_serving_modules_come_from_the_template(tmp_path: Path) -> None:
    # A module each forked worker imported for itself would be that worker's private memory
    # (the thread pool's module was 0.8 MB of a 3.3 MB worker).
    site = make_site(tmp_path, extra='<add name="HOOK_AFTER_FORK" value="shared:after_fork" />')
    (site / "shared.py").write_text(SHARED_HOOK)
    server = start(site)
    try:
        answer(server)
        log = site / "shared.log"
        wait_for(log.exists, "the after-fork hook ran", server)
        modules = log.read_text().splitlines()[0].split()
        for needed in ("corral.worker.server", "corral.worker.threads", "corral.worker.wsgi"):
            assert needed in modules, modules
    finally:
        server.stop()
