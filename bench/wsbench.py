"""What bench/asgi.py and bench/nodejs.py share: a `corral serve` process on a loopback port, wrk's
req/s and latency for one URL, and WebSocket echo round trips (one socket, then 16 at once).

Imported by those scripts as `wsbench` (their own folder is first on sys.path when run).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


def parse_args(doc: str) -> argparse.Namespace:
    """The options both scripts take: --duration (wrk's seconds), --connections (wrk's) and
    --round-trips (WebSocket echoes on one socket)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--round-trips", type=int, default=5000)
    return parser.parse_args()


_SERVING = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)")


class Serve:
    """`corral serve SITE --listen 127.0.0.1:0 *OPTIONS` in its own process group; ``port`` once
    it serves. Every later line of its log goes to ``on_line`` (or is just read, never blocking)."""

    def __init__(
        self, site: Path, *options: str, on_line: Callable[[str], None] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", str(site), "--listen", "127.0.0.1:0",
             *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )  # fmt: skip
        self.port = 0
        self._on_line = on_line
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
            if self._on_line is not None:
                self._on_line(raw.decode(errors="replace"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wrk(url: str, duration: int, connections: int) -> str:
    """One line: req/s, p50 and p99 latency (and errors, if any) of `wrk --latency URL`, after a
    one-second warm-up."""
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
    """One line: 32-byte echo round trips per second on ws://127.0.0.1:PORT/ws, one socket doing
    them in sequence, then 16 sockets at once."""
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
