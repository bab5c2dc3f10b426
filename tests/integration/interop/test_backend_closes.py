"""Backends that close their connections: none of it costs a request that could be served.

A backend may answer before it has read the whole request body (a PHP script that ignores its
input, a WSGI app that never reads ``wsgi.input``, an HTTP server that answers and closes): its
complete answer is relayed, not replaced by a 502, and the client connection is closed after it
(real php-cgi, Corral's worker, a real HTTP server). A server that closes kept-alive connections
after a short idle time, just as a request is sent on one, costs that request nothing: it is
sent again on another connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.harness import Conn, CorralServer, Response, serving
from tests.integration.interop.test_php import php_site
from tests.unit.front.prefix_router import PrefixRouter

from conftest import require_program
from corral.backends import http
from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.supervision import Pool, PoolSettings
from corral.supervision.launch import LaunchPlan, WorkerSocket
from corral.supervision.probe import port_probe
from corral.supervision.service import ServicePool
from ports import held_range, port

BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"
WAIT = 20.0
#: Requests per test: the race (the answer and the close arrive while the body is being
#: written) is hit by some of them.
ROUNDS = 40
#: The request body: 300 KB, chunked, in 16 KiB chunks (more than the sockets' buffers hold
#: once the backend stops reading).
BODY = os.urandom(300 * 1024)
EARLY_PHP = b"""<?php
header('Content-Type: text/plain');
echo "early answer\\n";
"""


def chunked(body: bytes, size: int = 16 * 1024) -> bytes:
    out = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(out) + b"0\r\n\r\n"


def post_early(port: int, path: str, then: str) -> Response:
    """POST the chunked body to ``path``, sending it while the answer is read, and return the
    answer. Then the connection is closed (the body was not all sent when the answer ended), or
    it is clean: the next request on it, GET ``then``, is answered."""
    with Conn(port) as conn:
        conn.send(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )

        def send() -> None:
            with contextlib.suppress(OSError):
                conn.sock.sendall(chunked(BODY))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        response = conn.response()
        sender.join(WAIT)
        if not conn.closed_by_peer(timeout=1):
            conn.send(f"GET {then} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert conn.response().status == 200
        return response


def test_php_answering_without_reading_its_input(tmp_path: Path) -> None:
    require_program("php-cgi")
    site = php_site(tmp_path)
    (site / "early.php").write_bytes(EARLY_PHP)
    server = CorralServer(site, args=("--no-access-log",))
    try:
        server.start(wait_ready=False)
        for _ in range(ROUNDS):
            response = post_early(server.port, "/early.php", "/pid.php")
            assert (response.status, response.body) == (200, b"early answer\n"), server.text()
        assert "502" not in server.text() and "Broken pipe" not in server.text()
    finally:
        server.stop()


def test_a_wsgi_app_that_does_not_read_its_body(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-access-log", "--min", "1", "--max", "1") as server:
        for _ in range(ROUNDS):
            response = post_early(server.port, "/hello", "/hello")
            assert (response.status, response.body) == (200, b"Hello, world!\n"), server.text()


@contextlib.asynccontextmanager
async def http_backend(tmp_path: Path, **env: str) -> AsyncIterator[int]:
    """A front on a loopback port over a pool of the stdlib HTTP server (http_backend.py)."""
    launch = LaunchPlan(
        argv=(sys.executable, str(BACKEND), "%HOST%", "%PORT%"),
        env={**os.environ, **env},
        cwd=str(tmp_path),
        transport=WorkerSocket.PORT,
        port_range=held_range(10),
    )
    pool: Pool = Pool(
        "early",
        launch,
        PoolSettings(start_timeout=WAIT, connections_per_worker=8, max_instances=1),
        http.connect,
        probe=port_probe,
    )
    route = AppRoute("early", pool, http=True)
    front = FrontServer(PrefixRouter([route]), FrontSettings(acquire_timeout=WAIT))
    [(_, port)] = await front.listen("127.0.0.1", 0)
    try:
        yield port
    finally:
        await front.stop(1)
        await pool.close(2)


@contextlib.asynccontextmanager
async def http_service(tmp_path: Path, **env: str) -> AsyncIterator[int]:
    """A front on a loopback port over a ``tcp.service`` pool (``ServicePool``: a server Corral
    does not start) of the stdlib HTTP server, which the test runs itself."""
    backend_port = port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BACKEND),
        "127.0.0.1",
        str(backend_port),
        env={**os.environ, **env},
        cwd=str(tmp_path),
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", backend_port)
            except OSError:
                assert time.monotonic() < deadline, "the HTTP backend did not listen"
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        pool = ServicePool(
            "early-service",
            (("127.0.0.1", backend_port),),
            PoolSettings(max_instances=8),
            http.connect,
        )
        route = AppRoute("early-service", pool, http=True)
        front = FrontServer(PrefixRouter([route]), FrontSettings(acquire_timeout=WAIT))
        [(_, front_port)] = await front.listen("127.0.0.1", 0)
        try:
            yield front_port
        finally:
            await front.stop(1)
            await pool.close(2)
    finally:
        server.kill()
        await server.wait()


def test_an_http_backend_that_answers_and_closes_before_the_body(tmp_path: Path) -> None:
    async def main() -> None:
        async with http_backend(tmp_path) as port:
            for _ in range(ROUNDS):
                response = await asyncio.to_thread(post_early, port, "/early", "/pid")
                assert (response.status, response.body) == (200, b"early")

    asyncio.run(main())


@pytest.mark.parametrize("source", ["pool", "service"])
@pytest.mark.parametrize(
    "env",
    [{"BACKEND_KEEPALIVE": "0.2"}, {"BACKEND_IDLE_DROP": "0.1"}],
    ids=["keep-alive-timeout", "closed-as-the-request-comes"],
)
def test_kept_alive_connections_closed_by_the_backend_as_a_request_is_sent(
    tmp_path: Path, env: dict[str, str], source: str
) -> None:
    """The backend closes kept-alive connections after a short idle time; clients send
    requests after pauses around it (the front reuses connections idle up to
    ``http.IDLE_REUSE``), so that requests are sent just as the backend closes the connection
    (BACKEND_IDLE_DROP: every request after a pause is): none of them gets a 502."""
    clients, rounds = 4, 25

    backend = http_backend if source == "pool" else http_service

    async def main() -> None:
        async with backend(tmp_path, **env) as port:
            statuses: list[int] = []

            def client(index: int) -> None:
                for n in range(rounds):
                    # Pauses from 0.17 to 0.23 s.
                    time.sleep(0.2 + ((n * 7 + index * 3) % 13 - 6) * 0.005)
                    with Conn(port) as conn:
                        conn.send(
                            b"GET /pid HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                        )
                        statuses.append(conn.response().status)

            await asyncio.gather(*(asyncio.to_thread(client, i) for i in range(clients)))
            assert statuses.count(200) == clients * rounds, sorted(set(statuses))

    asyncio.run(main())
