#!/usr/bin/env python3
"""Node.js behind Corral: what the HTTP proxy and the WebSocket tunnel cost, measured against the
same Node process reached directly.

    .venv/bin/python bench/nodejs.py [--duration 5] [--connections 32] [--round-trips 5000]

`corral serve examples/nodejs` (one Node process: the engine's default of 100 connections per
worker keeps it at one) is driven through Corral's front, then Node's own port (read from
Corral's log) is driven directly: wrk (Debian's) for `GET /`, and the `websockets` package (the
test extra) for 32-byte echo round trips on /ws, one socket then 16 at once. Needs node and wrk.
Loopback only; every process started here is stopped at the end. Compare figures within a run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "nodejs"

QUIET = ("--no-access-log",)
_SERVING = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)")
_WORKER = re.compile(r"started worker pid \d+ on 127\.0\.0\.1:(\d+)")


class Corral:
    """`corral serve` of a copy of examples/nodejs; ``node_port`` once the worker started."""

    def __init__(self, tmp: Path) -> None:
        site = tmp / "node"
        shutil.copytree(EXAMPLE, site)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", str(site), "--listen", "127.0.0.1:0", *QUIET],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )
        self.port = 0
        self.node_port = 0
        self._node_started = threading.Event()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        for raw in self.proc.stdout:
            match = _SERVING.search(raw.decode(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.stop()
            raise SystemExit("corral serve did not start")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            match = _WORKER.search(raw.decode(errors="replace"))
            if match and not self.node_port:
                self.node_port = int(match.group(1))
                self._node_started.set()

    def wait_node(self) -> int:
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{self.port}/"],
            check=False,
            timeout=30,
        )
        if not self._node_started.wait(30):
            raise SystemExit("the Node worker did not start")
        return self.node_port

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wrk(port: int, duration: int, connections: int) -> str:
    url = f"http://127.0.0.1:{port}/"
    subprocess.run(["wrk", "-t1", "-c8", "-d1s", url], capture_output=True, check=False)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    return (
        f"{float(rate.group(1)) if rate else 0:10.0f} req/s  p50 {p50.group(1) if p50 else '?'}"
        f"  p99 {p99.group(1) if p99 else '?'}" + (f"  ({errors.group(0)})" if errors else "")
    )


def websocket_figures(port: int, round_trips: int) -> str:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{port}/ws"
    with connect(url) as ws:
        for _ in range(200):  # warm-up
            ws.send("x" * 32)
            ws.recv()
        started = time.perf_counter()
        for _ in range(round_trips):
            ws.send("x" * 32)
            ws.recv()
        one = round_trips / (time.perf_counter() - started)
    sockets, per_socket = 16, max(round_trips // 16, 100)

    def run() -> None:
        with connect(url) as ws:
            for _ in range(per_socket):
                ws.send(b"y" * 32)
                ws.recv()

    threads = [threading.Thread(target=run) for _ in range(sockets)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    many = sockets * per_socket / (time.perf_counter() - started)
    return f"1 socket: {one:8.0f} round trips/s   {sockets} sockets: {many:8.0f} round trips/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--round-trips", type=int, default=5000)
    args = parser.parse_args()
    for program in ("wrk", "node", "curl"):
        if shutil.which(program) is None:
            print(f"{program} is not installed", file=sys.stderr)
            return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        corral = Corral(Path(tmp))
        try:
            node_port = corral.wait_node()
            for name, port in (("through Corral", corral.port), ("Node directly ", node_port)):
                print(f"GET /, {args.connections} connections, {name}: ", end="", flush=True)
                print(wrk(port, args.duration, args.connections))
            for name, port in (("through Corral", corral.port), ("Node directly ", node_port)):
                print(f"WebSocket echo 32 B, {name}: ", end="", flush=True)
                print(websocket_figures(port, args.round_trips))
        finally:
            corral.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
