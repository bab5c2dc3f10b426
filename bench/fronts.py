"""The front across cores (issue 16): `hello` through 1, 2 and 4 front processes.

For each number of fronts (taking turns, ``--repeat`` times) it starts
``corral serve bench/site --listen 127.0.0.1:PORT --min W --max W --no-access-log
--front-processes N``, warms up, runs wrk (`hello`: ``GET /hello`` kept alive, 64 connections)
and reads every process's CPU time before and after, by role: the front(s) (with one front, the
serve process itself), the supervisor (N > 1), the workers and their template. It prints req/s,
latency and CPU per request by role, and the projected ceilings of docs/scaling.md: the fronts
alone could carry ``fronts / front CPU per request`` requests a second; a machine of C cores
``C / CPU per request`` when everything else keeps up.

    .venv/bin/python bench/fronts.py                       # 1, 2 and 4 fronts, 10 s each
    .venv/bin/python bench/fronts.py --fronts 1,2 --repeat 3 --duration 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrkrun import find_wrk, run

HERE = Path(__file__).resolve().parent
SITE = HERE / "site"
CORRAL = Path(sys.executable).parent / "corral"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def role(proc: psutil.Process, root: int, fronts: int) -> str:
    if proc.pid == root:
        return "front" if fronts == 1 else "supervisor"
    line = " ".join(proc.cmdline())
    if "corral.frontproc" in line:
        return "front"
    if line.startswith("corral template"):
        return "template"
    return "worker"


def cpu_by_role(root: int, fronts: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    top = psutil.Process(root)
    for proc in [top, *top.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            kind = role(proc, root, fronts)
        except psutil.Error:
            continue
        totals[kind] = totals.get(kind, 0.0) + times.user + times.system
    return totals


def start(fronts: int, workers: int, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(CORRAL),
            "serve",
            str(SITE),
            "--listen",
            f"127.0.0.1:{port}",
            "--min",
            str(workers),
            "--max",
            str(workers),
            "--no-access-log",
            "--front-processes",
            str(fronts),
            "--control",
            str(folder / f"c{port}.sock"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=2) as answer:
                if answer.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"corral with {fronts} fronts did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def measure(fronts: int, args: argparse.Namespace, wrk: str, folder: Path) -> dict[str, Any]:
    proc, port = start(fronts, args.workers, folder)
    try:
        url = f"http://127.0.0.1:{port}/hello"
        if args.warmup:
            run(wrk, url, "get.lua", connections=64, duration=args.warmup, threads=1, timeout=10)
        before = cpu_by_role(proc.pid, fronts)
        result = run(
            wrk, url, "get.lua", connections=64, duration=args.duration, threads=1, timeout=10
        )
        after = cpu_by_role(proc.pid, fronts)
    finally:
        stop(proc)
    requests = max(result.requests, 1)
    cpu = {kind: (after.get(kind, 0.0) - before.get(kind, 0.0)) for kind in after}
    us = {kind: seconds / requests * 1e6 for kind, seconds in cpu.items()}
    total = sum(us.values())
    front_us = us.get("front", 0.0)
    return {
        "fronts": fronts,
        "req_per_s": result.req_per_s,
        "p50_us": result.latency_us.get("p50", 0.0),
        "p99_us": result.latency_us.get("p99", 0.0),
        "errors": result.error_count,
        "cpu_us_per_request": us,
        "total_us": total,
        "front_share": front_us / total if total else 0.0,
        "front_ceiling": fronts / front_us * 1e6 if front_us else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fronts", default="1,2,4", help="front counts, comma-separated")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds, the counts taking turns")
    parser.add_argument("--json", type=Path, help="also write every run as JSON")
    args = parser.parse_args(argv)
    wrk = find_wrk()
    counts = [int(n) for n in args.fronts.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.workers} workers; hello, 64 connections, {args.duration:g} s")  # fmt: skip
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crf-") as tmp:
        for _ in range(args.repeat):
            for count in counts:
                runs.append(measure(count, args, wrk, Path(tmp)))
    header = (
        f"{'fronts':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} "
        f"{'CPU us/req':>10} {'front':>6} {'superv':>6} {'workers':>7} {'front%':>6} "
        f"{'front ceiling/s':>15}"
    )
    print(header)
    for row in runs:
        us = row["cpu_us_per_request"]
        print(
            f"{row['fronts']:>6} {row['req_per_s']:>8.0f} {row['p50_us'] / 1000:>7.2f} "
            f"{row['p99_us'] / 1000:>7.2f} {row['errors']:>4} {row['total_us']:>10.1f} "
            f"{us.get('front', 0.0):>6.1f} {us.get('supervisor', 0.0):>6.1f} "
            f"{us.get('worker', 0.0) + us.get('template', 0.0):>7.1f} "
            f"{row['front_share'] * 100:>5.0f}% {row['front_ceiling']:>15.0f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
