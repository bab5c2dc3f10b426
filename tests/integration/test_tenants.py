"""Multi-tenant hosting (issue 13): applications under their own users, apart from each other,
within hard limits; the front dropping its own privileges. Real `corral serve`, real users.

Every test needs root (``tenant_support.require_root``): it makes its own users with useradd and
removes them with userdel -r.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.harness import CorralServer, Response, request, run_corral
from tests.tenant_support import (
    User,
    make_app,
    make_front_venv,
    make_venv,
    require_root,
    tenant_base,
    users,
)

from corral.ops.rundir import name_for
from ports import Lease, engine_ports_toml, ports

__all__ = ["ports"]  # the port-lease fixture

pytestmark = pytest.mark.timeout(180)


def _json(response: Response) -> dict[str, object]:
    assert response.status == 200, response.body.decode("utf-8", "replace")
    result = json.loads(response.body)
    assert isinstance(result, dict)
    return result


def _server_toml(
    base: Path, sites: dict[str, tuple[Path, str]], server: str = "", engines: str = ""
) -> Path:
    """One site per application, told apart by host name (``NAME.test``); ``sites`` maps the
    name to (folder, extra TOML lines of the site table)."""
    lines = [server]
    for name, (folder, extra) in sites.items():
        lines += [
            f"[sites.{name}]",
            f'bindings = ["127.0.0.1:8080:{name}.test"]',
            extra,
            f'[sites.{name}.apps."/"]',
            f'physical_path = "{folder}"',
            "",
        ]
    path = base / "server.toml"
    path.write_text("\n".join(lines) + engines)
    os.chmod(path, 0o644)
    return path


def _get(server: CorralServer, site: str, path: str) -> Response:
    return request(server.port, path=path, host=f"{site}.test")


def _ready(server: CorralServer, *sites: str) -> None:
    """Wait until each site's application answers (a deploy script runs first)."""
    for site in sites:
        deadline = time.monotonic() + 60
        while _get(server, site, "/").status != 200:
            assert time.monotonic() < deadline, server.text()
            time.sleep(0.2)


def _worker_of(server: CorralServer, uid: int) -> psutil.Process:
    assert server.proc is not None
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        # (A preloaded app's template runs as its user too: a worker is one it forked.)
        if child.uids().real == uid and not child.cmdline()[0].startswith("corral template"):
            return child
    raise AssertionError(f"no worker of uid {uid}:\n{server.text()}")


def _socket_dir_of(base: Path, uid: int) -> Path:
    """The pool socket folder handed to ``uid`` (in Corral's tenant folder)."""
    for entry in (base / "tenants").glob("*/run/corral-*"):
        try:
            info = entry.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and any(entry.glob("*.sock")):
            return entry
    raise AssertionError(f"no socket folder of uid {uid}")


@pytest.fixture
def tenants() -> Iterator[tuple[Path, list[User], Path]]:
    require_root()
    with tenant_base() as base, users(base, 3) as made:
        try:
            yield base, made, make_venv(base)
        finally:
            # A front that dropped its privileges cannot remove its own server's cgroup
            # folders (their parent is root's): the test does.
            server = name_for(base / "server.toml")
            for mount in Path("/sys/fs/cgroup").iterdir():
                folder = mount / "corral" / server
                for app in folder.glob("*/") if folder.is_dir() else ():
                    with contextlib.suppress(OSError):
                        app.rmdir()
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _serve(base: Path, config: Path, *args: str, python: Path | None = None) -> CorralServer:
    env = {"CORRAL_TENANT_DIR": str(base / "tenants")}
    server = CorralServer(config, args=("--no-access-log", *args), env=env)
    if python is not None:
        server.command = (str(python), "-m", "corral")
    return server.start(wait_ready=False)


