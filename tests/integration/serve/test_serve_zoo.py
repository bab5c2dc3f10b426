"""Zoo's behaviours through `corral serve`, end to end: a real server subprocess, real workers,
raw-socket clients, load loops that count every failed request.

- DEPLOY_FILE: the first request starts the script and, without DEPLOY_LOG, gets its output
  streamed live (chunked); other requests meanwhile get the self-refreshing "Application
  deployment in progress" page (503, Retry-After); then the application serves what the script
  prepared. A failing script leaves a 503 page with the end of its output.
- WATCH_FILE_CHANGES_MASK and restart.txt: rolling restarts under load, zero failed requests.
- SIGHUP and a changed web.config: the configuration is reloaded under load with zero failed
  requests; an unchanged application is left alone; a broken configuration is refused.
- ERROR_LOG_DIR: the application's log file has the deploy output and the workers' lives.
- Headless Chromium: the self-refreshing deployment page turns into the application's page.
"""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.chromium import Page, chromium
from tests.chromium import run as chromium_run
from tests.harness import WAIT, Conn, CorralServer, request, serve

__all__ = ["serve"]  # the shared server fixture

SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"

WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="zoo.app">
        <environmentVariables>
          <add name="PYTHONPATH" value="%APPL_PHYSICAL_PATH%" />
          <add name="WSGI_APP" value="wsgi.application" />
          <add name="ERROR_LOG_DIR" value="log" />
{extra}
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="zoo.app#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""

APP = """import os
from version import V

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()}|{V}|{os.environ.get('GREETING', '')}".encode()]
"""


def variables(**values: str) -> str:
    return "\n".join(f'          <add name="{k}" value="{v}" />' for k, v in values.items())


def make_site(root: Path, **values: str) -> Path:
    root.mkdir(parents=True)
    (root / "web.config").write_text(WEB_CONFIG.format(extra=variables(**values)))
    (root / "wsgi.py").write_text(APP)
    (root / "version.py").write_text("V = 'v1'\n")
    return root


def until(check: Callable[[], Any], what: str, server: CorralServer | None = None) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            log = f"\n{server.text()}" if server is not None else ""
            raise AssertionError(f"timed out waiting for {what}{log}")
        time.sleep(0.05)


class Load:
    """Client threads sending requests back to back, each on a new connection; every
    response that is not a 200, and every connection error, is a failure."""

    def __init__(self, port: int, clients: int = 3) -> None:
        self.port = port
        self.bodies: list[bytes] = []
        #: (sent, answered, body) of every 200, times from time.monotonic().
        self.timed: list[tuple[float, float, bytes]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = request(self.port)
            except Exception as exc:
                self.failures.append(repr(exc))
                continue
            if response.status == 200:
                self.bodies.append(response.body)
                self.timed.append((sent, time.monotonic(), response.body))
            else:
                self.failures.append(f"{response.status}: {response.body[:300]!r}")

    def last(self) -> bytes:
        return self.bodies[-1] if self.bodies else b""

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT)


def worker_pids(server: CorralServer) -> set[int]:
    return {process.pid for process in server.workers()}


def pid_of(body: bytes) -> int:
    return int(body.split(b"|")[0])


# ------------------------------------------------------------------------------------ deploy


