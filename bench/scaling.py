#!/usr/bin/env python3
"""Workers over time for a burst of load and its end: Corral's scaling policy, measured.

    python bench/scaling.py [--max 4] [--idle-timeout 5] [--burst 10] [--connections 32]
                            [--path /sleep50] [--quiet-before 3] [--quiet-after 25]
                            [--set NAME=VALUE ...] [--json FILE]

Starts ``corral serve bench/site`` (min 1 worker, at most ``--max``), then drives three phases
with a small asyncio HTTP/1.1 client (kept-alive connections, each one request at a time):

1. quiet: one request a second;
2. burst: ``--connections`` connections back to back for ``--burst`` seconds;
3. quiet again, long enough for idle workers to be stopped (``--idle-timeout``).

Every half second it counts the host's worker processes (children of the ``corral serve``
process running ``corral.worker``) and the requests answered, and prints one row per second:
time, phase, workers, requests per second, errors. The table in docs/scaling.md comes from this
script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
SITE = BENCH / "site"
SERVING = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)")


@dataclass
class Counters:
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


async def one_connection(port: int, path: str, until: float, counters: Counters) -> None:
    """Requests back to back on one kept-alive connection until ``until`` (monotonic)."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            started = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            found = re.search(rb"(?i)content-length: *(\d+)", head)
            length = int(found.group(1)) if found else 0
            await reader.readexactly(length)
            if status == 200:
                counters.ok += 1
                counters.latencies.append(time.monotonic() - started)
            else:
                counters.errors += 1
            if re.search(rb"(?i)connection: *close", head):
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counters.errors += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def trickle(port: int, path: str, until: float, counters: Counters) -> None:
    """One request a second on a fresh connection."""
    while time.monotonic() < until:
        await one_connection(port, path, time.monotonic() + 0.001, counters)
        await asyncio.sleep(max(0.0, min(1.0, until - time.monotonic())))


def workers_of(host: psutil.Process) -> int:
    count = 0
    # Workers forked by a template (preloaded workers) are the template's children.
    for child in host.children(recursive=True):
        try:
            # "corral worker SITE/NAME (ENGINE)": the title the worker gives itself.
            if child.cmdline()[:1] and child.cmdline()[0].startswith("corral worker "):
                count += 1
        except psutil.Error:
            continue
    return count


async def drive(
    args: argparse.Namespace, port: int, host: psutil.Process
) -> list[dict[str, object]]:
    counters = Counters()
    start = time.monotonic()
    t_burst = start + args.quiet_before
    t_calm = t_burst + args.burst
    t_end = t_calm + args.quiet_after
    tasks = [asyncio.ensure_future(trickle(port, args.path, t_burst, counters))]

    async def burst() -> None:
        await asyncio.sleep(max(0.0, t_burst - time.monotonic()))
        await asyncio.gather(
            *(one_connection(port, args.path, t_calm, counters) for _ in range(args.connections))
        )

    async def calm() -> None:
        await asyncio.sleep(max(0.0, t_calm - time.monotonic()))
        await trickle(port, args.path, t_end, counters)

    tasks += [asyncio.ensure_future(burst()), asyncio.ensure_future(calm())]
    rows: list[dict[str, object]] = []
    last_ok = last_err = 0
    last_lat = 0
    next_row = start + 1.0
    while time.monotonic() < t_end:
        await asyncio.sleep(max(0.0, next_row - time.monotonic()))
        now = time.monotonic()
        elapsed = now - start
        phase = "quiet" if now < t_burst else ("burst" if now < t_calm else "after")
        lat = sorted(counters.latencies[last_lat:])
        rows.append(
            {
                "t": round(elapsed),
                "phase": phase,
                "workers": await asyncio.to_thread(workers_of, host),
                "req_per_s": counters.ok - last_ok,
                "errors": counters.errors - last_err,
                "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1) if lat else None,
            }
        )
        last_ok, last_err, last_lat = counters.ok, counters.errors, len(counters.latencies)
        next_row += 1.0
    await asyncio.gather(*tasks)
    return rows


def _collect(proc: subprocess.Popen[bytes], log: list[str]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        log.append(raw.decode(errors="replace").rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/scaling.py", description=__doc__.splitlines()[0])
    p.add_argument("--max", type=int, default=4, help="maxInstances (default 4)")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="idle_timeout s (default 5)")
    p.add_argument("--burst", type=float, default=10.0, help="burst seconds (default 10)")
    p.add_argument("--connections", type=int, default=32, help="burst connections (default 32)")
    p.add_argument("--path", default="/sleep50", help="route of bench/app.py (default /sleep50)")
    p.add_argument("--quiet-before", type=float, default=3.0)
    p.add_argument("--quiet-after", type=float, default=25.0)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    cmd = [
        sys.executable, "-m", "corral", "serve", str(SITE), "--listen", "127.0.0.1:0",
        "--min", "1", "--max", str(args.max), "--no-access-log",
        "--set", f"idle_timeout={args.idle_timeout}",
    ]  # fmt: skip
    for value in args.set:
        cmd += ["--set", value]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=SITE
    )
    log: list[str] = []
    try:
        assert proc.stdout is not None
        port = 0
        deadline = time.monotonic() + 30
        while not port and time.monotonic() < deadline:
            line = proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            log.append(line.rstrip())
            match = SERVING.search(line)
            if match:
                port = int(match.group(1))
        if not port:
            print("corral serve did not start:\n" + "\n".join(log), file=sys.stderr)
            return 1
        # Keep reading its log (so that the pipe never fills), in the background.
        threading.Thread(target=_collect, args=(proc, log), daemon=True).start()
        host = psutil.Process(proc.pid)
        rows = asyncio.run(drive(args, port, host))
    finally:
        with_group = proc.pid
        try:
            os.killpg(with_group, signal.SIGTERM)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(with_group, signal.SIGKILL)
            except ProcessLookupError:
                pass
    print(" ".join(cmd[2:]))
    print(f"{'t (s)':>5}  {'phase':<6} {'workers':>7}  {'req/s':>6}  {'p99':>8}  {'errors':>6}")
    for row in rows:
        p99 = f"{row['p99_ms']} ms" if row["p99_ms"] is not None else "-"
        print(
            f"{row['t']:>5}  {row['phase']:<6} {row['workers']:>7}  {row['req_per_s']:>6}  "
            f"{p99:>8}  {row['errors']:>6}"
        )
    wanted = re.compile(r"started worker|stopping worker|not starting")
    events = [line for line in log if wanted.search(line)]
    print("\nscaling events from the log:")
    for line in events:
        print("  " + line)
    if args.json:
        args.json.write_text(json.dumps({"command": cmd, "rows": rows, "events": events}, indent=1))
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
