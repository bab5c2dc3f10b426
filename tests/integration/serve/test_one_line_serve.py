"""`corral serve module:app` and `corral serve app.py`, with gunicorn's `--bind` and
`--workers`, through a real `corral serve` (issue 15, "A first hour that delights")."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import CorralServer, request, run_corral
from tests.wsclient import WebSocket

WSGI = """\
import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"application {os.getpid()} {environ['SCRIPT_NAME']!r}".encode()]


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app, not application"]
"""

ASGI = """\
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute


async def home(request):
    return JSONResponse({"path": request.url.path})


async def echo(websocket):
    await websocket.accept()
    await websocket.send_text("echo " + await websocket.receive_text())
    await websocket.close()


app = Starlette(routes=[Route("/", home), WebSocketRoute("/ws", echo)])
"""


def _server(cwd: Path, target: str, *args: str) -> CorralServer:
    server = CorralServer(Path(target), args=("--no-access-log", *args), cwd=cwd)
    return server.start(wait_ready=False)


def test_module_colon_app_with_bind_and_workers(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(WSGI)
    # --bind after the harness's --listen: the alias is the same option (the last one wins).
    server = _server(tmp_path, "hello:app", "--bind", "127.0.0.1:0", "--workers", "3")
    try:
        response = request(server.port, path="/")
        assert response.status == 200, server.text()
        assert response.body == b"app, not application"
        server.wait_log("serving 'hello:app'")
        assert len(server.workers()) == 3  # --workers N: N workers from the start
    finally:
        server.stop()


def test_a_file_serves_its_application(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "web.py").write_text(WSGI)
    server = _server(tmp_path, "site/web.py", "-w", "1")
    try:
        pids = set()
        for _ in range(3):
            response = request(server.port, path="/any/path")
            assert response.status == 200, server.text()
            name, pid, script_name = response.body.decode().split()
            assert name == "application" and script_name == "''"
            pids.add(pid)
        assert len(pids) == 1
    finally:
        server.stop()


def test_an_asgi_file_with_its_websocket(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(ASGI)
    server = _server(tmp_path, "main.py")
    try:
        response = request(server.port, path="/")
        assert response.status == 200, server.text()
        assert json.loads(response.body) == {"path": "/"}
        socket = WebSocket(server.port, "/ws")
        try:
            assert socket.echo("hi") == "echo hi"
        finally:
            socket.close()
    finally:
        server.stop()


def test_what_cannot_be_served_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text("<configuration/>")
    (tmp_path / "app.py").write_text("app = 1\n")
    for argv, message in [
        (("serve", str(tmp_path / "app.py")), "has its own web.config"),
        (("serve", "nosuchmodule:app"), "no module 'nosuchmodule'"),
        (("serve", str(tmp_path), "--workers", "2", "--max", "3"), "--workers sets --min"),
    ]:
        result = run_corral(*argv)
        assert result.returncode == 2, result
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
