"""ASGI apps through the whole chain: a real client -> `corral serve` (front, pool) -> FastCGI ->
Corral's worker -> Starlette / FastAPI. WebSockets go through the front's Upgrade tunnel (the
worker answers the handshake with Status: 101, then frames ride STDIN/STDOUT), driven by the
`websockets` package as the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import WAIT, CorralServer, request, serve_asgi
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

APPS = Path(__file__).resolve().parents[2] / "apps"


@pytest.fixture
def starlette(tmp_path: Path) -> Iterator[CorralServer]:
    # One worker: every request and WebSocket below shares its one event loop.
    server = serve_asgi(tmp_path, "starlette_app:app", "--min", "1", "--max", "1")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def fastapi(tmp_path: Path) -> Iterator[CorralServer]:
    server = serve_asgi(tmp_path, "fastapi_app:app", "--min", "1", "--max", "1")
    try:
        yield server.start()
    finally:
        server.stop()


def ws_url(server: CorralServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -------------------------------------------------------------------------------- Starlette


def test_starlette_get_and_lifespan_state(starlette: CorralServer, tmp_path: Path) -> None:
    response = request(starlette.port, path="/hello")
    assert (response.status, response.body) == (200, b"Hello, Starlette!")
    state = json.loads(request(starlette.port, path="/state").body)
    assert state["worker_pid"] == state["pid"]  # set by the lifespan startup in that worker
    assert (tmp_path / "lifespan.log").read_text() == f"startup {state['pid']}\n"


def test_starlette_streamed_upload_chunked(starlette: CorralServer) -> None:
    blocks = [os.urandom(65536) for _ in range(60)]  # ~4 MB, sent chunked as it is produced
    conn = http.client.HTTPConnection("127.0.0.1", starlette.port, timeout=WAIT)
    try:
        conn.request("POST", "/upload", body=iter(blocks), encode_chunked=True)
        response = conn.getresponse()
        result = json.loads(response.read())
    finally:
        conn.close()
    whole = b"".join(blocks)
    assert response.status == 200
    assert result["length"] == len(whole)
    assert result["sha256"] == hashlib.sha256(whole).hexdigest()
    assert result["chunks"] > 1  # it reached the app in pieces, not as one buffered body


def test_starlette_streaming_response(starlette: CorralServer) -> None:
    response = request(starlette.port, path="/stream?n=40")
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked"
    assert response.body == b"".join(bytes([i]) * 65536 for i in range(40))


def test_starlette_websocket_echo(starlette: CorralServer) -> None:
    with connect(ws_url(starlette, "/ws"), open_timeout=WAIT, max_size=None) as ws:
        ws.send("hello over the tunnel")
        assert ws.recv(timeout=WAIT) == "hello over the tunnel"
        blob = os.urandom(1_000_000)
        ws.send(blob)
        assert ws.recv(timeout=WAIT) == blob
        ws.ping(b"are you there").wait(WAIT)
        for index in range(50):
            ws.send(f"message {index}")
        assert [ws.recv(timeout=WAIT) for _ in range(50)] == [f"message {i}" for i in range(50)]
    assert ws.close_code == 1000


def test_websockets_and_http_at_once_on_one_worker(starlette: CorralServer) -> None:
    """Several open WebSockets do not starve HTTP: the pool gives the ASGI worker as many
    connections as it advertises (FCGI_MAX_CONNS), all served by its one event loop."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(connect(ws_url(starlette, "/ws"), open_timeout=WAIT))
            for _ in range(6)
        ]
        for index, ws in enumerate(sockets):
            ws.send(f"socket {index}")
        results: list[int] = []

        def fetch() -> None:
            results.append(request(starlette.port, path="/hello").status)

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert results == [200] * 8
        for index, ws in enumerate(sockets):
            assert ws.recv(timeout=WAIT) == f"socket {index}"
        pids = {json.loads(request(starlette.port, path="/state").body)["pid"] for _ in range(3)}
        assert len(pids) == 1


def test_shutdown_runs_lifespan_shutdown_and_closes_websockets(
    starlette: CorralServer, tmp_path: Path
) -> None:
    with connect(ws_url(starlette, "/ws"), open_timeout=WAIT) as ws:
        ws.send("before")
        assert ws.recv(timeout=WAIT) == "before"
        starlette.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
    assert starlette.wait() == 0
    marker = tmp_path / "lifespan.log"
    deadline = time.monotonic() + WAIT
    while "shutdown" not in marker.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = marker.read_text().split("\n")
    assert lines[0].startswith("startup ") and lines[1].startswith("shutdown ")


def test_killed_worker_restarts_on_the_next_request(starlette: CorralServer) -> None:
    pid = json.loads(request(starlette.port, path="/state").body)["pid"]
    with connect(ws_url(starlette, "/ws"), open_timeout=WAIT) as ws:
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while True:
        response = request(starlette.port, path="/state")
        if response.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status == 200
    assert json.loads(response.body)["pid"] != pid


# -------------------------------------------------------------------------------- FastAPI


def test_fastapi_routes_json_and_lifespan_state(fastapi: CorralServer) -> None:
    response = request(fastapi.port, path="/hello")
    assert json.loads(response.body) == {
        "message": "Hello, FastAPI!",
        "greeting": "hello from the lifespan",
    }
    response = request(fastapi.port, path="/items/42?q=corral")
    assert json.loads(response.body) == {"item_id": 42, "q": "corral"}
    body = json.dumps({"name": "widget", "price": 2.5, "tags": ["a"]}).encode()
    response = request(
        fastapi.port, "POST", "/items", body, headers="Content-Type: application/json\r\n"
    )
    assert response.status == 200
    assert json.loads(response.body) == {
        "created": {"name": "widget", "price": 2.5, "tags": ["a"]},
        "total": 5.0,
    }
    response = request(
        fastapi.port, "POST", "/items", b"{}", headers="Content-Type: application/json\r\n"
    )
    assert response.status == 422  # FastAPI's validation error, through the chain


def test_fastapi_upload(fastapi: CorralServer) -> None:
    body = os.urandom(2_000_000)
    response = request(fastapi.port, "POST", "/upload", body)
    assert json.loads(response.body) == {"length": len(body)}


def test_fastapi_websocket(fastapi: CorralServer) -> None:
    with connect(ws_url(fastapi, "/ws"), open_timeout=WAIT) as ws:
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv(timeout=WAIT)) == {"echo": {"n": 1}, "path": "/ws"}
        ws.send(json.dumps([1, 2, 3]))
        assert json.loads(ws.recv(timeout=WAIT)) == {"echo": [1, 2, 3], "path": "/ws"}
