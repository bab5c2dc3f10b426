"""`corral status|restart|reload|stop|scale|top` against a real `corral serve`, through its
control socket, each as a real `corral` process (``run_corral``).

Every test has a runtime folder of its own (``XDG_RUNTIME_DIR`` for the server and the
client alike), so the client's "the only server running" is this test's server.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.harness import APP, WAIT, CorralServer, make_site, request, run_corral

from corral.ops.control import default_path


@pytest.fixture
def runtime() -> Iterator[dict[str, str]]:
    """A runtime folder of this test's own (short: a socket's path has at most 103 bytes)."""
    folder = tempfile.mkdtemp(prefix="crt-")
    yield {"XDG_RUNTIME_DIR": folder}
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def server(
    site: Path, env: dict[str, str], *args: str, wait_ready: bool = True
) -> Iterator[CorralServer]:
    corral = CorralServer(site, args=("--no-access-log", *args), env=env, own_control=False)
    try:
        yield corral.start(wait_ready=wait_ready)
    finally:
        corral.stop()


def corral(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_corral(*args, env=env)


def status(env: dict[str, str]) -> dict[str, object]:
    result = corral(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def app_status(env: dict[str, str], index: int = 0) -> dict[str, object]:
    apps = status(env)["apps"]
    assert isinstance(apps, list)
    found = apps[index]
    assert isinstance(found, dict)
    return found


def ready_pids(app: dict[str, object]) -> list[int]:
    workers = app["workers"]
    assert isinstance(workers, list)
    return sorted(w["pid"] for w in workers if w["state"] in ("idle", "busy", "probing"))


def wait_for(check: object, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def live_workers(corral_server: CorralServer) -> list[int]:
    pids = []
    for child in corral_server.workers():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.append(child.pid)
    return sorted(pids)


# ------------------------------------------------------------------------------ status


def test_status_shows_the_apps_workers_and_json_gives_the_document(
    tmp_path: Path, runtime: dict[str, str]
) -> None:
    site = make_site(tmp_path)
    with server(site, runtime, "--min", "2", "--max", "2", "--set", "health_interval=0.2") as host:
        socket_path = default_path(site.resolve(), runtime)
        info = socket_path.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(socket_path.parent.lstat().st_mode) == 0o700
        wait_for(lambda: len(ready_pids(app_status(runtime))) == 2, "two ready workers")
        assert request(host.port, path="/hello").status == 200

        document = status(runtime)
        assert document["schema"] == 1
        assert document["pid"] == host.proc.pid  # type: ignore[union-attr]
        assert document["config"] == str(site.resolve())
        assert document["state"] == "serving"
        assert document["listening"] == [f"http://127.0.0.1:{host.port}"]
        app = app_status(runtime)
        assert (app["id"], app["site"], app["engine"], app["state"]) == (
            "default",
            "default",
            "python",
            "serving",
        )
        assert (app["min_workers"], app["max_workers"]) == (2, 2)
        assert ready_pids(app) == live_workers(host)
        # Memory and CPU time, from the health rounds (every 0.2 s here).
        wait_for(
            lambda: all(
                w["rss_mb"] and w["rss_mb"] > 1 and w["cpu_seconds"] is not None
                for w in app_status(runtime)["workers"]  # type: ignore[union-attr]
            ),
            "memory and CPU figures",
        )
        requests = app["requests"]
        assert isinstance(requests, dict) and requests["total"] >= 2

        text = corral(runtime, "status")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith("corral ") and f"pid {host.proc.pid}  serving" in lines[0]  # type: ignore[union-attr]
        assert "default  (site default, /, engine python)  serving" in text.stdout
        assert "workers 2 (min 2, max 2)" in text.stdout
        for pid in live_workers(host):
            assert any(line.split()[:1] == [str(pid)] for line in lines), text.stdout

        # The same server through an explicit --control.
        explicit = run_corral("status", "--json", "--control", str(socket_path))
        assert json.loads(explicit.stdout)["pid"] == host.proc.pid  # type: ignore[union-attr]


def test_errors_are_one_line_and_a_non_zero_exit(tmp_path: Path, runtime: dict[str, str]) -> None:
    result = corral(runtime, "status")
    assert result.returncode == 1
    folder = Path(runtime["XDG_RUNTIME_DIR"]) / "corral"
    assert result.stderr.splitlines() == [
        f"corral status: no running corral found (no live control socket in {folder}); start "
        "one with corral serve, or name its socket with --control PATH"
    ]
    result = corral(runtime, "reload", "--control", str(tmp_path / "none.sock"))
    assert (result.returncode, result.stderr.splitlines()) == (
        1,
        [f"corral reload: no corral is running at {tmp_path / 'none.sock'} (no such socket)"],
    )
    with server(make_site(tmp_path), runtime):
        result = corral(runtime, "restart", "nope")
        assert (result.returncode, result.stderr.splitlines()) == (
            1,
            ["corral restart: no application 'nope' (applications: default)"],
        )
        result = corral(runtime, "scale", "default", "--min", "3", "--max", "2")
        assert (result.returncode, result.stderr.splitlines()) == (
            2,
            ["corral scale: min (3) must not exceed max (2)"],
        )
        result = corral(runtime, "scale", "default")
        assert (result.returncode, result.stderr.splitlines()) == (
            2,
            ["corral scale: give min, max or both"],
        )


def test_several_servers_are_listed_and_one_must_be_chosen(
    tmp_path: Path, runtime: dict[str, str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_site(tmp_path / "a")
    second = make_site(tmp_path / "b")
    with server(first, runtime, wait_ready=False), server(second, runtime, wait_ready=False):
        result = corral(runtime, "status")
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert lines[0] == (
            "corral status: 2 corral servers are running; choose one with --control PATH:"
        )
        listed = "\n".join(lines[1:])
        for site in (first, second):
            assert f"{default_path(site.resolve(), runtime)}  (pid " in listed
            assert f"serving {site.resolve()})" in listed
        chosen = run_corral(
            "status", "--json", "--control", str(default_path(second.resolve(), runtime))
        )
        assert json.loads(chosen.stdout)["config"] == str(second.resolve())


# ------------------------------------------------------------------------------ the socket


def test_a_dead_servers_socket_is_replaced_a_live_one_refuses_and_stop_removes_it(
    tmp_path: Path, runtime: dict[str, str]
) -> None:
    site = make_site(tmp_path)
    socket_path = default_path(site.resolve(), runtime)
    first = CorralServer(site, args=("--no-access-log",), env=runtime, own_control=False).start()
    try:
        # A second server of the same configuration: refused, the first one untouched.
        second = corral(runtime, "serve", str(site), "--listen", "127.0.0.1:0")
        assert second.returncode == 2
        assert second.stderr.splitlines()[-1] == (
            f"corral: another corral serves this configuration: its control socket "
            f"{socket_path} answers (stop it first, or give this one another --control path)"
        )
        assert status(runtime)["pid"] == first.proc.pid  # type: ignore[union-attr]
        first.signal(signal.SIGKILL)  # dies without cleaning up
        first.wait()
    finally:
        first.stop()
    assert socket_path.exists()
    with server(site, runtime) as third:
        third.wait_log("replacing the control socket .* left by a server that is gone")
        assert status(runtime)["pid"] == third.proc.pid  # type: ignore[union-attr]
        result = corral(runtime, "stop")
        assert result.returncode == 0, result.stderr
        pid = third.proc.pid  # type: ignore[union-attr]
        assert result.stdout.splitlines() == [
            f"corral (pid {pid}) is stopping",
            f"corral (pid {pid}) has stopped",
        ]
        assert third.wait() == 0
        assert not socket_path.exists()
        third.wait_log("stop asked for \\(corral stop\\)")


def test_control_chooses_the_sockets_path(tmp_path: Path, runtime: dict[str, str]) -> None:
    path = Path(runtime["XDG_RUNTIME_DIR"]) / "mine.sock"
    with server(make_site(tmp_path), runtime, "--control", str(path)) as host:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert not (Path(runtime["XDG_RUNTIME_DIR"]) / "corral").exists()
        result = run_corral("status", "--json", "--control", str(path))
        assert json.loads(result.stdout)["pid"] == host.proc.pid  # type: ignore[union-attr]
        assert run_corral("stop", "--control", str(path)).returncode == 0
        assert host.wait() == 0
    assert not path.exists()


# ------------------------------------------------------------------------------ restart


def test_restart_is_rolling_and_no_request_fails(tmp_path: Path, runtime: dict[str, str]) -> None:
    slowish = (
        'if path == "/slowish":\n        time.sleep(0.1)\n'
        '        start_response("200 OK", [])\n        return [str(os.getpid()).encode()]\n'
        '    if path == "/hello":'
    )
    app = APP.replace('if path == "/hello":', slowish)
    site = make_site(tmp_path, app)
    with server(site, runtime, "--min", "2", "--max", "2") as host:
        wait_for(lambda: len(ready_pids(app_status(runtime))) == 2, "two ready workers")
        before = live_workers(host)
        stop = threading.Event()
        outcomes: list[tuple[int, bytes] | str] = []  # (status, pid) or what went wrong

        def client() -> None:
            while not stop.is_set():
                try:
                    # A POST: the front may not send it again to another worker, as it may
                    # a GET that a dying worker never answered; each must be served once.
                    response = request(host.port, "POST", "/slowish", b"x" * 100)
                    outcomes.append((response.status, response.body))
                except OSError as exc:  # a refused or reset connection counts as a failure
                    outcomes.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            started = len(outcomes)
            result = corral(runtime, "restart", "default")
            during = outcomes[started:]
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(WAIT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "default: restarted"
        failures = [o for o in outcomes if isinstance(o, str) or o[0] != 200]
        assert failures == [], failures[:10]
        after = live_workers(host)
        assert len(after) == 2 and not set(after) & set(before), (before, after)
        # Requests kept flowing while the restart ran: answered by the old workers, then by the
        # new ones.
        served = {int(o[1]) for o in outcomes if not isinstance(o, str)}
        assert served == set(before) | set(after), (served, before, after)
        assert during and len(during) < len(outcomes)
        assert app_status(runtime)["restarts"] == 1
        host.wait_log("restart asked for \\(corral restart\\)")


# ------------------------------------------------------------------------------ scale, reload


def test_scale_starts_and_stops_workers_until_a_reload_restores_the_bounds(
    tmp_path: Path, runtime: dict[str, str]
) -> None:
    with server(make_site(tmp_path), runtime, "--min", "1", "--max", "1") as host:
        wait_for(lambda: len(live_workers(host)) == 1, "one worker")

        def workers_are(count: int) -> None:
            wait_for(
                lambda: (
                    len(live_workers(host)) == count
                    and len(ready_pids(app_status(runtime))) == count
                ),
                f"{count} workers",
            )

        result = corral(runtime, "scale", "default", "--min", "3", "--max", "3")
        assert (result.returncode, result.stdout.strip()) == (
            0,
            "default: workers 3 to 3 (until the next reload)",
        )
        workers_are(3)
        app = app_status(runtime)
        assert (app["min_workers"], app["max_workers"]) == (3, 3)
        three = live_workers(host)

        assert corral(runtime, "scale", "default", "--max", "2", "--min", "2").returncode == 0
        workers_are(2)
        assert set(live_workers(host)) < set(three)  # surplus workers stopped, the rest kept

        reload = corral(runtime, "reload")
        assert (reload.returncode, reload.stdout.strip()) == (0, "configuration reloaded")
        workers_are(1)
        app = app_status(runtime)
        assert (app["min_workers"], app["max_workers"]) == (1, 1)


def test_reload_reports_a_broken_configuration(tmp_path: Path, runtime: dict[str, str]) -> None:
    site = make_site(tmp_path)
    with server(site, runtime) as host:
        (site / "corral.toml").write_text('[apps.default]\nmin_instances = "many"\n')
        result = corral(runtime, "reload")
        assert result.returncode == 1
        assert result.stderr.startswith(
            "corral reload: the configuration has errors; the running one stays in force:\n"
        )
        assert "corral.toml:2" in result.stderr
        assert request(host.port, path="/hello").status == 200


# ------------------------------------------------------------------------------ top


def test_top_redraws_the_status_and_quits_on_q(tmp_path: Path, runtime: dict[str, str]) -> None:
    with server(make_site(tmp_path), runtime, "--min", "1", "--max", "1") as host:
        wait_for(lambda: len(ready_pids(app_status(runtime))) == 1, "a ready worker")
        (pid,) = live_workers(host)
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "top", "--interval", "0.2"],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env={**os.environ, **runtime, "COLUMNS": "120", "LINES": "40"},
            start_new_session=True,
        )
        os.close(secondary)
        screen = b""

        def read_until(marker: bytes) -> None:
            nonlocal screen
            deadline = time.monotonic() + WAIT
            while marker not in screen and time.monotonic() < deadline:
                ready, _, _ = select.select([primary], [], [], 0.2)
                if ready:
                    with contextlib.suppress(OSError):
                        screen += os.read(primary, 65536)
            assert marker in screen, screen[-2000:]

        try:
            read_until(b"default  (site default, /, engine python)  serving")
            read_until(f"{pid}  idle".encode())
            redraws = screen.count(b"\x1b[H")
            read_until(b"\x1b[H" * 1)  # the screen is redrawn...
            time.sleep(0.6)
            with contextlib.suppress(OSError):
                screen += os.read(primary, 65536)
            assert screen.count(b"\x1b[H") > redraws  # ...every interval
            os.write(primary, b"q")
            assert proc.wait(WAIT) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(OSError):
                while select.select([primary], [], [], 0.2)[0]:
                    chunk = os.read(primary, 65536)
                    if not chunk:
                        break
                    screen += chunk
            os.close(primary)
        assert screen.startswith(b"\x1b[?1049h")  # the alternate screen, left at the end
        assert b"\x1b[?1049l" in screen


# ------------------------------------------------------------------------------ titles


def test_workers_show_their_site_app_and_engine_in_ps(
    tmp_path: Path, runtime: dict[str, str]
) -> None:
    site = make_site(tmp_path)
    # A bare virtualenv: no Corral, none of its dependencies.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(site / "venv")],
        check=True,
        timeout=120,
    )
    (site / "corral.toml").write_text('[apps.blog]\nengine = "python"\nvirtual_env = "venv"\n')
    with server(site, runtime, "--min", "2", "--max", "2") as host:
        # Ready workers (a worker sets its title first thing, so a ready one has it).
        wait_for(lambda: len(ready_pids(app_status(runtime))) == 2, "two ready workers")
        title = "corral worker default/blog (python)"
        assert ready_pids(app_status(runtime)) == live_workers(host)
        for pid in live_workers(host):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert cmdline.split(b"\0")[0].decode() == title, cmdline
            assert cmdline.rstrip(b"\0") == title.encode()
            shown = subprocess.run(
                ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
            ).stdout.strip()
            assert shown == title
            assert Path(f"/proc/{pid}/comm").read_text().strip() == "corral blog"
        # The workers run the virtualenv's interpreter (it sets sys.prefix), titles and all.
        assert request(host.port, path="/hello").status == 200