def test_two_apps_run_as_their_users_and_cannot_reach_each_other(
    tenants: tuple[Path, list[User], Path],
) -> None:
    base, (a, b, _), venv = tenants
    folder_a = make_app(base, "alpha", a, venv, deploy=True)
    folder_b = make_app(base, "beta", b, venv)
    config = _server_toml(
        base,
        {
            "alpha": (folder_a, f'user = "{a.name}"\nmax_open_files = 512'),
            "beta": (folder_b, f'user = "{b.name}"'),
        },
    )
    server = _serve(base, config)
    try:
        _ready(server, "alpha", "beta")
        me_a = _json(_get(server, "alpha", "/whoami"))
        me_b = _json(_get(server, "beta", "/whoami"))
        # Each runs as its own user, with its groups, HOME and a private TMPDIR.
        assert (me_a["uid"], me_a["euid"], me_a["gid"]) == (a.uid, a.uid, a.gid)
        assert (me_b["uid"], me_b["euid"], me_b["gid"]) == (b.uid, b.uid, b.gid)
        assert me_a["groups"] == [a.gid] and me_b["groups"] == [b.gid]
        assert me_a["home"] == a.home and me_b["home"] == b.home
        assert me_a["tmpdir"] != me_b["tmpdir"]
        for me, user in ((me_a, a), (me_b, b)):
            assert me["tmp_uid"] == user.uid and me["tmp_mode"] == 0o700
            assert me["tempfile"] == me["tmpdir"]
        assert me_a["nofile"] == [512, 512]
        # The deploy script ran as its application's user; so do the apps' templates (the
        # preloaded workers' parents), so that what they fork is the user's too.
        assert me_a["marker"] == f"{a.uid} {a.home}"
        templates = server.templates()
        uids = {psutil.Process(pid).uids().real for pid in templates}
        assert templates and uids <= {a.uid, b.uid}
        # A cannot signal B's worker, read its memory, connect to its socket, or list its
        # folder (0700); B's socket folder is B's, group the front's, 0770.
        b_worker = _worker_of(server, b.uid)
        b_sockets = _socket_dir_of(base, b.uid)
        assert stat.S_IMODE(b_sockets.stat().st_mode) == 0o770
        b_socket = next(b_sockets.glob("*.sock"))
        probe = _json(
            _get(
                server,
                "alpha",
                f"/probe?pid={b_worker.pid}&sock={b_socket}&dir={folder_b}",
            )
        )
        assert probe == {
            "kill": "EPERM",
            "mem": "EACCES",
            "connect": "EACCES",
            "listdir": "EACCES",
        }
        # The same probes of its own worker succeed (the probe can tell success from failure).
        a_worker = _worker_of(server, a.uid)
        a_socket = next(_socket_dir_of(base, a.uid).glob("*.sock"))
        own = _json(
            _get(server, "alpha", f"/probe?pid={a_worker.pid}&sock={a_socket}&dir={folder_a}")
        )
        assert own["kill"] == "ok" and own["listdir"] == "ok" and own["connect"] == "ok"
    finally:
        server.stop()
    # The private TMPDIRs are removed with their pools.
    assert not Path(str(me_a["tmpdir"])).exists()


def _hammer(server: CorralServer, site: str, stop: threading.Event, results: list[int]) -> None:
    while not stop.is_set():
        try:
            results.append(_get(server, site, "/").status)
        except OSError:
            results.append(0)


def test_memory_hog_is_stopped_at_its_hard_limit_and_its_neighbour_serves_on(
    tenants: tuple[Path, list[User], Path],
) -> None:
    base, (a, b, _), venv = tenants
    hog = make_app(base, "hog", a, venv)
    calm = make_app(base, "calm", b, venv)
    config = _server_toml(
        base,
        {
            "hog": (hog, f'user = "{a.name}"\nmemory_hard_limit = 120'),
            "calm": (calm, f'user = "{b.name}"'),
        },
    )
    server = _serve(base, config)
    try:
        _ready(server, "hog", "calm")
        first = _worker_of(server, a.uid).pid
        stop, results = threading.Event(), []
        hammer = threading.Thread(target=_hammer, args=(server, "calm", stop, results))
        hammer.start()
        try:
            hogged = _get(server, "hog", "/hog?mb=400")
            assert hogged.status >= 500  # its worker died under it
            server.wait_log(r"killed by the memory limit \(cgroup\)")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the pool replaces it like a crash
                if _get(server, "hog", "/").status == 200:
                    break
                time.sleep(0.2)
            assert _worker_of(server, a.uid).pid != first
        finally:
            stop.set()
            hammer.join(30)
        assert results and all(status == 200 for status in results), set(results)
    finally:
        server.stop()


