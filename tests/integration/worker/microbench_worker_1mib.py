"""The worker's CPU cost of sending a 1 MiB response (not a test; not collected by pytest).

    .venv/bin/python tests/integration/worker/microbench_worker_1mib.py [--responses N] [--profile]

A WSGI app that returns one 1 MiB bytes object with its Content-Length (bench/app.py's
``/1mib``) is run by ``wsgi.run`` over the worker's ``Connection`` on one end of a Unix socket
pair, with the worker's send buffer; a forked child reads the other end and throws it away. The
figure is this process's CPU time (user + system) per response: the WSGI response path, the
FastCGI framing and the system calls that hand the bytes to the kernel, not the reader's.
Figures: bench/README.md, "Performance II".
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import time
from typing import Any

from corral.protocol.fastcgi import CLIENT, FastCGIConnection
from corral.protocol.fastcgi.events import BeginRequest
from corral.worker import wsgi
from corral.worker.server import SEND_BUFFER, Connection, ServeState

BODY = bytes(1 << 20)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]


def drain(sock: socket.socket) -> None:
    buffer = bytearray(1 << 20)
    while sock.recv_into(buffer):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile summary")
    args = parser.parse_args()
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the reader: the front's part, not measured
        mine.close()
        drain(theirs)
        os._exit(0)
    theirs.close()
    try:
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass
    conn = Connection(mine, ServeState(app, 1, False))
    conn.fcgi.receive_data(FastCGIConnection(CLIENT).send(BeginRequest(1, keep_conn=True)))
    conn.fcgi.next_event()
    conn.rid = 1
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/1mib", "SCRIPT_NAME": ""}

    def rounds(n: int) -> None:
        for _ in range(n):
            status, tail = wsgi.run(app, dict(environ), conn)
            assert status == 0 and not tail

    rounds(200)  # warm up
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    started = time.process_time()
    rounds(args.responses)
    elapsed = time.process_time() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    mine.close()
    os.waitpid(pid, 0)
    print(f"{1e6 * elapsed / args.responses:.1f} µs CPU per 1 MiB response ({args.responses})")


if __name__ == "__main__":
    main()
