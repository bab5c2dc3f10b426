"""The web console's figures: a session's start, a keystroke's round trip, output throughput.

`.venv/bin/python bench/console.py [--round-trips 2000] [--megabytes 200]` serves a throw-away
site with CONSOLE_URL (its own virtualenv: `python -m venv --without-pip`) and, on one console
WebSocket, measures: the time from the handshake to the shell's first prompt; the round trip of
one keystroke through the PTY (the terminal in raw mode, `cat` echoing each byte back: the
front, the WebSocket codec, the PTY and back), p50 and p99; and how fast the shell's output
reaches the client (`head -c N /dev/zero | tr '\\0' x`), with Corral's CPU time per MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wsbench import Serve

TOKEN = "bench-console-token-0123456789"
APP = "def application(environ, start_response):\n    start_response('200 OK', [])\n    return []\n"


def site(root: Path) -> Path:
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    folder = root / "site"
    folder.mkdir()
    (folder / "wsgi.py").write_text(APP)
    variables = {"WSGI_APP": "wsgi.application", "VIRTUAL_ENV": str(venv), "CONSOLE_URL": "console"}
    adds = "".join(f'<add name="{k}" value="{v}"/>' for k, v in variables.items())
    (folder / "web.config").write_text(
        "<configuration><system.webServer><heliconZoo><application name='app'>"
        f"<environmentVariables>{adds}</environmentVariables></application></heliconZoo>"
        "<handlers><add name='app' scriptProcessor='python' path='*' verb='*' "
        "modules='HeliconZoo_x64'/></handlers>"
        "</system.webServer></configuration>"
    )
    return folder


def until(socket: ClientConnection, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        message = socket.recv(timeout=60)
        seen += message if isinstance(message, bytes) else message.encode()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    os.environ["CORRAL_ADMIN_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory(prefix="corral-bench-console-") as tmp:
        os.environ.setdefault("XDG_RUNTIME_DIR", tmp)
        server = Serve(site(Path(tmp)), "--no-access-log")
        host = psutil.Process(server.proc.pid)
        try:
            url = f"ws://127.0.0.1:{server.port}/console/ws"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            starts = []
            for _ in range(5):
                began = time.perf_counter()
                with connect(url, additional_headers=headers) as socket:
                    until(socket, b"(app) ")
                    starts.append(time.perf_counter() - began)
            with connect(url, additional_headers=headers, max_size=None) as socket:
                socket.send(b"stty raw -echo; echo RE\\ADY; cat\r")
                until(socket, b"READY")
                times = []
                for _ in range(args.round_trips):
                    began = time.perf_counter()
                    socket.send(b"x")
                    until(socket, b"x")
                    times.append(time.perf_counter() - began)
                socket.send(b"\x03")  # (raw mode: cat gets the byte, not SIGINT) then a new shell
            with connect(url, additional_headers=headers, max_size=None) as socket:
                socket.send(b"stty -echo; echo RE\\ADY\r")
                until(socket, b"READY")
                size = args.megabytes * 1_000_000
                cpu = host.cpu_times()
                began = time.perf_counter()
                socket.send(f"head -c {size} /dev/zero | tr '\\0' x; echo; echo DO\\NE\r".encode())
                got = 0
                tail = b""
                while b"DONE" not in tail:
                    message = socket.recv(timeout=60)
                    assert isinstance(message, bytes)
                    got += message.count(b"x")
                    tail = (tail + message[-16:])[-32:]
                took = time.perf_counter() - began
                spent = sum(host.cpu_times()[:2]) - sum(cpu[:2])
        finally:
            server.stop()
    times.sort()
    print(f"session start (handshake to prompt): median {statistics.median(starts) * 1000:.1f} ms")
    print(
        f"keystroke round trip: p50 {times[len(times) // 2] * 1e6:.0f} µs"
        f"  p99 {times[int(len(times) * 0.99)] * 1e6:.0f} µs  ({args.round_trips} keys)"
    )
    print(
        f"output: {got / took / 1e6:.1f} MB/s  ({got / 1e6:.0f} MB in {took:.1f} s; "
        f"Corral's CPU {spent / (got / 1e6) * 1000:.1f} ms per MB)"
    )


if __name__ == "__main__":
    main()
