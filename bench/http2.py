#!/usr/bin/env python3
"""HTTP/2 at Corral's front: hello world with h2load, many streams per connection.

    .venv/bin/python bench/http2.py [--duration 10] [--workers N] [--clients 16] [--streams 32]
                                    [--repeat 1]

One `corral serve` process (a server TOML: the bench site bound twice, plain HTTP with
``http2_cleartext`` on one loopback port and https on another, with an EC P-256 certificate made
with `openssl`), measured in turns with h2load (Debian's nghttp2-client): HTTP/2 over TLS (ALPN
h2), HTTP/2 with prior knowledge on the plain port (h2c), and, for comparison through the same
front, HTTP/1.1 kept alive on the plain port (``h2load --h1``: one request at a time per
connection). Prints req/s, the mean time per request, failures and the CPU time of Corral's
whole process tree per request. Loopback only; every process started here is stopped at the
end. Compare figures within one run (see bench/README.md, "HTTP/2").

``--nginx`` adds nginx terminating TLS with HTTP/2 in front of the same number of Corral's
Python workers over FastCGI (``tls.NginxTls``), in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proctree import tree_cpu_seconds
from servers import free_port
from tls import Corral, NginxTls, make_certificate, server_toml

_FINISHED = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed"
)
_MEAN = re.compile(r"time for request:\s+\S+\s+\S+\s+(\S+)")


def h2load(program: str, url: str, args: argparse.Namespace, h1: bool, duration: int) -> str:
    command = [program, "-D", str(duration), "-c", str(args.clients), "-t", "1"]
    command += ["--h1", "-m", "1"] if h1 else ["-m", str(args.streams)]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise SystemExit(f"h2load failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--nginx", action="store_true", help="also nginx (TLS, h2) + FastCGI")
    args = parser.parse_args()
    program = shutil.which("h2load")
    if program is None:
        print("h2load is not installed (Debian: nghttp2-client)", file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.workers} "
          f"workers, {args.clients} connections, {args.streams} streams each (h2), "
          f"{args.duration} s per run")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="corral-bench-h2-") as tmp:
        folder = Path(tmp)
        make_certificate(folder)
        config = server_toml(folder, free_port(), free_port())
        config.write_text("[server]\nhttp2_cleartext = true\n" + config.read_text())
        corral = Corral(config, args.workers)
        nginx = NginxTls(folder, args.workers, http2=True) if args.nginx else None
        try:
            print(f"{'scenario':<22} {'req/s':>9} {'mean':>10} {'failed':>7} {'CPU µs/req':>11}")
            pids = [corral.proc.pid]
            scenarios = [
                ("h2 over TLS (ALPN)", corral.urls["https"], False, pids),
                ("h2c prior knowledge", corral.urls["http"], False, pids),
                ("HTTP/1.1 kept alive", corral.urls["http"], True, pids),
            ]
            if nginx is not None:
                scenarios.append(("nginx h2 + workers", nginx.url, False, nginx.pids))
            for _ in range(args.repeat):
                for name, base, h1, tree in scenarios:
                    url = base + "/hello"
                    h2load(program, url, args, h1, 2)  # warm-up
                    time.sleep(0.5)
                    before = sum(tree_cpu_seconds(pid).total for pid in tree)
                    out = h2load(program, url, args, h1, args.duration)
                    spent = sum(tree_cpu_seconds(pid).total for pid in tree) - before
                    finished = _FINISHED.search(out)
                    counts = _REQUESTS.search(out)
                    mean = _MEAN.search(out)
                    if finished is None or counts is None:
                        raise SystemExit(f"h2load's output not understood:\n{out}")
                    done = int(counts.group(2))
                    failed = int(counts.group(4)) + (done - int(counts.group(3)))
                    cpu = spent / max(done, 1) * 1e6
                    per = mean.group(1) if mean else "?"
                    print(f"{name:<22} {float(finished.group(1)):>9.0f} "
                          f"{per:>10} {failed:>7} {cpu:>11.0f}")  # fmt: skip
        finally:
            corral.stop()
            if nginx is not None:
                nginx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
