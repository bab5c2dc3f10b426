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

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from wsbench import Serve, parse_args, websocket_figures, wrk

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "nodejs"

QUIET = ("--no-access-log",)
_WORKER = re.compile(r"started worker pid \d+ on 127\.0\.0\.1:(\d+)")


class Corral:
    """`corral serve` of a copy of examples/nodejs; ``node_port`` once the worker started."""

    def __init__(self, tmp: Path) -> None:
        site = tmp / "node"
        shutil.copytree(EXAMPLE, site)
        self.node_port = 0
        self._node_started = threading.Event()
        self.serve = Serve(site, *QUIET, on_line=self._line)
        self.port = self.serve.port

    def _line(self, line: str) -> None:
        match = _WORKER.search(line)
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
        self.serve.stop()


def main() -> int:
    args = parse_args(__doc__)
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
                print(wrk(f"http://127.0.0.1:{port}/", args.duration, args.connections))
            for name, port in (("through Corral", corral.port), ("Node directly ", node_port)):
                print(f"WebSocket echo 32 B, {name}: ", end="", flush=True)
                print(websocket_figures(port, args.round_trips))
        finally:
            corral.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
