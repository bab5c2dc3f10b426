"""Issue 5's acceptance: one `corral serve` hosts, at once, a WSGI app (/), an ASGI app with a
WebSocket endpoint (/asgi, named by the `asgi_app` setting), a Node.js app with a WebSocket
endpoint (/node) and a PHP site (/php), each under its own virtual path; HTTP requests, an
upload and WebSocket round trips reach all of them concurrently; killing one application's
processes affects only that application, and its next request starts it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_front_harness import WAIT, CorralServer, request
from tests.conftest import require_program
from tests.wsclient import WebSocket

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"

WSGI = textwrap.dedent(
    """
    import hashlib, os

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/upload":
            body = environ["wsgi.input"].read()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [hashlib.sha256(body).hexdigest().encode()]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"wsgi {os.getpid()} {environ['SCRIPT_NAME']!r} {path}".encode()]
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    require_program("node", "nodejs")
    require_program("php-cgi")
    root = tmp_path_factory.mktemp("four")
    (root / "wsgi").mkdir()
    (root / "wsgi" / "wsgi.py").write_text(WSGI)
    (root / "wsgi" / "corral.toml").write_text('[apps.wsgi]\nengine = "python"\n')
    (root / "asgi").mkdir()
    shutil.copy(APPS / "asgi_apps.py", root / "asgi" / "chat.py")
    (root / "asgi" / "corral.toml").write_text(
        '[apps.chat]\nengine = "python"\nasgi_app = "chat:app"\n'
    )
    shutil.copytree(ROOT / "examples" / "nodejs", root / "node")
    shutil.copytree(ROOT / "examples" / "php", root / "php")
    port = free_port()
    (root / "server.toml").write_text(
        textwrap.dedent(
            f"""
            [sites.all]
            bindings = ["127.0.0.1:{port}:"]
            [sites.all.apps."/"]
            physical_path = "{root / "wsgi"}"
            [sites.all.apps."/asgi"]
            physical_path = "{root / "asgi"}"
            [sites.all.apps."/node"]
            physical_path = "{root / "node"}"
            [sites.all.apps."/php"]
            physical_path = "{root / "php"}"
            """
        )
    )
    server = CorralServer(root / "server.toml", args=("--no-access-log",))
    server.proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", str(root / "server.toml"), "--no-access-log"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    server.port = port

    def read() -> None:
        assert server.proc is not None and server.proc.stdout is not None
        for raw in server.proc.stdout:
            server.log.append(raw.decode("utf-8", "replace").rstrip("\n"))

    server._reader = threading.Thread(target=read, daemon=True)
    server._reader.start()
    try:
        server.wait_log(r"serving ")
        yield server
    finally:
        server.stop()


def pids_of(server: CorralServer, marker: str) -> list[int]:
    """Worker processes of the host whose command line holds ``marker``."""
    found = []
    assert server.proc is not None
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if marker in " ".join(child.cmdline()) or marker in child.cwd():
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def echo(ws: WebSocket, text: str) -> str:
    answer = ws.echo(text)
    assert isinstance(answer, str)
    return answer


def test_four_stacks_side_by_side_concurrently(server: CorralServer) -> None:
    upload = os.urandom(1_500_000)
    digest = hashlib.sha256(upload).hexdigest()
    failures: list[str] = []

    def check(name: str, fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:  # reported below with the name
            failures.append(f"{name}: {exc!r}")

    def wsgi() -> None:
        r = request(server.port, path="/hello")
        assert r.status == 200 and r.body.startswith(b"wsgi ") and b"'' /hello" in r.body
        r = request(server.port, "POST", "/upload", upload)
        assert r.body.decode() == digest

    def asgi() -> None:
        r = request(server.port, path="/asgi/hello")
        assert (r.status, r.body) == (200, b"Hello, ASGI!")
        r = request(server.port, "POST", "/asgi/echo", upload)
        assert json.loads(r.body)["sha256"] == digest
        ws = WebSocket(server.port, "/asgi/ws/echo")
        try:
            for index in range(20):
                assert echo(ws, f"asgi {index}") == f"asgi {index}"
        finally:
            ws.close()

    def node() -> None:
        r = request(server.port, path="/node/")
        assert r.status == 200 and r.body.startswith(b"Hello from Node.js")
        r = request(server.port, "POST", "/node/upload", upload)
        assert json.loads(r.body)["sha256"] == digest
        ws = WebSocket(server.port, "/node/ws")
        try:
            for index in range(20):
                assert echo(ws, f"node {index}") == f"node {index}"
        finally:
            ws.close()

    def php() -> None:
        r = request(server.port, path="/php/")
        assert r.status == 200 and b"Hello from PHP" in r.body
        r = request(
            server.port,
            "POST",
            "/php/index.php",
            b"name=Corral",
            headers="Content-Type: application/x-www-form-urlencoded\r\n",
        )
        assert b"Nice to meet you, Corral." in r.body

    threads = [
        threading.Thread(target=check, args=(name, fn))
        for name, fn in (("wsgi", wsgi), ("asgi", asgi), ("node", node), ("php", php)) * 2
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not failures, "\n".join(failures) + "\n" + server.text()[-3000:]


def test_killing_one_applications_workers_affects_only_that_application(
    server: CorralServer,
) -> None:
    assert request(server.port, path="/asgi/hello").status == 200
    ws = WebSocket(server.port, "/node/ws")  # a Node WebSocket open across the kill
    try:
        assert echo(ws, "before") == "before"
        victims = pids_of(server, "/asgi")
        assert victims, "no ASGI worker found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)  # processes this test's server started
        # The others never noticed.
        assert echo(ws, "during") == "during"
        assert request(server.port, path="/hello").status == 200
        assert request(server.port, path="/php/").status == 200
        # The killed application starts again on its next request.
        deadline = time.monotonic() + WAIT
        while True:
            response = request(server.port, path="/asgi/hello")
            if response.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (response.status, response.body) == (200, b"Hello, ASGI!")
        assert not set(victims) & set(pids_of(server, "/asgi"))
        assert echo(ws, "after") == "after"
    finally:
        ws.close()
