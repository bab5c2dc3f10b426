"""The worker's own CPU cost per request, without sockets (not collected by pytest).

    .venv/bin/python tests/apps/microbench_worker.py [--requests N] [--pipelined K] [--profile]

One ``corral.worker.server.Connection`` over a fake socket that hands it, read after read, the
bytes the front sends for a kept-alive ``GET /hello`` (the same FastCGI params as the front
builds; the requests of 64 clients, each with its REMOTE_PORT, take turns), and drops what the
worker sends. The app is the benchmark's (bench/app.py). The figure
is CPU time (process time) per request of everything Python does in the worker on the hot path
(FastCGI records, the environ, start_response, the response records), without system calls or
the kernel. Compare runs on the same machine only. ``--pipelined K``: each read hands over K
requests (ids 1..K), as the front's pipelining to a busy worker does under load (figures:
bench/README.md, "Performance II (continued)"). ``--look``: every request first looks for a
withdrawal (as at a low request rate; bench/README.md, "Performance II (session 8)").
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import socket
import sys
import time
from pathlib import Path
from typing import Any

from corral.protocol.fastcgi import records
from corral.worker import server

ROOT = Path(__file__).resolve().parents[2]

PARAMS = [
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"Corral"),
    (b"SCRIPT_NAME", b""),
    (b"DOCUMENT_ROOT", str(ROOT / "bench" / "site").encode()),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"41234"),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"HTTP_HOST", b"127.0.0.1:8080"),
    (b"REQUEST_METHOD", b"GET"),
    (b"PATH_INFO", b"/hello"),
    (b"QUERY_STRING", b""),
    (b"REQUEST_URI", b"/hello"),
    (b"SERVER_NAME", b"127.0.0.1"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
]
_DONTWAIT = int(socket.MSG_DONTWAIT)


def load_app() -> Any:
    spec = importlib.util.spec_from_file_location("corral_bench_app", ROOT / "bench" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.application


#: Clients (their connections to the front, each its own REMOTE_PORT) whose requests take
#: turns, as wrk's 64 connections do: the requests are not all the same bytes.
CLIENTS = 64


def client_params(client: int) -> list[tuple[bytes, bytes]]:
    port = b"%d" % (41234 + client)
    return [(name, port if name == b"REMOTE_PORT" else value) for name, value in PARAMS]


class FakeSocket:
    """Gives the worker ``batch`` requests per read, ``count`` times, then the end of the
    stream; the requests of the CLIENTS take turns."""

    def __init__(self, count: int, batch: int = 1) -> None:
        self.left = count
        self.sent = 0
        self.reads = [
            b"".join(
                records.encode_request(
                    rid, client_params((first + rid) % CLIENTS), keep_conn=True, stdin=b""
                )
                for rid in range(1, batch + 1)
            )
            for first in range(0, CLIENTS * batch, batch)
        ]

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        if flags & _DONTWAIT:  # a look for an ABORT_REQUEST: nothing is waiting
            raise BlockingIOError
        if self.left <= 0:
            return 0
        self.left -= 1
        data = self.reads[self.left % len(self.reads)]
        buffer[: len(data)] = data
        return len(data)

    def sendall(self, data: Any) -> None:
        self.sent += 1

    def sendmsg(self, buffers: Any) -> int:
        self.sent += 1
        return sum(len(b) for b in buffers)

    def shutdown(self, how: int) -> None:
        pass

    def settimeout(self, value: float) -> None:
        pass

    def close(self) -> None:
        pass


def serve(
    state: server.ServeState, buffers: server.ThreadBuffers, count: int, batch: int = 1
) -> None:
    sock = FakeSocket(count // batch, batch)
    conn = server.Connection(sock, state, buffers)  # type: ignore[arg-type]
    conn.serve()
    assert sock.sent >= count // batch * batch, f"{sock.sent} responses for {count} requests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument(
        "--pipelined", type=int, default=1, help="requests per read (ids 1..K, default 1)"
    )
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
    parser.add_argument(
        "--look",
        action="store_true",
        help="every request first looks for a withdrawal, as each one at a low request rate",
    )
    args = parser.parse_args()
    # Requests that begin within WITHDRAWN_CHECK_AFTER of each other, as under load: none is
    # first looked at for a withdrawal (which the slowness of a profiler or of callgrind would
    # otherwise cause for every one, and a real worker does only after a pause). With
    # ``--look``, every one is (a non-blocking read that finds nothing).
    server.WITHDRAWN_CHECK_AFTER = -1.0 if args.look else float("inf")
    state = server.ServeState(load_app(), 1, False)
    buffers = server.ThreadBuffers()
    serve(state, buffers, 2000, args.pipelined)  # warm up
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    started = time.process_time()
    serve(state, buffers, args.requests, args.pipelined)
    elapsed = time.process_time() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(f"{1e6 * elapsed / args.requests:.2f} µs CPU per request ({args.requests} requests)")


if __name__ == "__main__":
    main()