def test_fork_bomb_is_stopped_at_its_process_limit_and_cpu_at_its_quota(
    tenants: tuple[Path, list[User], Path],
) -> None:
    base, (a, _, _), venv = tenants
    bomb = make_app(base, "bomb", a, venv)
    limits = f'user = "{a.name}"\nmax_processes = 24\ncpu_quota = 20'
    config = _server_toml(base, {"bomb": (bomb, limits)})
    server = _serve(base, config, "--min", "1", "--max", "1")
    try:
        _ready(server, "bomb")
        result = _json(_get(server, "bomb", "/bomb?limit=200&seconds=5"))
        assert result["refused"] is True
        assert 0 < int(str(result["forked"])) < 24
        assert _get(server, "bomb", "/").status == 200  # and it still serves
        # A busy loop gets a fifth of a core (cgroup cpu quota), however idle the machine.
        spun = _json(_get(server, "bomb", "/spin?seconds=2"))
        assert float(str(spun["cpu"])) <= 0.3 * float(str(spun["wall"])), spun
    finally:
        server.stop()


def _free_low_port() -> int:
    """A port below 1024 that nothing listens on now (loopback)."""
    for port in range(700, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


def _status_field(pid: int, name: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{name}:\s+(\S+)$", text, re.M)
    assert found, text
    return int(found.group(1), 16 if name.startswith("Cap") else 10)


def _status_ids(pid: int) -> tuple[list[int], list[int]]:
    text = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(.*)$", text, re.M)
    gid = re.search(r"^Gid:\s+(.*)$", text, re.M)
    assert uid and gid
    return [int(v) for v in uid.group(1).split()], [int(v) for v in gid.group(1).split()]


def test_front_drops_to_its_user_after_binding_a_low_port_and_still_manages_apps(
    tenants: tuple[Path, list[User], Path], ports: Lease
) -> None:
    base, (a, b, front), venv = tenants
    # The front reads and serves the applications' folders: group = the front's group.
    folder_a = make_app(base, "alpha", a, venv, mode=0o750, group=front.gid)
    folder_b = make_app(base, "beta", b, venv, mode=0o750, group=front.gid)
    # And an HTTP server that listens on a port itself (its readiness check cannot read the
    # descriptors of another user's process after the drop: it keeps to the connection test).
    command = f"{venv}/bin/python -m http.server %PORT% --bind 127.0.0.1"
    folder_c = make_app(
        base,
        "gamma",
        a,
        venv,
        mode=0o750,
        group=front.gid,
        settings=f'[apps.gamma]\nengine = "http"\napp_command = "{command}"\n',
    )
    config = _server_toml(
        base,
        {
            "alpha": (folder_a, f'user = "{a.name}"\nmax_processes = 64'),
            "beta": (folder_b, f'user = "{b.name}"'),
            "gamma": (folder_c, f'user = "{a.name}"'),
        },
        engines=engine_ports_toml(["http"], ports),
    )
    port = _free_low_port()
    python = make_front_venv(base)  # this interpreter may live where the front cannot read
    server = _serve(
        base, config, "--listen", f"127.0.0.1:{port}", "--user", front.name, python=python
    )
    try:
        assert server.port == port
        assert server.proc is not None
        server.wait_log(rf"dropped privileges to {front.name}")
        _ready(server, "alpha", "beta")
        uids, gids = _status_ids(server.proc.pid)
        assert uids == [front.uid] * 4 and gids == [front.gid] * 4
        # It keeps CAP_CHOWN, CAP_KILL, CAP_SETGID and CAP_SETUID, nothing else.
        assert _status_field(server.proc.pid, "CapEff") == 0xE1
        assert _status_field(server.proc.pid, "CapBnd") == 0xE1
        # It starts its applications as their users...
        assert _json(_get(server, "alpha", "/whoami"))["uid"] == a.uid
        assert _json(_get(server, "beta", "/whoami"))["uid"] == b.uid
        _ready(server, "gamma")
        first_alpha = int(str(_json(_get(server, "alpha", "/whoami"))["pid"]))
        assert b"wsgi.py" in _get(server, "gamma", "/").body
        # A reload after the drop changes a limit and starts the changed application anew,
        # as its user, in its group (the cgroups found at start are kept).
        config.write_text(config.read_text().replace("max_processes = 64", "max_processes = 65"))
        server.signal(1)
        server.wait_log(r"configuration reloaded: 1 changed")
        deadline = time.monotonic() + 30
        while _worker_of(server, a.uid).pid == first_alpha:
            assert time.monotonic() < deadline, server.text()
            time.sleep(0.2)
        assert _json(_get(server, "alpha", "/whoami"))["uid"] == a.uid
        workers = [_worker_of(server, a.uid), _worker_of(server, b.uid)]
        for worker in workers:  # which inherit none of the front's capabilities
            assert _status_field(worker.pid, "CapEff") == 0
            assert _status_field(worker.pid, "CapPrm") == 0
            assert _status_field(worker.pid, "NoNewPrivs") == 1
        # ...and stops them (signals to other users' process groups).
        server.signal(15)
        assert server.wait(30) == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
        assert "stopped" in server.text()
    finally:
        server.stop()


def test_root_apps_warn_and_refuse_with_allow_root_apps_false(
    tenants: tuple[Path, list[User], Path],
) -> None:
    base, (a, _, _), venv = tenants
    folder = make_app(base, "plain", a, venv)
    config = _server_toml(base, {"plain": (folder, "")})
    checked = run_corral("check", str(config))
    assert checked.returncode == 0, checked.stderr
    warning = r"warning: plain:/:plain has no user of its own and runs as root"
    assert re.search(warning, checked.stdout), checked.stdout
    assert "limits enforced by: cgroup v" in checked.stdout
    refusing = _server_toml(base, {"plain": (folder, "")}, "[server]\nallow_root_apps = false\n")
    refused = run_corral("check", str(refusing))
    assert refused.returncode != 0
    assert re.search(
        rf"{re.escape(str(refusing))}:\d+: user: plain:/:plain would run as root", refused.stderr
    ), refused.stderr
    served = run_corral("serve", str(refusing), "--listen", "127.0.0.1:0")
    assert served.returncode != 0 and "would run as root" in served.stderr


def test_an_apps_web_console_runs_its_shell_as_the_apps_user(
    tenants: tuple[Path, list[User], Path],
) -> None:
    from websockets.sync.client import connect

    base, (a, _, _), venv = tenants
    folder = make_app(
        base,
        "gamma",
        a,
        venv,
        settings=(
            f'[apps.gamma]\nengine = "python"\nvirtual_env = "{venv}"\n'
            'wsgi_app = "wsgi:application"\nconsole_url = "console"\n'
        ),
    )
    config = _server_toml(base, {"gamma": (folder, f'user = "{a.name}"')})
    env = {"CORRAL_TENANT_DIR": str(base / "tenants"), "CORRAL_ADMIN_TOKEN": "tenant-console-token"}
    server = CorralServer(config, args=("--no-access-log",), env=env).start(wait_ready=False)
    try:
        _ready(server, "gamma")
        with connect(
            f"ws://gamma.test:{server.port}/console/ws",  # (routed by its Host)
            sock=socket.create_connection(("127.0.0.1", server.port)),
            additional_headers={"Authorization": "Bearer tenant-console-token"},
            open_timeout=20,
        ) as console:
            console.send(b"echo ID=$(id -u):$(id -g):$HOME:$TMPDIR:END\r")
            seen = ""
            deadline = time.monotonic() + 20
            while not re.search(r"ID=\d+:\d+:[^:]*:[^:]*:END", seen):
                assert time.monotonic() < deadline, seen
                with contextlib.suppress(TimeoutError):
                    data = console.recv(timeout=1)
                    seen += data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        match = re.search(r"ID=(\d+):(\d+):([^:]*):([^:]*):END", seen)
        assert match, seen
        uid, gid, home, tmpdir = match.groups()
        assert (int(uid), int(gid), home) == (a.uid, a.gid, a.home)
        assert tmpdir and Path(tmpdir).stat().st_uid == a.uid
    finally:
        server.stop()
