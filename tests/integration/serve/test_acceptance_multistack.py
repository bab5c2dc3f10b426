"""Issue 5's acceptance: one `corral serve` hosts, at once, a WSGI app (at the root, /), an ASGI
app with a WebSocket endpoint (/asgi), a Node.js app with a WebSocket endpoint (/node) and a PHP
site (/php), each under its own virtual path; one test drives all four concurrently (HTTP
requests, uploads, a PHP form POST, WebSocket round trips), another kills each application's
backend processes in turn and checks that only that application is affected (WebSockets open on
the others keep working across the kill and the restart) and that its next request starts it
again.

Real parts throughout: Corral's Python worker (WSGI and ASGI), Debian's node and php-cgi, and
Corral's front in a subprocess; clients are raw sockets and a hand-rolled WebSocket client.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from tests.conftest import require_program
from tests.harness import WAIT, Conn, CorralServer, run_corral, serve
from tests.wsclient import TEXT, WebSocket

from ports import engine_ports_toml, held

__all__ = ["serve"]  # the shared server fixture

NODE_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "nodejs"

WSGI_APP = """\
import hashlib
import os


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        data = environ["wsgi.input"].read()
        body = f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = f"wsgi {environ['SCRIPT_NAME']!r} {path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI_APP = """\
import hashlib
import os


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "asgi:" + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body"):
            break
    # (ASGI's path includes the root path, the application's mount point.)
    path = scope["path"][len(scope["root_path"]) :]
    if path == "/upload":
        body = f"{size} {digest.hexdigest()}".encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = f"asgi {scope['root_path']} {path}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
"""

PHP_WEB_CONFIG = """\
<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="php" />
    </heliconZoo>
    <handlers>
      <add name="php#x64" scriptProcessor="php.fastcgi" path="*.php" verb="*"
           modules="HeliconZoo_x64" />
    </handlers>
    <defaultDocument><files><add value="index.php" /></files></defaultDocument>
  </system.webServer>
</configuration>
"""

PHP_FILES = {
    "index.php": '<?php echo "php ", $_SERVER["SCRIPT_NAME"];',
    "pid.php": "<?php echo getmypid();",
    "form.php": '<?php echo "Nice to meet you, ", $_POST["name"], ".";',
    "upload.php": '<?php $d = file_get_contents("php://input"); '
    'echo strlen($d), " ", hash("sha256", $d);',
}

SERVER_TOML = """\
[sites.main]
bindings = ["127.0.0.1:8080"]

[sites.main.apps."/"]
physical_path = "wsgi"

[sites.main.apps."/asgi"]
physical_path = "asgi"

[sites.main.apps."/node"]
physical_path = "node"

