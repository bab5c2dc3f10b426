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

import os
import shutil
import sys
import tempfile
from pathlib import Path

from wsbench import Serve, parse_args, websocket_figures, wrk

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


def serve(app_source: str, tmp: Path) -> Serve:
    site = tmp / "site"
    site.mkdir()
    (site / "wsgi.py").write_text(app_source)  # wsgi.application; an ASGI one is detected
    return Serve(site, "--min", "1", "--max", "1", "--no-access-log")


def main() -> int:
    args = parse_args(__doc__)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name, source in (("WSGI", WSGI_APP), ("ASGI", ASGI_APP)):
        with tempfile.TemporaryDirectory() as tmp:
            corral = serve(source, Path(tmp))
            try:
                url = f"http://127.0.0.1:{corral.port}/hello"
                print(
                    f"{name} hello, {args.connections} connections: "
                    f"{wrk(url, args.duration, args.connections)}"
                )
                if name == "ASGI":
                    figures = websocket_figures(corral.port, args.round_trips)
                    print(f"ASGI WebSocket echo, 32 B: {figures}")
            finally:
                corral.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
