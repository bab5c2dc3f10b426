"""Users, folders and applications for the multi-tenant tests (issue 13).

The tests run as root (this machine and CI do) and make their own users with ``useradd``
(unique names per run, removed with ``userdel -r`` at the end). Their applications run Corral's
worker under a virtualenv made from ``/usr/bin/python3``, which every user can read (Corral's own
interpreter may live in root's home), in folders under a fresh 0755 folder in /tmp (pytest's own
temporary folders are 0700: no other user could reach an application there).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REQUIRE_EXTERNAL, require_program
from corral.supervision.launch import corral_package_parent

SYSTEM_PYTHON = "/usr/bin/python3"


def require_root() -> None:
    """Skip (fail under CORRAL_REQUIRE_EXTERNAL=1) unless running as root with useradd."""
    if os.geteuid() != 0:
        message = "needs root (to create users and switch to them)"
        if REQUIRE_EXTERNAL:
            pytest.fail(message + " (CORRAL_REQUIRE_EXTERNAL=1 forbids skipping)")
        pytest.skip(message)
    require_program("useradd")
    require_program("userdel")
    require_program(SYSTEM_PYTHON)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str


@contextlib.contextmanager
def users(base: Path, count: int) -> Iterator[list[User]]:
    """``count`` fresh users (each with its own group and a home under ``base``)."""
    made: list[User] = []
    tag = uuid.uuid4().hex[:6]
    try:
        for index in range(count):
            name = f"ct{tag}{index}"
            home = base / f"home-{name}"
            subprocess.run(
                [
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    str(home),
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(name)
            made.append(User(name, entry.pw_uid, entry.pw_gid, entry.pw_dir))
        yield made
    finally:
        for user in made:
            subprocess.run(["userdel", "-r", user.name], capture_output=True, check=False)


@contextlib.contextmanager
def tenant_base() -> Iterator[Path]:
    """A fresh folder in /tmp that every user may traverse (0755), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="corral-tenants-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_venv(base: Path) -> Path:
    venv = base / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def make_front_venv(base: Path) -> Path:
    """An interpreter for Corral itself that every user can read (for a front that drops to
    its own user and goes on importing modules): a virtualenv from /usr/bin/python3 that sees
    this interpreter's packages and Corral's source (same Python minor version: the compiled
    packages fit)."""
    venv = base / "front-venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if found != str(sys.version_info[:2]):
        pytest.skip(f"{SYSTEM_PYTHON} is Python {found}, not this interpreter's version")
    purelib = sysconfig.get_paths()["purelib"]
    target = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(target, "corral-tests.pth").write_text(f"{corral_package_parent()}\n{purelib}\n")
    return venv / "bin" / "python"


#: A WSGI application that reports who it runs as and tries to reach other applications.
TENANT_APP = textwrap.dedent(
    """
    import errno, json, os, socket, stat, sys, tempfile, time
    from urllib.parse import parse_qs

    def _try(action):
        try:
            action()
            return "ok"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))

    def _connect(path):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
        finally:
            s.close()

    def _read_mem(pid):
        with open(f"/proc/{pid}/mem", "rb") as f:
            f.read(1)

    def _bomb(limit, seconds):
        # Bounded: at most `limit` forks, each child sleeps `seconds` then exits; all in one
        # process group the test kills afterwards.
        children, refused = [], False
        deadline = time.monotonic() + seconds
        while len(children) < limit and time.monotonic() < deadline:
            try:
                pid = os.fork()
            except OSError as exc:
                refused = exc.errno == errno.EAGAIN
                break
            if pid == 0:
                time.sleep(seconds)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        return {"forked": len(children), "refused": refused}

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/whoami":
            tmp = os.environ.get("TMPDIR", "")
            info = os.stat(tmp) if tmp else None
            body = {
                "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                "groups": sorted(os.getgroups()), "home": os.environ.get("HOME"),
                "tmpdir": tmp, "tmp_uid": info.st_uid if info else None,
                "tmp_mode": stat.S_IMODE(info.st_mode) if info else None,
                "tempfile": tempfile.gettempdir(), "pid": os.getpid(),
                "nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE),
                "marker": open("marker.txt").read() if os.path.exists("marker.txt") else None,
            }
        elif path == "/probe":
            pid = int(query["pid"])
            body = {
                "kill": _try(lambda: os.kill(pid, 0)),
                "mem": _try(lambda: _read_mem(pid)),
                "connect": _try(lambda: _connect(query["sock"])),
                "listdir": _try(lambda: os.listdir(query["dir"])),
            }
        elif path == "/hog":
            chunks = []
            for _ in range(int(query.get("mb", "400")) // 10):
                chunks.append(bytearray(10 * 1024 * 1024))
                for i in range(0, len(chunks[-1]), 4096):
                    chunks[-1][i] = 1
            body = {"survived": len(chunks) * 10}
        elif path == "/spin":
            wall = float(query.get("seconds", "2"))
            start, cpu = time.monotonic(), time.process_time()
            while time.monotonic() - start < wall:
                pass
            body = {"cpu": time.process_time() - cpu, "wall": time.monotonic() - start}
        elif path == "/bomb":
            body = _bomb(int(query.get("limit", "200")), float(query.get("seconds", "5")))
        else:
            body = {"hello": True}
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    """
)


def make_app(
    base: Path,
    name: str,
    owner: User,
    venv: Path,
    *,
    mode: int = 0o700,
    group: int | None = None,
    deploy: bool = False,
    settings: str | None = None,
) -> Path:
    """An application folder ``base/name`` owned by ``owner`` (mode ``mode``)."""
    folder = base / name
    folder.mkdir()
    (folder / "wsgi.py").write_text(TENANT_APP)
    toml = settings or (
        f'[apps.{name}]\nengine = "python"\nvirtual_env = "{venv}"\nwsgi_app = "wsgi:application"\n'
    )
    if deploy:
        (folder / "deploy.py").write_text(
            "import os\nopen('marker.txt', 'w').write(f'{os.getuid()} {os.environ[\"HOME\"]}')\n"
        )
        toml += 'deploy_file = "deploy.py"\n'
    (folder / "corral.toml").write_text(toml)
    for path in (folder, *folder.iterdir()):
        os.chown(path, owner.uid, owner.gid if group is None else group)
    os.chmod(folder, mode)
    return folder
