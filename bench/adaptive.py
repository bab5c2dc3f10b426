#!/usr/bin/env python3
"""Workers and threads over time for a burst of load: Corral's adaptive concurrency, measured.

    python bench/adaptive.py [--scenario sleep50|cpu10|both] [--burst 10] [--quiet 3]
                             [--after 40] [--idle-timeout SECONDS] [--svg FILE] [--json FILE]

Starts ``corral serve bench/site`` with its defaults (no ``--workers``, no
``connections_per_worker``; ``--idle-timeout`` only shortens the idle workers' stop, so that
the figure shows it), then for each scenario: ``--quiet`` seconds of nothing, a ``wrk`` burst
(``sleep50``: the app sleeps 50 ms, 200 connections; ``cpu10``: it burns 10 ms of CPU, 16
connections) for ``--burst`` seconds, then ``--after`` seconds of nothing. Every half second it
reads the status document over the control socket (the pool's workers, its connections per
worker, its requests) and counts the threads of each worker process (``/proc/PID/task``), and
prints one row per second. ``--svg`` draws both series (hand-written SVG, no plotting
library): the figure of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from corral.ops import client
from corral.ops.controlproto import STATUS, Request

BENCH = Path(__file__).resolve().parent
SITE = BENCH / "site"
SERVING = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)")
SAMPLE_EVERY = 0.5


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    connections: int
    title: str


SCENARIOS = {
    "sleep50": Scenario("sleep50", "/sleep50", 200, "app sleeping 50 ms, 200 connections"),
    "cpu10": Scenario("cpu10", "/cpu10", 16, "app burning 10 ms of CPU, 16 connections"),
}


def worker_threads(pids: list[int]) -> int:
    """Serving threads of the workers: each one's threads less its main thread and its liveness
    watch (0 for a worker that cannot be read)."""
    total = 0
    for pid in pids:
        try:
            total += max(len(os.listdir(f"/proc/{pid}/task")) - 2, 0)
        except OSError:
            continue
    return total


def sample(control: Path, started: float, phase: str) -> dict[str, object]:
    document = client.call(control, Request(STATUS))
    assert isinstance(document, dict)
    [app] = document["apps"]
    pids = [w["pid"] for w in app["workers"] if w.get("pid") and w["state"] != "starting"]
    return {
        "t": round(time.monotonic() - started, 2),
        "phase": phase,
        "workers": len(pids),
        "capacity": app.get("capacity", 0),
        "threads": worker_threads(pids),
        "in_flight": app["in_flight"],
        "waiting": app["queue_length"],
        "requests": app["requests"]["total"],
        "cpu_per_request_ms": None
        if app.get("cpu_per_request") is None
        else round(app["cpu_per_request"] * 1000, 3),
        "service_ms": None if app["service_time"] is None else round(app["service_time"] * 1000, 1),
    }


def run_scenario(
    scenario: Scenario, args: argparse.Namespace, port: int, control: Path, wrk: str
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    started = time.monotonic()
    t_burst = started + args.quiet
    t_after = t_burst + args.burst
    t_end = t_after + args.after
    burst: subprocess.Popen[bytes] | None = None
    next_at = started
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        if burst is None and now >= t_burst:
            burst = subprocess.Popen(
                [wrk, "-t1", f"-c{scenario.connections}", f"-d{args.burst:g}s", "--timeout", "10s",
                 f"http://127.0.0.1:{port}{scenario.path}"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
        phase = "quiet" if now < t_burst else ("burst" if now < t_after else "after")
        rows.append(sample(control, started, phase))
        next_at += SAMPLE_EVERY
        time.sleep(max(0.0, next_at - time.monotonic()))
    if burst is not None:
        out, _ = burst.communicate(timeout=30)
        summary = out.decode(errors="replace")
        found = re.search(r"Requests/sec:\s+([\d.]+)", summary)
        print(f"{scenario.name}: wrk {found.group(1) if found else '?'} req/s during the burst")
    return rows


def print_rows(name: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{name}: t, phase, workers, connections per worker, worker threads, req/s")
    last_requests = None
    last_t = 0.0
    for row in rows:
        t = float(row["t"])  # type: ignore[arg-type]
        if last_requests is not None and int(t) == int(last_t):
            continue
        requests = int(row["requests"])  # type: ignore[call-overload]
        rate = "" if last_requests is None else f"{(requests - last_requests) / (t - last_t):.0f}"
        print(
            f"{t:6.1f} {row['phase']:>6} {row['workers']:>3} {row['capacity']:>4} "
            f"{row['threads']:>4} {rate:>6}"
        )
        last_requests, last_t = requests, t


# ------------------------------------------------------------------------------ the figure


def svg(series: dict[str, list[dict[str, object]]], args: argparse.Namespace) -> str:
    """Both scenarios side by side: workers (left axis) and worker threads and connections per
    worker (right axis, log scale) against time, the burst shaded."""
    panel_w, panel_h, margin = 430, 250, 48
    gap = margin + 70
    width = margin + len(series) * (panel_w + gap)
    height = panel_h + 2 * margin + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
    ]
    y0 = margin + 20
    log_max = 256.0
    colours = {"workers": "#1f77b4", "threads": "#d62728", "capacity": "#2ca02c"}
    for index, (name, rows) in enumerate(series.items()):
        x0 = margin + index * (panel_w + gap)
        t_max = max(float(r["t"]) for r in rows) or 1.0  # type: ignore[arg-type]
        w_max = max(4, max(int(r["workers"]) for r in rows))  # type: ignore[call-overload]

        def px(t: float, x0: float = x0, t_max: float = t_max) -> float:
            return x0 + t / t_max * panel_w

        def py_workers(v: float, w_max: int = w_max) -> float:
            return y0 + panel_h - v / w_max * panel_h

        def py_log(v: float) -> float:
            return y0 + panel_h - math.log2(max(v, 1.0)) / math.log2(log_max) * panel_h

        scenario = SCENARIOS[name]
        out.append(
            f'<text x="{x0}" y="{margin}" font-weight="bold">{scenario.name}: '
            f"{scenario.title}</text>"
        )
        burst = [float(r["t"]) for r in rows if r["phase"] == "burst"]  # type: ignore[arg-type]
        if burst:
            out.append(
                f'<rect x="{px(min(burst)):.1f}" y="{y0}" '
                f'width="{px(max(burst)) - px(min(burst)):.1f}" height="{panel_h}" '
                'fill="#f2f2f2"/>'
            )
            out.append(
                f'<text x="{px(min(burst)) + 4:.1f}" y="{y0 + 14}" fill="#777">wrk burst</text>'
            )
        out.append(
            f'<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" '
            'stroke="#333"/>'
        )
        for tick in range(0, int(t_max) + 1, 10):
            out.append(
                f'<line x1="{px(tick):.1f}" y1="{y0 + panel_h}" x2="{px(tick):.1f}" '
                f'y2="{y0 + panel_h + 4}" stroke="#333"/>'
                f'<text x="{px(tick):.1f}" y="{y0 + panel_h + 16}" text-anchor="middle">'
                f"{tick}</text>"
            )
        out.append(
            f'<text x="{x0 + panel_w / 2}" y="{y0 + panel_h + 32}" text-anchor="middle">'
            "seconds</text>"
        )
        for tick in range(0, w_max + 1):
            out.append(
                f'<text x="{x0 - 6}" y="{py_workers(tick) + 4:.1f}" text-anchor="end" '
                f'fill="{colours["workers"]}">{tick}</text>'
            )
        for tick in (1, 4, 16, 64, 256):
            out.append(
                f'<line x1="{x0}" y1="{py_log(tick):.1f}" x2="{x0 + panel_w}" '
                f'y2="{py_log(tick):.1f}" stroke="#ddd" stroke-dasharray="2,3"/>'
                f'<text x="{x0 + panel_w + 6}" y="{py_log(tick) + 4:.1f}" '
                f'fill="{colours["threads"]}">{tick}</text>'
            )
        out.append(
            f'<text x="{x0 - 30}" y="{y0 - 6}" fill="{colours["workers"]}">workers</text>'
            f'<text x="{x0 + panel_w + 30}" y="{y0 - 6}" text-anchor="end" '
            f'fill="{colours["threads"]}">threads (log)</text>'
        )
        for key, scale, dash in (
            ("capacity", py_log, "6,3"),
            ("threads", py_log, ""),
            ("workers", py_workers, ""),
        ):
            points = " ".join(
                f"{px(float(r['t'])):.1f},{scale(float(r[key])):.1f}"  # type: ignore[arg-type]
                for r in rows
            )
            dashing = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(
                f'<polyline points="{points}" fill="none" stroke="{colours[key]}" '
                f'stroke-width="2"{dashing}/>'
            )
    legend_y = height - 14
    for n, (key, label) in enumerate(
        (
            ("workers", "worker processes"),
            ("threads", "serving threads, all workers (/proc)"),
            ("capacity", "connections per worker (the policy's)"),
        )
    ):
        x = margin + n * 250
        dash = ' stroke-dasharray="6,3"' if key == "capacity" else ""
        out.append(
            f'<line x1="{x}" y1="{legend_y - 4}" x2="{x + 24}" y2="{legend_y - 4}" '
            f'stroke="{colours[key]}" stroke-width="2"{dash}/>'
            f'<text x="{x + 30}" y="{legend_y}">{label}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _collect(proc: subprocess.Popen[bytes], log: list[str]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        log.append(raw.decode(errors="replace").rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/adaptive.py", description=__doc__.splitlines()[0])
    p.add_argument("--scenario", choices=("sleep50", "cpu10", "both"), default="both")
    p.add_argument("--burst", type=float, default=10.0, help="burst seconds (default 10)")
    p.add_argument("--quiet", type=float, default=3.0, help="seconds before it (default 3)")
    p.add_argument("--after", type=float, default=40.0, help="seconds after it (default 40)")
    p.add_argument(
        "--idle-timeout", type=float, default=None, help="idle_timeout s (default: Corral's)"
    )
    p.add_argument("--svg", type=Path, help="write the figure here")
    p.add_argument("--json", type=Path, help="write every sample here")
    args = p.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench/adaptive.py needs wrk", file=sys.stderr)
        return 2
    names = ["sleep50", "cpu10"] if args.scenario == "both" else [args.scenario]
    series: dict[str, list[dict[str, object]]] = {}
    for name in names:
        # A fresh server per scenario: what the policy learns of one does not carry over.
        folder = Path(tempfile.mkdtemp(prefix="corral-adaptive-"))
        control = folder / "control.sock"
        cmd = [sys.executable, "-m", "corral", "serve", str(SITE), "--listen", "127.0.0.1:0",
               "--no-access-log", "--control", str(control)]  # fmt: skip
        if args.idle_timeout is not None:
            cmd += ["--set", f"idle_timeout={args.idle_timeout:g}"]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        log: list[str] = []
        try:
            assert proc.stdout is not None
            port = 0
            while not port:
                line = proc.stdout.readline().decode(errors="replace")
                if not line:
                    print("corral serve did not start:\n" + "\n".join(log), file=sys.stderr)
                    return 1
                log.append(line.rstrip())
                found = SERVING.search(line)
                if found:
                    port = int(found.group(1))

            threading.Thread(target=_collect, args=(proc, log), daemon=True).start()
            series[name] = run_scenario(SCENARIOS[name], args, port, control, wrk)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            shutil.rmtree(folder, ignore_errors=True)
        print_rows(name, series[name])
        for line in log:
            if "connections per worker" in line or "worker pid" in line:
                print("   ", line.split(" INFO ", 1)[-1][:160])
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(series, indent=1))
    if args.svg:
        args.svg.write_text(svg(series, args))
        print(f"figure: {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