def test_the_deploy_script_streams_to_the_first_browser_then_the_app_serves(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = tmp_path / "deploy-ok"
    shutil.copytree(SITES / "deploy-ok", root)
    server = serve(root, env={"DEPLOY_SLEEP": "2"})
    first = Conn(server.port)
    first.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = first.read_until(b"\r\n\r\n").decode("latin-1")
    assert head.startswith("HTTP/1.1 503 "), head
    assert "Transfer-Encoding: chunked" in head and "Retry-After: " in head
    assert "Cache-Control: no-store" in head
    # Live: the first line arrives while the script still sleeps.
    first.read_until(b"deploy: starting")
    other = request(server.port)
    assert other.status == 503 and other.header("retry-after")
    assert b"Application deployment in progress" in other.body
    assert b'<meta http-equiv="refresh"' in other.body
    rest = first.read_until(b"0\r\n\r\n")
    first.close()
    assert b"deploy: wrote generated/greeting.txt" in rest
    assert b"the deploy script succeeded" in rest
    assert b"</html>" in rest
    response = until(lambda: (r := request(server.port)).status == 200 and r, "the app", server)
    assert response.body.split(b"|")[1] == b"hello from the deploy script"
    server.stop()
    (log,) = (root / "log").glob("*.log")
    text = log.read_text()
    assert "deploy: wrote generated/greeting.txt" in text
    assert "the deploy script succeeded" in text
    assert re.search(r"started worker pid \d+", text)
    assert "is ready" in text


def test_a_failing_deploy_script_leaves_an_error_page_with_its_output(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = tmp_path / "deploy-fails"
    shutil.copytree(SITES / "deploy-fails", root)
    server = serve(root)
    first = request(server.port)
    assert first.status == 503
    assert b"Application deployment in progress" in first.body  # DEPLOY_LOG set: no stream
    failed = until(
        lambda: (r := request(server.port)) and b"deploy script failed" in r.body and r,
        "the failure page",
        server,
    )
    assert failed.status == 503 and failed.header("retry-after")
    assert b"it exited with code 3" in failed.body
    assert b"no matching distribution for corral-test-missing-package" in failed.body
    assert "no matching distribution" in (root / "log" / "deploy.log").read_text()


# ------------------------------------------------------------------------------------ restarts


def test_a_changed_py_file_restarts_rolling_with_no_failed_request(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = make_site(tmp_path / "site", WATCH_FILE_CHANGES_MASK="*.py")
    server = serve(root, "--min", "2", "--max", "2")
    old = {pid_of(until(lambda: (r := request(server.port)).status == 200 and r.body, "the app"))}
    load = Load(server.port)
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        old |= {pid_of(body) for body in load.bodies}
        (root / "version.py").write_text("V = 'v2'\n")
        until(lambda: load.last().split(b"|")[1] == b"v2", "the new code", server)
        server.wait_log(r"rolling restart \(version\.py changed\)")
        until(lambda: not ({pid_of(b) for b in load.bodies[-6:]} & old), "new workers only")
    finally:
        load.stop()
    assert load.failures == []


def test_touching_restart_txt_restarts_the_workers(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = make_site(tmp_path / "site")
    server = serve(root)
    pid = pid_of(until(lambda: (r := request(server.port)).status == 200 and r.body, "the app"))
    deadline = time.monotonic() + WAIT
    while pid_of(request(server.port).body) == pid:  # the watch may start after the first touch
        assert time.monotonic() < deadline, server.text()
        (root / "restart.txt").write_text(str(time.time()))
        time.sleep(0.5)
    server.wait_log(r"restart\.txt touched")


# ------------------------------------------------------------------------------------ reload


def test_sighup_and_web_config_changes_reload_without_failed_requests(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = make_site(tmp_path / "site", GREETING="one")
    server = serve(root, "--min", "2", "--max", "2")
    body = until(lambda: (r := request(server.port)).status == 200 and r.body, "the app", server)
    assert body.endswith(b"|one")
    workers = until(lambda: len(pids := worker_pids(server)) == 2 and pids, "two workers")
    # SIGHUP with nothing changed: the application is left alone.
    server.signal(signal.SIGHUP)
    server.wait_log(r"configuration reloaded: 1 unchanged")
    assert request(server.port).status == 200
    assert worker_pids(server) == workers
    # A broken web.config is refused; the running configuration keeps serving.
    (root / "web.config").write_text("<configuration><system.webServer>")
    server.wait_log(r"the configuration has errors; the running one stays in force")
    assert request(server.port).body.endswith(b"|one")
    assert worker_pids(server) == workers
    # A changed variable, under load: picked up by itself, no request fails.
    load = Load(server.port)
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        (root / "web.config").write_text(WEB_CONFIG.format(extra=variables(GREETING="two")))
        until(lambda: load.last().endswith(b"|two"), "the new configuration", server)
        server.wait_log(r"configuration reloaded: 1 changed")
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == []
    server.wait_log(r"its configuration changed; stopping the old one")


DEPLOYED_APP = """import os

def application(environ, start_response):
    greeting = os.environ.get("GREETING", "")
    here = os.path.dirname(os.path.abspath(__file__))
    deployed = os.path.exists(os.path.join(here, "deployed-" + greeting))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()}|{greeting}|{'deployed' if deployed else 'not deployed'}".encode()]
"""

#: Takes a second, then marks its configuration's GREETING as deployed; "fail" fails.
SLOW_DEPLOY = """import os, sys, time

greeting = os.environ["GREETING"]
print(f"deploy {greeting}: starting", flush=True)
time.sleep(1.0)
if greeting == "fail":
    print("deploy fail: the migration cannot run", flush=True)
    sys.exit(3)
with open(f"deployed-{greeting}", "w") as f:
    f.write("ok")
print(f"deploy {greeting}: done", flush=True)
"""


def deploy_site(root: Path, greeting: str) -> Path:
    make_site(root, GREETING=greeting, DEPLOY_FILE="deploy.py", DEPLOY_LOG="log/deploy.log")
    (root / "wsgi.py").write_text(DEPLOYED_APP)
    (root / "deploy.py").write_text(SLOW_DEPLOY)
    return root


def deploy_config(greeting: str) -> str:
    return WEB_CONFIG.format(
        extra=variables(GREETING=greeting, DEPLOY_FILE="deploy.py", DEPLOY_LOG="log/deploy.log")
    )


def test_a_config_change_with_a_deploy_file_keeps_the_old_app_serving_until_the_new_is_ready(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = deploy_site(tmp_path / "site", "one")
    server = serve(root, "--min", "2", "--max", "2")
    # The first deploy (nothing served before it): its page until it is done, as at start.
    body = until(lambda: (r := request(server.port)).status == 200 and r.body, "the app", server)
    assert body.endswith(b"|one|deployed")
    load = Load(server.port)
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        edited = len(load.bodies)
        (root / "web.config").write_text(deploy_config("two"))
        until(lambda: load.last().endswith(b"|two|deployed"), "the new configuration", server)
        server.wait_log(r"configuration reloaded: 1 changed")
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == []
    server.wait_log(r"running the new configuration's deploy script; the old one keeps serving")
    # The old application answered while the script ran (about a second); then only the new.
    answers = [body.split(b"|", 1)[1] for body in load.bodies[edited:]]
    assert answers.count(b"one|deployed") > 5
    # Once the new application has answered, every request sent after that gets it (a request
    # the old one took just before the switch may still finish after the first new answer).
    switched = min(answered for _, answered, body in load.timed if body.endswith(b"|two|deployed"))
    after = {body.split(b"|", 1)[1] for sent, _, body in load.timed if sent > switched}
    assert after == {b"two|deployed"}
    assert "deploy two: done" in (root / "log" / "deploy.log").read_text()
    server.wait_log(r"its configuration changed; stopping the old one")


def test_a_failing_deploy_of_a_new_config_leaves_the_old_app_serving(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = deploy_site(tmp_path / "site", "one")
    server = serve(root, "--min", "2", "--max", "2")
    until(lambda: (r := request(server.port)).status == 200 and r.body, "the app", server)
    workers = until(lambda: len(pids := worker_pids(server)) == 2 and pids, "two workers")
    load = Load(server.port)
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        (root / "web.config").write_text(deploy_config("fail"))
        server.wait_log(r"deploy: deploy fail: the migration cannot run")
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == []
    server.wait_log(
        r"app \S+: the new configuration's deploy failed \(the deploy script failed: it "
        r"exited with code 3\); the old one keeps serving"
    )
    assert {body.split(b"|", 1)[1] for body in load.bodies} == {b"one|deployed"}
    assert worker_pids(server) == workers
    assert "deploy fail: the migration cannot run" in (root / "log" / "deploy.log").read_text()
    (log,) = set((root / "log").glob("*.log")) - {root / "log" / "deploy.log"}  # ERROR_LOG_DIR's
    assert "the old one keeps serving" in log.read_text()
    # Still the old configuration: a later reload tries the new one again.
    assert request(server.port).body.endswith(b"|one|deployed")


def test_a_config_change_to_an_app_that_never_served_deploys_on_its_first_request(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    """Nothing old to keep serving (its first deploy failed): the new configuration takes over
    at once, and its script runs on its first request, behind the deployment page."""
    root = deploy_site(tmp_path / "site", "fail")
    server = serve(root)
    until(lambda: b"deploy script failed" in request(server.port).body, "the failure page", server)
    (root / "web.config").write_text(deploy_config("two"))
    server.wait_log(r"configuration reloaded: 1 changed")
    assert "running the new configuration's deploy script" not in server.text()
    first = request(server.port)
    assert first.status == 503 and b"Application deployment in progress" in first.body
    body = until(lambda: (r := request(server.port)).status == 200 and r.body, "the app", server)
    assert body.endswith(b"|two|deployed")


STAMPED_APP = """import os

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "stamp.txt")) as f:
    STAMP = f.read()  # read once, as the worker starts: a new worker shows a new stamp

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()}|{STAMP}".encode()]
"""


def stamping_deploy(stamp: str, code: int = 0) -> str:
    """A deploy script that takes a second, then stamps the application (or fails)."""
    return (
        f"import sys, time\nprint('deploy {stamp}: starting', flush=True)\ntime.sleep(1.0)\n"
        f"if {code}:\n    print('deploy {stamp}: failed', flush=True)\n    sys.exit({code})\n"
        f"open('stamp.txt', 'w').write('{stamp}')\n"
    )


def test_a_changed_deploy_script_runs_again_while_the_workers_serve_then_they_restart(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = make_site(
        tmp_path / "site",
        DEPLOY_FILE="deploy.py",
        DEPLOY_LOG="log/deploy.log",
        WATCH_FILE_CHANGES_MASK="*.py",
    )
    (root / "wsgi.py").write_text(STAMPED_APP)
    (root / "deploy.py").write_text(stamping_deploy("v1"))
    server = serve(root, "--min", "2", "--max", "2")
    body = until(lambda: (r := request(server.port)).status == 200 and r.body, "the app", server)
    assert body.endswith(b"|v1")
    load = Load(server.port)
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        # A new deploy script: it runs while the old workers serve, then they are replaced.
        (root / "deploy.py").write_text(stamping_deploy("v2"))
        until(lambda: load.last().endswith(b"|v2"), "the new deployment", server)
        server.wait_log(r"deploy\.py changed; running the deploy script again")
        # A failing one: the workers keep serving what they serve.
        (root / "deploy.py").write_text(stamping_deploy("v3", code=3))
        server.wait_log(r"it exited with code 3; the workers keep serving")
        before = len(load.bodies)
        until(lambda: len(load.bodies) > before + 5, "more requests", server)
        # restart.txt restarts the workers rolling; the script does not run again.
        pids = {pid_of(body) for body in load.bodies[-4:]}
        (root / "restart.txt").write_text("now")
        until(lambda: not ({pid_of(b) for b in load.bodies[-4:]} & pids), "new workers", server)
    finally:
        load.stop()
    assert load.failures == []
    assert {body.split(b"|")[1] for body in load.bodies[before:]} == {b"v2"}
    assert "deploy v3: failed" in (root / "log" / "deploy.log").read_text()


# ------------------------------------------------------------------------------------ browser


def test_a_browser_sees_the_deployment_then_the_application(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    """Headless Chromium opens the app while its deploy script runs: it gets the streamed
    deployment page, whose refresh (once the stream has ended) loads the application."""
    chromium()
    root = tmp_path / "deploy-ok"
    shutil.copytree(SITES / "deploy-ok", root)
    server = serve(root, "--set", "retry_after=1", env={"DEPLOY_SLEEP": "2"})
    # Virtual time lets the refresh fire at once after the page has loaded; it stands still
    # while the (real) stream is loading.
    result = chromium_run(
        f"http://127.0.0.1:{server.port}/", "--virtual-time-budget=60000", "--dump-dom"
    )
    page = Page(result.stdout.decode("utf-8", "replace"))
    assert "|hello from the deploy script|" in page.text, page.text
    server.wait_log(r"streaming the deploy script's output to 127\.0\.0\.1")
    server.wait_log(r"deploying -> serving")


def test_a_reload_adds_and_removes_applications_and_leaves_the_others_alone(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    for name in ("a", "b", "c"):
        make_site(tmp_path / name, GREETING=name)
    toml = tmp_path / "server.toml"
    mounts = {"/": "a", "/b": "b"}

    def write_toml() -> None:
        text = '[sites.s]\nbindings = ["127.0.0.1:8080"]\n'
        for path, folder in mounts.items():
            text += f'\n[sites.s.apps."{path}"]\nphysical_path = "{tmp_path / folder}"\n'
        toml.write_text(text)

    write_toml()
    server = serve(toml, "--max", "1")  # one worker per app: its pid identifies it
    root = until(lambda: (r := request(server.port)).status == 200 and r.body, "the app", server)
    assert root.endswith(b"|a")
    assert request(server.port, path="/b/").body.endswith(b"|b")
    load = Load(server.port)
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        del mounts["/b"]
        mounts["/c"] = "c"
        write_toml()
        server.signal(signal.SIGHUP)  # the watcher may see the file too: either reload will do
        server.wait_log(r"configuration reloaded: 1 added, 1 removed, 1 unchanged")
        until(
            lambda: request(server.port, path="/c/").body.endswith(b"|c"), "the added app", server
        )
        assert request(server.port, path="/b/").body.endswith(b"|a")  # the root application's now
        server.wait_log(r"removed from the configuration; stopping the old one")
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == []
    # The unchanged application kept its worker all along.
    assert {pid_of(body) for body in load.bodies} == {pid_of(root)}
