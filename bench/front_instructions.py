"""Instructions per request of the real front, under callgrind (user space: Python, uvloop,
libuv, httptools, libc; not the kernel), through real sockets: a figure that other load on the
machine moves far less than CPU time.

    .venv/bin/python bench/front_instructions.py [--keep] [--seconds 20] [--conns 8]
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/front_instructions.py ...   # a tree before

`corral serve bench/site --listen 127.0.0.1:PORT --no-access-log` runs under `valgrind
--tool=callgrind --instr-atstart=no` (its workers run natively: valgrind does not follow
children); wrk (`--conns` connections, `Connection: close` unless `--keep`) warms it up, then
instrumentation is switched on (`callgrind_control -i on`) for one wrk run of `--seconds`, and
the instructions counted are divided by the requests wrk counted. Under valgrind the front is
the bottleneck (a few hundred requests per second), so every turn of its loop finds work; the
figure still moves by a few per cent between runs with how many events a turn gathers: compare
several runs, interleaved. Unlike `bench/instructions.py` (a microbenchmark without sockets),
this counts what uvloop does per connection (accept, transport, close) and the collector's
work on a real heap. Figures: bench/README.md, "Performance II (session 8)".
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
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)
_REQUESTS = re.compile(r"(\d+) requests in")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the front did not answer {url} within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="kept-alive requests, not close")
    parser.add_argument("--seconds", type=int, default=20, help="the measured wrk run")
    parser.add_argument("--conns", type=int, default=8, help="wrk connections")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool}")
    corral = Path(sys.executable).with_name("corral")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hello"
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, str(corral), "serve", str(HERE / "site"), "--listen",
             f"127.0.0.1:{port}", "--no-access-log", "--control", f"{folder}/control.sock"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_ready(url, 240)
            script = [] if args.keep else ["-s", str(HERE / "lua" / "close.lua")]
            wrk = ["wrk", "-t1", f"-c{args.conns}", "--timeout", "30", *script]
            subprocess.run([*wrk, "-d5", url], capture_output=True, check=True)
            control = ["callgrind_control", "-i"]
            subprocess.run([*control, "on", str(server.pid)], capture_output=True, check=True)
            run = subprocess.run(
                [*wrk, f"-d{args.seconds}", url], capture_output=True, text=True, check=True
            )
            subprocess.run([*control, "off", str(server.pid)], capture_output=True, check=True)
            found = _REQUESTS.search(run.stdout)
            if found is None:
                raise SystemExit(f"no request count in wrk's output:\n{run.stdout}")
            requests = int(found.group(1))
            subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
            time.sleep(2)
            counted = 0
            for dump in Path(folder).glob("callgrind.out*"):
                total = _TOTALS.search(dump.read_bytes())
                if total is not None:
                    counted = max(counted, int(total.group(1)))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    kind = "kept alive" if args.keep else "Connection: close"
    print(
        f"{counted / requests:,.0f} instructions per request ({kind}, {requests} requests, "
        f"{requests / args.seconds:.0f}/s under callgrind)"
    )


if __name__ == "__main__":
    main()
