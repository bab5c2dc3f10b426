"""Worker CPU per request: a tight loop of FastCGI requests over a Unix socket.

    .venv/bin/python tests/apps/bench_worker_loop.py [--requests 20000] [--path /hello]

Starts ``python -m corral.worker --app worker_apps:application`` on a Unix socket, sends
``--requests`` requests (first on one kept-alive connection, then one connection per request),
and prints the worker's CPU time per request (user + system, from /proc/<pid>/stat, Linux) and
the wall time per request. The client pre-encodes its request and only looks for END_REQUEST,
so it costs little next to the worker. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
sys.path.insert(0, str(SRC))

from corral.protocol.fastcgi.records import encode_end_request, encode_request  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def params(path: str) -> list[tuple[bytes, bytes]]:
    path_info, _, query = path.partition("?")
    pairs = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REQUEST_URI": path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "localhost",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
    }
    return [(k.encode(), v.encode()) for k, v in pairs.items()]


def run_loop(address: str, request: bytes, end: bytes, count: int, keep: bool) -> None:
    buf = bytearray(1 << 20)
    sock = None
    for _ in range(count):
        if sock is None:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(address)
        sock.sendall(request)
        got = b""
        while not got.endswith(end):
            n = sock.recv_into(buf)
            if not n:
                raise SystemExit("the worker closed the connection early")
            got += buf[:n]
        if not keep:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--path", default="/hello")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="cwb")
    address = os.path.join(tmp, "w.sock")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral.worker",
            "--bind",
            f"unix:{address}",
            "--app",
            "worker_apps:application",
        ],
        cwd=HERE,
        env=env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not os.path.exists(address):
            time.sleep(0.01)
        end = encode_end_request(1)
        for keep in (True, False):
            request = encode_request(1, params(args.path), keep_conn=keep, stdin=b"")
            run_loop(address, request, end, 500, keep)  # warm-up
            cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
            run_loop(address, request, end, args.requests, keep)
            cpu1, wall1 = cpu_seconds(proc.pid), time.perf_counter()
            per_cpu = (cpu1 - cpu0) / args.requests * 1e6
            per_wall = (wall1 - wall0) / args.requests * 1e6
            mode = "kept-alive connection" if keep else "connection per request"
            print(
                f"{args.path} {mode:24} {args.requests} requests: "
                f"worker CPU {per_cpu:6.1f} us/request, wall {per_wall:6.1f} us/request"
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
