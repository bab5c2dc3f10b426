"""The admin listener's HTTP server and handlers in one process, over real loopback sockets:
keep-alive, bad requests, limits, timeouts, the connection cap, tokens, actions, the event
stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tests.unit.ops.fakehost import FakeHost

from corral.ops import adminserver
from corral.ops.adminapp import AdminApp
from corral.ops.adminserver import AdminServer
from corral.ops.logtail import LogTail
from corral.ops.token import TokenGuard

TOKEN = "admin-token-for-tests-0123456789"


async def _open(host: FakeHost, metrics: str | None = None) -> tuple[AdminServer, int]:
    app = AdminApp(host, TokenGuard(TOKEN), lambda: metrics, LogTail(), "/srv/site")
    server = AdminServer(app)
    bound = await server.listen("127.0.0.1", 0)
    return server, bound[0][1]


async def _exchange(port: int, raw: bytes, *, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        if until_close:
            return await asyncio.wait_for(reader.read(-1), 10)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def _get(path: str, headers: str = "", close: bool = True) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}{headers}\r\n".encode()


def _post(path: str, body: dict[str, Any], headers: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{headers}\r\n"
    ).encode() + data


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


@pytest.fixture
def run() -> Iterator[Callable[[Callable[[], Awaitable[None]]], None]]:
    def runner(test: Callable[[], Awaitable[None]]) -> None:
        asyncio.run(asyncio.wait_for(test(), 30))

    yield runner


def test_health_ready_metrics_and_keep_alive(run: Callable[..., None]) -> None:
    async def test() -> None:
        host = FakeHost()
        server, port = await _open(host)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get("/healthz", close=False) + _get("/readyz", close=False))
            first = await reader.readuntil(b"ok\n")
            assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"keep-alive" in first
            second = await reader.readuntil(b"ready\n")
            assert second.startswith(b"HTTP/1.1 200 ")
            writer.close()
            host.state = "stopping"
            answer = await _exchange(port, _get("/readyz"))
            assert _status(answer) == 503 and answer.endswith(b"corral is stopping\n")
            metrics = await _exchange(port, _get("/metrics"))
            assert _status(metrics) == 200 and b"corral_app_requests_total{" in metrics
            assert b"text/plain; version=0.0.4" in metrics
            assert _status(await _exchange(port, _get("/nothing"))) == 404
            refused = await _exchange(port, _post("/healthz", {}))
            assert _status(refused) == 405 and b"Allow: GET, HEAD" in refused
        finally:
            await server.close()

    run(test)


def test_metrics_token(run: Callable[..., None]) -> None:
    async def test() -> None:
        server, port = await _open(FakeHost(), metrics="m-token")
        try:
            denied = await _exchange(port, _get("/metrics"))
            assert _status(denied) == 401 and b"WWW-Authenticate: Bearer" in denied
            wrong = await _exchange(port, _get("/metrics", "Authorization: Bearer x\r\n"))
            assert _status(wrong) == 401
            ok = await _exchange(port, _get("/metrics", "Authorization: Bearer m-token\r\n"))
            assert _status(ok) == 200
            assert _status(await _exchange(port, _get("/healthz"))) == 200  # open still
        finally:
            await server.close()

    run(test)


def test_bad_requests_and_limits_are_answered_and_closed(run: Callable[..., None]) -> None:
    async def test() -> None:
        server, port = await _open(FakeHost())
        try:
            assert _status(await _exchange(port, b"NONSENSE\r\n\r\n")) == 400
            long = _get("/" + "a" * 5000)
            assert _status(await _exchange(port, long)) == 414
            big = _get("/healthz", "X-Big: " + "b" * 9000 + "\r\n")
            assert _status(await _exchange(port, big)) == 431
            body = b"POST /api/restart HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            assert _status(await _exchange(port, body)) == 413
        finally:
            await server.close()

    run(test)


def test_slow_and_idle_clients_are_dropped(
    run: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adminserver, "REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr(adminserver, "IDLE_TIMEOUT", 0.3)

    async def test() -> None:
        server, port = await _open(FakeHost())
        try:
            partial = await _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert _status(partial) == 408
            idle = await _exchange(port, b"")
            assert idle == b""  # closed silently
        finally:
            await server.close()

    run(test)


def test_connections_past_the_cap_are_closed_at_once(
    run: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adminserver, "MAX_CONNECTIONS", 2)

    async def test() -> None:
        server, port = await _open(FakeHost())
        try:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.1)
            assert await _exchange(port, _get("/healthz")) == b""
            assert server.refused == 1
            for _, writer in held:
                writer.close()
            await asyncio.sleep(0.1)
            assert _status(await _exchange(port, _get("/healthz"))) == 200
        finally:
            await server.close()

    run(test)


def test_dashboard_login_status_events_and_actions(run: Callable[..., None]) -> None:
    async def test() -> None:
        host = FakeHost()
        server, port = await _open(host)
        try:
            page = await _exchange(port, _get("/"))
            assert _status(page) == 401 and b"needs the admin token" in page
            login = await _exchange(port, _get(f"/?token={TOKEN}"))
            assert _status(login) == 303 and b"Location: /\r\n" in login
            assert f"Set-Cookie: corral_admin={TOKEN}; Path=/; HttpOnly".encode() in login
            jar = f"Cookie: corral_admin={TOKEN}\r\n"
            page = await _exchange(port, _get("/", jar))
            assert _status(page) == 200 and b"Content-Security-Policy" in page
            csrf = TokenGuard(TOKEN).csrf
            assert f'name="corral-csrf" content="{csrf}"'.encode() in page
            for asset in ("dashboard.js", "dashboard.css", "favicon.svg"):
                assert _status(await _exchange(port, _get(f"/assets/{asset}"))) == 200
            document = await _exchange(port, _get("/api/status", jar))
            assert json.loads(document.split(b"\r\n\r\n", 1)[1])["apps"][0]["id"] == "hello"
            assert _status(await _exchange(port, _get("/api/status"))) == 401
            stream = await _exchange(port, _get("/events", jar), until_close=False)
            assert b"text/event-stream" in stream
            # Actions: POST, the cookie and the CSRF value (or the Bearer token).
            no_csrf = await _exchange(port, _post("/api/restart", {"app": "hello"}, jar))
            assert _status(no_csrf) == 403 and host.restarted == []
            with_csrf = jar + f"X-Corral-CSRF: {csrf}\r\nOrigin: http://127.0.0.1:9\r\n"
            done = await _exchange(port, _post("/api/restart", {"app": "hello"}, with_csrf))
            assert _status(done) == 200 and host.restarted == ["hello"]
            foreign = jar + f"X-Corral-CSRF: {csrf}\r\nOrigin: http://elsewhere\r\n"
            cross = await _exchange(port, _post("/api/restart", {"app": "hello"}, foreign))
            assert _status(cross) == 403 and host.restarted == ["hello"]
            get = await _exchange(port, _get("/api/restart", jar))
            assert _status(get) == 405
            bearer = f"Authorization: Bearer {TOKEN}\r\n"
            scaled = await _exchange(
                port, _post("/api/scale", {"app": "hello", "min": 2, "max": 3}, bearer)
            )
            assert _status(scaled) == 200 and host.scaled == [("hello", 2, 3)]
            bad = await _exchange(
                port, _post("/api/scale", {"app": "hello", "min": 3, "max": 2}, bearer)
            )
            assert _status(bad) == 400 and b"min above max" in bad
            negative = await _exchange(
                port, _post("/api/scale", {"app": "hello", "min": -1}, bearer)
            )
            assert _status(negative) == 400
            missing = await _exchange(port, _post("/api/restart", {"app": "nope"}, bearer))
            assert _status(missing) == 404 and b"no application" in missing
        finally:
            await server.close()

    run(test)
