#!/usr/bin/env python3
"""ASGI through Corral: HTTP hello req/s for the same route as WSGI and as ASGI, and WebSocket
echo round trips, all through `corral serve` (front, pool, FastCGI, Corral's worker).

    .venv/bin/python bench/asgi.py [--duration 5] [--connections 32] [--round-trips 5000]

One worker per app (--min 1 --max 1), so the figures compare the worker's two paths, not pool
sizes. wrk (Debian's) drives HTTP; the `websockets` package (the test extra) is the WebSocket
client: one socket doing sequential round trips (latency-bound), then 16 sockets at once.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WSGI_APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
"""

ASGI_APP = """
async def application(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text"),
                        "bytes": message.get("bytes")})
"""

_SERVING = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)")


class Corral:
    def __init__(self, app_source: str, tmp: Path) -> None:
        site = tmp / "site"
        site.mkdir()
        (site / "wsgi.py").write_text(app_source)  # wsgi.application; an ASGI one is detected
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "corral",
                "serve",
                str(site),
                "--listen",
                "127.0.0.1:0",
                "--min",
                "1",
                "--max",
                "1",
                "--no-access-log",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.port = 0
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
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wrk(port: int, duration: int, connections: int) -> str:
    url = f"http://127.0.0.1:{port}/hello"
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
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name, source in (("WSGI", WSGI_APP), ("ASGI", ASGI_APP)):
        with tempfile.TemporaryDirectory() as tmp:
            corral = Corral(source, Path(tmp))
            try:
                print(
                    f"{name} hello, {args.connections} connections: "
                    f"{wrk(corral.port, args.duration, args.connections)}"
                )
                if name == "ASGI":
                    figures = websocket_figures(corral.port, args.round_trips)
                    print(f"ASGI WebSocket echo, 32 B: {figures}")
            finally:
                corral.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