[sites.main.apps."/php"]
physical_path = "php"
"""

#: Each application's pid URL.
PID_PATHS = {
    "wsgi": "/pid",
    "asgi": "/asgi/pid",
    "node": "/node/pid",
    "php": "/php/pid.php",
}


def make_server(root: Path) -> Path:
    (root / "wsgi").mkdir()
    (root / "wsgi" / "app.py").write_text(WSGI_APP)
    (root / "wsgi" / "corral.toml").write_text(
        '[apps.wsgi]\nengine = "python"\nwsgi_app = "app:application"\n'
    )
    (root / "asgi").mkdir()
    (root / "asgi" / "app.py").write_text(ASGI_APP)
    (root / "asgi" / "corral.toml").write_text(
        '[apps.asgi]\nengine = "python"\nasgi_app = "app:application"\n'
    )
    shutil.copytree(NODE_EXAMPLE, root / "node")
    (root / "php").mkdir()
    (root / "php" / "web.config").write_text(PHP_WEB_CONFIG)
    for name, text in PHP_FILES.items():
        (root / "php" / name).write_text(text)
    server = root / "server.toml"
    # Node's workers on ports leased for this process: no other test's backend shares them.
    server.write_text(SERVER_TOML + engine_ports_toml(["nodejs.http"], held()))
    return server


def http(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str = "application/octet-stream",
) -> tuple[int, bytes]:
    conn = Conn(port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: multi.test\r\nConnection: close\r\n"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        conn.send(head.encode() + b"\r\n" + body)
        response = conn.response()
        return response.status, response.body
    finally:
        conn.sock.close()


@pytest.fixture
def multi(serve: Callable[..., CorralServer], tmp_path: Path) -> Callable[..., CorralServer]:
    require_program("node", "nodejs")
    require_program("php-cgi")
    return lambda *args: serve(make_server(tmp_path), *args)


def test_four_stacks_served_at_once_with_uploads_and_websockets(
    multi: Callable[..., CorralServer],
) -> None:
    server = multi()
    port = server.port
    payload = os.urandom(1024 * 1024 + 3)
    digest = f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()

    def plain(path: str, expected: bytes) -> None:
        for _ in range(5):
            status, body = http(port, "GET", path)
            assert status == 200, (path, status, body[:300], server.text()[-3000:])
            assert body.startswith(expected), (path, body[:300])

    def upload(path: str) -> None:
        status, body = http(port, "POST", path, payload)
        assert status == 200, (path, status, body[:300])
        if path.startswith("/node"):
            assert json.loads(body) == {
                "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        else:
            assert body == digest, (path, body[:300])

    def form(path: str) -> None:
        fields = b"name=Corral"
        status, body = http(port, "POST", path, fields, "application/x-www-form-urlencoded")
        assert (status, body) == (200, b"Nice to meet you, Corral."), (path, body[:300])

    def websocket(path: str, prefix: str) -> None:
        ws = WebSocket(port, path, host="multi.test")
        try:
            for n in range(20):
                ws.send(f"hello {n}")
                assert ws.receive() == (TEXT, f"{prefix}hello {n}".encode())
            blob = os.urandom(100_000)
            assert ws.echo(blob) == blob
        finally:
            ws.close()

    jobs: list[tuple[Callable[..., None], tuple[str, ...]]] = [
        (plain, ("/x", b"wsgi '' /x")),
        (plain, ("/asgi/x", b"asgi /asgi /x")),
        (plain, ("/node/", b"Hello from Node.js")),
        (plain, ("/php/", b"php /php/index.php")),
        (upload, ("/upload",)),
        (upload, ("/asgi/upload",)),
        (upload, ("/node/upload",)),
        (upload, ("/php/upload.php",)),
        (form, ("/php/form.php",)),
        (websocket, ("/asgi/ws", "asgi:")),
        (websocket, ("/asgi/ws", "asgi:")),
        (websocket, ("/node/ws", "")),
        (websocket, ("/node/ws", "")),
    ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job, *args) for job, args in jobs]
        for future in futures:
            future.result(timeout=WAIT * 3)


def pid_of(port: int, app: str) -> int:
    status, body = http(port, "GET", PID_PATHS[app])
    assert status == 200, (app, status, body[:300])
    return int(body.strip())


def host_pids(server: CorralServer) -> set[int]:
    """Every live process below the host (its workers and what they started)."""
    assert server.proc is not None
    pids = set()
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def still_echo(sockets: dict[str, WebSocket], victim: str, when: str) -> None:
    """The WebSockets of the applications other than ``victim`` still echo."""
    for app, ws in sockets.items():
        if app != victim:
            expected = f"asgi:{when}" if app == "asgi" else when
            assert ws.echo(when) == expected, (victim, app, when)


def test_killing_one_backend_affects_only_its_application(
    multi: Callable[..., CorralServer],
) -> None:
    server = multi("--min", "1", "--max", "1")
    port = server.port
    pids = {app: pid_of(port, app) for app in PID_PATHS}
    for victim in PID_PATHS:
        # WebSockets open on both WebSocket apps while the victim dies and starts again.
        sockets = {
            app: WebSocket(port, f"/{app}/ws", host="multi.test") for app in ("asgi", "node")
        }
        try:
            still_echo(sockets, victim, "before")
            os.killpg(pids[victim], signal.SIGKILL)
            still_echo(sockets, victim, "during")
            for app in PID_PATHS:
                if app != victim:
                    assert pid_of(port, app) == pids[app], (victim, app, server.text()[-3000:])
            # The victim's next requests start it again (the first may meet the dying worker:
            # 502).
            deadline = time.monotonic() + WAIT
            while True:
                status, body = http(port, "GET", PID_PATHS[victim])
                if status == 200 and int(body.strip()) != pids[victim]:
                    break
                assert time.monotonic() < deadline, (victim, status, server.text()[-3000:])
                time.sleep(0.2)
            assert pids[victim] not in host_pids(server), (victim, "the killed process lives on")
            pids[victim] = int(body.strip())
            still_echo(sockets, victim, "after")
        finally:
            for ws in sockets.values():
                ws.close()
    # Every application still serves, each with its own (new or untouched) process.
    assert len(set(pids.values())) == 4
    for app in PID_PATHS:
        assert pid_of(port, app) == pids[app]


def test_the_server_file_is_valid(tmp_path: Path) -> None:
    """The same configuration passes `corral check` (each application on its engine)."""
    result = run_corral("check", str(make_server(tmp_path)))
    assert result.returncode == 0, result.stderr
    for expected in ("[nodejs.http]", "[php.fastcgi]", "application 'asgi' at /asgi"):
        assert expected in result.stdout, textwrap.shorten(result.stdout, 2000)
