"""Generic engines on Zoo's tcp transport end to end: a real Pool starting a real command that
listens on the port Corral picks for it (``WorkerSocket.PORT``: PORT/HOST and %PORT%/%HOST% handed
over), readiness when the port accepts a connection, and a real front proxying to it over
kept-alive HTTP/1.1; and a FastCGI command on its own port.

The HTTP command is ``tests/apps/http_backend.py`` (stdlib ``http.server``), a stand-in for any
HTTP server a user declares in an engine file; the FastCGI one ``tests/apps/fcgi_responder.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tests.unit.front.prefix_router import PrefixRouter

from corral.backends import fastcgi, http
from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.supervision import Pool, PoolSettings
from corral.supervision.launch import LaunchPlan, WorkerSocket
from corral.supervision.probe import fastcgi_port_probe, port_probe
from ports import held_range

BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"
WAIT = 20.0


def free_range(size: int) -> tuple[int, int]:
    """A range of ``size`` ports leased machine-wide for the rest of this process (no other
    process is given them: see tests/ports.py)."""
    return held_range(size)


def plan(
    tmp_path: Path, *, port_range: tuple[int, int] | None = None, args: bool = True, **env: str
) -> LaunchPlan:
    argv = [sys.executable, str(BACKEND)]
    if args:
        argv += ["%HOST%", "%PORT%"]
    full_env = dict(os.environ)
    full_env["WORKER_LABEL"] = "worker-%INSTANCE_ID%-on-%PORT%"
    full_env.update(env)
    return LaunchPlan(
        argv=tuple(argv),
        env=full_env,
        cwd=str(tmp_path),
        transport=WorkerSocket.PORT,
        port_range=port_range or free_range(20),
    )


@asynccontextmanager
async def serving(
    launch: LaunchPlan, settings: PoolSettings | None = None
) -> AsyncIterator[tuple[int, Pool]]:
    pool: Pool = Pool(
        "generic",
        launch,
        settings or PoolSettings(start_timeout=WAIT, connections_per_worker=8),
        http.connect,
        probe=port_probe,
    )
    route = AppRoute("generic", pool, http=True, upgrade=True)
    front = FrontServer(PrefixRouter([route]), FrontSettings(acquire_timeout=WAIT))
    [(_, port)] = await front.listen("127.0.0.1", 0)
    try:
        yield port, pool
    finally:
        await front.stop(1)
        await pool.close(2)


async def fetch(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        length = int(fields.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), WAIT)
        return int(lines[0].split()[1]), fields, body
    finally:
        writer.close()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n".encode()


def test_workers_get_their_own_port_from_the_range_as_port_host_and_arguments(
    tmp_path: Path,
) -> None:
    low, high = free_range(20)
    settings = PoolSettings(min_instances=2, max_instances=2, start_timeout=WAIT)

    async def main() -> None:
        async with serving(plan(tmp_path, port_range=(low, high)), settings) as (port, pool):
            status, _, body = await fetch(port, get("/env/PORT"))
            assert status == 200
            assert low <= int(body) <= high
            # Both workers ready before the next requests: with both idle, each request goes
            # to the most recently used worker, so the ones below all reach the worker that
            # answers the first of them (while the second worker was still starting, requests
            # could land on either).
            for _ in range(200):
                workers = pool.snapshot().workers
                if len(workers) == 2 and all(w.state != "starting" for w in workers):
                    break
                await asyncio.sleep(0.1)
            body = (await fetch(port, get("/env/PORT")))[2]
            assert (await fetch(port, get("/env/PORT")))[2] == body
            assert (await fetch(port, get("/env/HOST")))[2] == b"127.0.0.1"
            argv = (await fetch(port, get("/argv")))[2].split(b"\n")
            assert argv[-2:] == [b"127.0.0.1", body]  # %HOST% %PORT% in the arguments
            label = (await fetch(port, get("/env/WORKER_LABEL")))[2]
            assert label.startswith(b"worker-") and label.endswith(b"-on-" + body)
            addresses = {w.address for w in pool.snapshot().workers}
            assert len(addresses) == 2  # two workers, two ports
            for address in addresses:
                assert address is not None
                assert low <= int(address.rsplit(":", 1)[1]) <= high

    asyncio.run(main())


def test_ports_in_use_are_skipped_and_a_full_range_is_a_friendly_503(tmp_path: Path) -> None:
    low, high = free_range(2)
    taken = socket.socket()
    taken.bind(("127.0.0.1", low))
    taken.listen()
    try:

        async def main() -> None:
            # The command reads PORT/HOST from its environment this time (no arguments).
            launch = plan(tmp_path, port_range=(low, high), args=False)
            async with serving(launch) as (port, _):
                assert (await fetch(port, get("/env/PORT")))[2] == str(high).encode()
            full = plan(tmp_path, port_range=(low, low))
            async with serving(full) as (port, _):
                status, fields, body = await fetch(port, get("/"))
                assert status == 503
                assert "retry-after" in fields
                assert f"no free port in {low}..{low}".encode() in body

        asyncio.run(main())
    finally:
        taken.close()


def test_a_command_that_exits_or_never_listens_is_a_503_naming_why(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(plan(tmp_path, BACKEND_EXIT="7")) as (port, _):
            status, _, body = await fetch(port, get("/"))
            assert status == 503
            assert b"exited with code 7" in body
            assert b"backend: exiting as asked" in body  # its stderr, for a loopback client
        settings = PoolSettings(start_timeout=1.0)
        async with serving(plan(tmp_path, BACKEND_NEVER_LISTEN="1"), settings) as (port, _):
            status, _, body = await fetch(port, get("/"))
            assert status == 503
            # The probe's own message ("nothing accepted a connection on HOST:PORT within 1 s")
            # or the pool's, when its wait for the probe ends first.
            assert b"within 1 s" in body

    asyncio.run(main())


def test_uploads_and_keep_alive_through_a_real_backend(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)

    async def main() -> None:
        async with serving(plan(tmp_path)) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            pids = set()
            for _ in range(3):
                writer.write(
                    b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(payload)
                )
                writer.write(payload)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"X-Body-Length: %d\r\n" % len(payload) in head
                body = await asyncio.wait_for(reader.readexactly(len(payload)), WAIT)
                assert body == payload
                writer.write(b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                pids.add(await asyncio.wait_for(reader.readexactly(length), WAIT))
            writer.close()
            assert len(pids) == 1

    asyncio.run(main())


def test_a_killed_backend_costs_its_requests_and_the_next_request_starts_it_again(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with serving(plan(tmp_path)) as (port, pool):
            first = int((await fetch(port, get("/pid")))[2])
            os.killpg(first, signal.SIGKILL)
            for _ in range(100):
                if not any(w.pid == first for w in pool.snapshot().workers):
                    break
                await asyncio.sleep(0.1)
            status, _, body = await fetch(port, get("/pid"))
            assert status == 200
            assert int(body) != first

    asyncio.run(main())


def test_a_fastcgi_command_on_its_own_port(tmp_path: Path) -> None:
    """transport tcp + protocol fastcgi: the command listens on PORT itself and is ready when it
    answers FCGI_GET_VALUES there; the front speaks FastCGI to it."""
    responder = BACKEND.parent / "fcgi_responder.py"
    low, high = free_range(20)
    env = dict(os.environ, RESPONDER_LISTEN_ON_PORT="1")
    launch = LaunchPlan(
        argv=(sys.executable, str(responder)),
        env=env,
        cwd=str(tmp_path),
        transport=WorkerSocket.PORT,
        port_range=(low, high),
    )

    async def main() -> None:
        pool: Pool = Pool(
            "fcgi-port",
            launch,
            PoolSettings(start_timeout=WAIT),
            fastcgi.connect,
            probe=fastcgi_port_probe,
        )
        front = FrontServer(PrefixRouter([AppRoute("fcgi-port", pool)]), FrontSettings())
        [(_, port)] = await front.listen("127.0.0.1", 0)
        try:
            status, _, body = await fetch(port, get("/pid"))
            assert status == 200
            (worker,) = pool.snapshot().workers
            assert body == str(worker.pid).encode()
            assert worker.address is not None
            assert low <= int(worker.address.rsplit(":", 1)[1]) <= high
        finally:
            await front.stop(1)
            await pool.close(2)

    asyncio.run(main())


def test_a_port_taken_by_another_program_is_a_failed_start_then_another_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10, item 1: the backend binds 1.5 s late, and meanwhile another program listens on
    the port Corral gave it. That program's page never reaches the client: the start fails
    naming it, and the next start (on another port) serves the app."""
    low, high = free_range(2)
    launch = plan(tmp_path, port_range=(low, high), BACKEND_LISTEN_DELAY="1.5")
    foreign_page = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nforeign"

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(foreign_page)
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with serving(launch) as (port, pool):
            first = asyncio.ensure_future(fetch(port, get("/pid")))
            address = None
            for _ in range(1000):
                starting = [w.address for w in pool.snapshot().workers if w.address]
                if starting:
                    address = starting[0]
                    break
                await asyncio.sleep(0.005)
            assert address is not None
            taken = int(address.rsplit(":", 1)[1])
            foreign = await asyncio.start_server(answer, "127.0.0.1", taken)
            try:
                status, _, body = await first
                assert b"foreign" not in body
                assert status == 503
                assert f"port {taken} on 127.0.0.1 is held by another process".encode() in body
                assert f"(pid {os.getpid()}".encode() in body  # the foreign server: this test
                # After the back-off, a start on the other port serves the app.
                for _ in range(100):
                    status, _, body = await fetch(port, get("/env/PORT"))
                    assert b"foreign" not in body
                    if status == 200:
                        break
                    await asyncio.sleep(0.2)
                assert status == 200
                assert int(body) == (high if taken == low else low)
            finally:
                foreign.close()
                await foreign.wait_closed()

    with caplog.at_level(logging.INFO, logger="corral"):
        asyncio.run(main())
    failures = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert any(
        f"port {taken_port} on 127.0.0.1 is held by another process" in message
        and "not by the app's worker" in message
        for message in failures
        for taken_port in (low, high)
    ), failures
