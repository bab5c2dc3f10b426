"""The front's own CPU cost per request, without sockets (not collected by pytest).

    .venv/bin/python tests/unit/front/microbench_front.py [--requests N] [--profile]

One in-process ``HTTPConnection`` and one ``FastCGIClientConnection`` over fake transports, and a
real ``Pool`` with one ready worker whose kept-alive connection the front leases at once
(``Pool.lease_or_wait``; with --awaited, a stand-in pool leased through ``acquire()`` in a task,
the front's path for other pools): each round feeds a keep-alive GET, lets the loop run once, and
feeds the backend's canned response. The figure is CPU time (process time) per
request of everything Python does on the hot path (parser, routing, params, FastCGI records, the
CGI head, response framing, the lease task), without system calls, the kernel, or a real pool's
queueing. Compare runs on the same machine only. ``--http``: the same through an HTTP backend
route (``backends.http``: the front builds the request head, the client parses an HTTP response).
``--close``: ``Connection: close``, a new client connection per request. ``--post``: a small
POST with a Content-Length (its body in the same read as its head) instead of the GET.
``--access-log FORMAT``: with the access log on, in that format, written to /dev/null (figures:
bench/README.md, "Access log"). ``--mib``: a 1 MiB response (its head in a FastCGI STDOUT
record of its own, then the body in records of up to 65,535 bytes) fed to the backend
connection in 256 KiB reads, as uvloop reads a socket (figures: bench/README.md,
"Performance II").

Figures for the reshape of issue 9 (the front split into Exchange, HTTPConnection,
Http1Response and Tunnel), against the commit before it, same machine (2 cores shared with
other builds, load average 1.6-2.5), interleaved runs of 50000 requests, µs per request:
keep-alive 34.8/35.3/34.9/35.0 -> 35.9/37.8/34.7/34.6; ``--http`` 26.0/26.3/25.8 ->
26.7/26.5/26.2; ``--close`` 44.4/45.0/44.4/44.5 -> 45.9/46.0/45.7/55.6; ``--awaited``
31.1/31.1/30.1/30.4 -> 31.2/32.4/30.8/31.5. The split costs about one Python call per request
(21 in the profile of the keep-alive round, 20 before) and two small objects per connection.

URL Rewrite (issue 15) adds one attribute test per request for routes without rules
(``route.rewrite``); interleaved keep-alive runs of 30000 requests, the commit before it (run
from an unpacked copy with ``PYTHONPATH``) against it, load average 5-7: 37.8/36.4/38.5/38.0 ->
36.8/37.7/37.5/36.9 µs per request: no difference above the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from typing import Any

from corral import logs
from corral.backends import readbuffer
from corral.backends.fastcgi import FastCGIClientConnection
from corral.backends.http import HTTPClientConnection
from corral.front.http1 import HTTPConnection
from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.protocol.fastcgi import records
from corral.supervision.launch import LaunchPlan
from corral.supervision.lease import Lease
from corral.supervision.lifecycle import PoolState, WorkerState
from corral.supervision.pool import Pool
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker

try:
    from tests.unit.front.prefix_router import PrefixRouter
except ImportError:  # run as a script: this folder is on sys.path
    from prefix_router import PrefixRouter  # type: ignore[no-redef]

REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
CLOSE_REQUEST = REQUEST[:-2] + b"Connection: close\r\n\r\n"
POST_REQUEST = (
    b"POST /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nhello=world"
)
RESPONSE = records.encode_response(
    1,
    b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n",
)
MIB_RESPONSE = records.encode_response(  # the head in a record of its own, as the worker sends it
    1,
    b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n",
    end=False,
) + records.encode_response(1, bytes(1 << 20))
#: How much one read from a worker's socket hands over (the FastCGI client's read buffer).
READ_SIZE = readbuffer.READ_SIZE
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    b"Date: Thu, 26 Nov 2026 01:00:00 GMT\r\nConnection: keep-alive\r\n\r\nHello, world!\n"
)


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[Any] = []

    def write(self, data: Any) -> None:
        self.out.append(data)

    def writelines(self, data: Any) -> None:
        self.out.extend(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class InstantPool:
    def __init__(self, conn: Any, awaited: bool) -> None:
        self.lease = Lease(conn, conn, 0, 0)
        self.awaited = awaited

    name = "bench"

    def lease_or_wait(self, deliver: object, queueable: bool = False, first: bool = False) -> None:
        return None  # try_acquire, then acquire(), as for HTTP routes

    def cancel_wait(self, waiter: object) -> None:
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        return self.lease

    def try_acquire(self) -> Lease | None:
        return None if self.awaited else self.lease

    def release(self, lease: Lease, reusable: bool) -> None:
        pass


class _Process:
    pid = 0
    address = "/nonexistent"


def ready_pool(conn: FastCGIClientConnection) -> Pool:
    """A real ``Pool`` with one ready worker whose kept-alive connection is ``conn``: the front
    leases it by ``Pool.lease_or_wait`` (no task), as when workers keep up."""
    settings = PoolSettings(min_instances=1, max_instances=1)
    plan = LaunchPlan(argv=("bench",), env={}, cwd=".")
    pool: Pool = Pool("bench", plan, settings, None)  # type: ignore[arg-type]
    worker: Any = Worker(id=1)
    worker.process = _Process()
    worker.state = WorkerState.IDLE
    worker.idle_conns.append(conn)
    pool._workers.workers[1] = worker
    pool._state = PoolState.RUNNING
    return pool


async def run(
    requests: int,
    profile: bool,
    awaited: bool,
    http: bool,
    close: bool = False,
    post: bool = False,
    access_log: str | None = None,
    mib: bool = False,
) -> None:
    backend: Any = HTTPClientConnection("bench") if http else FastCGIClientConnection("bench")
    response = HTTP_RESPONSE if http else RESPONSE
    reads = [response]
    if mib:
        reads = [MIB_RESPONSE[i : i + READ_SIZE] for i in range(0, len(MIB_RESPONSE), READ_SIZE)]
    backend_transport = FakeTransport()
    backend.connection_made(backend_transport)
    pool: Any = InstantPool(backend, awaited) if http or awaited else ready_pool(backend)
    route = AppRoute("bench", pool, http=http, upgrade=http)
    if access_log is not None:  # lines written (buffered) to /dev/null
        logs.setup(access_log=os.devnull)
    server = FrontServer(
        PrefixRouter([route]), FrontSettings(access_log_format=access_log or "combined")
    )
    conn = HTTPConnection(server)
    client = FakeTransport()
    conn.connection_made(client)  # type: ignore[arg-type]
    request = CLOSE_REQUEST if close else POST_REQUEST if post else REQUEST

    async def rounds(n: int) -> None:
        nonlocal conn
        for _ in range(n):
            if close:  # a connection per request: made, one request, lost
                conn = HTTPConnection(server)
                conn.connection_made(client)  # type: ignore[arg-type]
            conn.data_received(request)
            await asyncio.sleep(0)  # the lease task runs (--awaited)
            for data in reads:
                backend.data_received(data)
            if close:
                conn.connection_lost(None)
            client.out.clear()
            backend_transport.out.clear()

    await rounds(2000)  # warm up
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    started = time.process_time()
    await rounds(requests)
    elapsed = time.process_time() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(f"{1e6 * elapsed / requests:.2f} µs CPU per request ({requests} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
    parser.add_argument(
        "--awaited",
        action="store_true",
        help="lease through the awaited acquire() (a task per request), as when requests queue",
    )
    parser.add_argument("--http", action="store_true", help="an HTTP backend route")
    parser.add_argument(
        "--close",
        action="store_true",
        help="Connection: close: a new client connection per request (made and lost)",
    )
    parser.add_argument(
        "--post", action="store_true", help="a small POST with Content-Length, not a GET"
    )
    parser.add_argument(
        "--access-log",
        choices=("combined", "extended", "json"),
        help="write the access log in this format (to /dev/null); default: no access log",
    )
    parser.add_argument(
        "--mib", action="store_true", help="a 1 MiB response from a FastCGI backend"
    )
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    runner(
        run(
            args.requests,
            args.profile,
            args.awaited,
            args.http,
            args.close,
            args.post,
            args.access_log,
            args.mib,
        )
    )


if __name__ == "__main__":
    main()
