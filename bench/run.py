#!/usr/bin/env python3
"""Corral's benchmark: wrk against Corral, gunicorn (sync), granian and uWSGI, in the same run.

    python bench/run.py [--servers corral,gunicorn,granian,uwsgi] [--scenarios hello,...]
                        [--duration 10] [--workers N] [--json out.json] [--check]

For each server: start it (own process group, free loopback port; with its own defaults, or with
N worker processes with --workers N), check every route answers correctly, then for each
scenario: warm up with wrk, wait until the server has drained the warm-up's queue, sample the CPU
time of the server's whole process tree, run wrk, sample again. Prints req/s, p50/p99 latency,
errors and server CPU time per request; judges issue 14's targets (targets.py), or with
--workers the first benchmark's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import compiledbuild
import targets
import wrkrun
from proctree import tree_cpu_seconds
from servers import KINDS, Server, ServerError, request

BENCH_DIR = Path(__file__).resolve().parent
APP_FILE = BENCH_DIR / "app.py"

# Acceptance targets for Corral (the issue that asked for this benchmark).
TARGET_HELLO_VS_GUNICORN = 1.5  # hello keep-alive req/s, at least this times gunicorn sync's
TARGET_HELLO_CPU_US = 70.0  # hello keep-alive server CPU per request, at most this many µs
#: The scenarios the issue names: ``--check`` needs every one measured, without errors.
ISSUE_SCENARIOS = ("hello", "hello-close", "1mib", "upload", "sleep50")
# Below this share of connections in service (see connections_in_service), connections went
# unanswered: reported for every server, and counted against Corral as errors would be. Not for
# scenarios that open a connection per request (close.lua): there a connection is answered
# before it closes, so none can sit unanswered in the accept queue, and the time wrk spends
# connecting, outside its latencies, makes the estimate read low as the rate grows.
STARVED_SHARE = 0.8


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    connections: int
    script: str
    description: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("hello", "/hello", 64, "get.lua", "hello world, keep-alive"),
        Scenario("hello-close", "/hello", 64, "close.lua", "hello world, Connection: close"),
        Scenario("1mib", "/1mib", 64, "get.lua", "1 MiB response, keep-alive"),
        Scenario("upload", "/upload", 64, "upload.lua", "1 MiB upload read by the app"),
        Scenario("sleep50", "/sleep50", 200, "get.lua", "app sleeps 50 ms, keep-alive"),
        Scenario("cpu10", "/cpu10", 16, "get.lua", "app burns 10 ms of CPU, keep-alive"),
        Scenario("cpu5", "/cpu5", 16, "get.lua", "app burns 5 ms of CPU, keep-alive"),
        Scenario("mixed", "/", 64, "mixed.lua", "half /sleep50, half /cpu5, keep-alive"),
    )
}


def _load_app_constants() -> tuple[bytes, bytes]:
    namespace: dict[str, Any] = {"__name__": "corral_bench_app_check"}
    exec(compile(APP_FILE.read_text(), str(APP_FILE), "exec"), namespace)
    return namespace["HELLO"], namespace["MIB_BODY"]


def preflight(server: Server) -> None:
    """Check every route's answer once, and whether the server keeps connections alive."""
    hello, mib = _load_app_constants()
    port = server.port
    checks: list[tuple[str, str, bytes | None, bytes]] = [
        ("GET", "/hello", None, hello),
        ("GET", "/1mib", None, mib),
        ("POST", "/upload", b"x" * len(mib), f"{len(mib)}\n".encode()),
        ("GET", "/sleep50", None, hello),
        ("GET", "/cpu10", None, hello),
        ("GET", "/cpu5", None, hello),
    ]
    for method, path, body, expected in checks:
        status, _, got = request(port, method, path, body=body, timeout=30.0)
        if status != 200 or got != expected:
            shown = got[:80] + (b"..." if len(got) > 80 else b"")
            raise ServerError(
                f"{server.kind.name}: {method} {path} answered {status} with {len(got)} bytes "
                f"({shown!r}); expected 200 with {len(expected)} bytes"
            )
    if not keeps_alive(port):
        server.keepalive_notes.append("closes every connection after one response (no keep-alive)")
    if not closes_when_asked(port):
        server.close_notes.append(
            "ignores the request's Connection: close and keeps the connection open, "
            "so this row measures kept-alive connections"
        )


def keeps_alive(port: int) -> bool:
    """Does the server answer a second request on the same HTTP/1.1 connection?"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
    try:
        _, headers, _ = request(port, "GET", "/hello", conn=conn)
        if headers.get("connection", "").lower() == "close":
            return False
        status, _, _ = request(port, "GET", "/hello", conn=conn)
        return status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def closes_when_asked(port: int, wait: float = 2.0) -> bool:
    """Does the server close the connection after answering a request with Connection: close?"""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return True


def settle(server: Server, timeout: float) -> None:
    """Wait until one fresh request is answered: the queue the warm-up left behind is drained."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, _ = request(server.port, "GET", "/hello", timeout=timeout)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or not server.alive():
            raise ServerError(f"{server.kind.name} stopped answering:\n{server.log_tail()}")
        time.sleep(0.2)


def measure(
    server: Server, scenario: Scenario, wrk: str, args: argparse.Namespace
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.port}{scenario.path}"
    common = dict(connections=scenario.connections, threads=args.wrk_threads, timeout=args.timeout)
    if args.warmup > 0:
        wrkrun.run(wrk, url, scenario.script, duration=args.warmup, **common)
        settle(server, timeout=args.timeout + 60)
    cpu_before = tree_cpu_seconds(server.pid)
    result = wrkrun.run(wrk, url, scenario.script, duration=args.duration, **common)
    cpu_after = tree_cpu_seconds(server.pid)
    if not server.alive():
        raise ServerError(f"{server.kind.name} died during {scenario.name}:\n{server.log_tail()}")
    cpu = cpu_after - cpu_before
    statuses: dict[int, int] = {}
    if result.errors["status"]:
        # Which statuses? A short extra run counts them (too costly for the measured run).
        sample = wrkrun.run(
            wrk, url, scenario.script, duration=2, extra=("statuses.lua",), **common
        )
        statuses = dict(sorted(sample.statuses.items()))
    lat = result.latency_us
    conns = scenario.connections
    served = connections_in_service(lat["mean"], result.requests, result.duration_s, conns)
    notes = list(server.close_notes if scenario.script == "close.lua" else server.keepalive_notes)
    if statuses:
        counts = ", ".join(f"{code} x {n}" for code, n in statuses.items())
        notes.append(f"answers by status in a 2 s sample run after the measurement: {counts}")
    if served < STARVED_SHARE * conns and scenario.script != "close.lua":
        notes.append(
            f"only about {served:.0f} of {conns} connections got answers; the others waited for "
            "a first response for most of the run (Debian's wrk counts them neither as errors nor "
            "in the latencies)"
        )
    return {
        "scenario": scenario.name,
        "server": server.kind.name,
        "connections": scenario.connections,
        "duration_s": round(result.duration_s, 3),
        "requests": result.requests,
        "req_per_s": round(result.req_per_s, 1),
        "mbytes_per_s": round(result.bytes / result.duration_s / 1e6, 2),
        "latency_us": {k: lat[k] for k in ("p50", "p90", "p99", "p999", "mean", "max")},
        "connections_in_service": round(served, 1),
        "errors": result.errors,
        "error_count": result.error_count,
        "status_sample": {str(k): v for k, v in statuses.items()},
        "server_cpu_s": round(cpu.total, 3),
        "server_cpu_root_s": round(cpu.root, 3),
        "cpu_us_per_request": per_request(cpu.total, result.requests),
        "cpu_us_per_request_root": per_request(cpu.root, result.requests),
        "notes": notes,
        "wrk_output": result.output if args.verbose else None,
    }


def median_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, server): with --repeat, the run with the median req/s, with the
    spread of every run's req/s and CPU per request added."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in runs:
        groups.setdefault((row["scenario"], row["server"]), []).append(row)
    result = []
    for group in groups.values():
        if len(group) == 1:
            result.append(group[0])
            continue
        ordered = sorted(group, key=lambda r: r["req_per_s"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["repeats"] = {
            "req_per_s": [r["req_per_s"] for r in group],
            "cpu_us_per_request": [r["cpu_us_per_request"] for r in group],
            "error_count": [r["error_count"] for r in group],
        }
        # Errors in any run count: the median run must not hide them.
        worst = max(group, key=lambda r: r["error_count"])
        if worst["error_count"] > median["error_count"]:
            median["notes"] = [
                *median["notes"],
                f"another run had {worst['error_count']} errors",
            ]
        result.append(median)
    return result


def per_request(seconds: float, requests: int) -> float | None:
    return round(seconds * 1e6 / requests, 1) if requests else None


def connections_in_service(mean_us: float, requests: int, duration_s: float, conns: int) -> float:
    """How many of wrk's connections were, on average, waiting on an answer that came.

    Little's law for wrk's closed loop: every connection always has one request outstanding, so
    the summed latency of the answered requests is about connections x duration. Requests still
    outstanding at the end are missing from that sum: on average half a latency per connection,
    hence the ``conns / 2``. A server that leaves connections unanswered (a prefork worker that
    stays on one kept-alive connection while the others sit in the accept queue) scores far
    below ``conns``: Debian's wrk 4.1 never reports a request that gets no answer at all.
    """
    if duration_s <= 0 or requests == 0:
        return 0.0
    return min(float(conns), mean_us / 1e6 * (requests + conns / 2) / duration_s)


def fmt_latency(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f}s"
    if us >= 1e3:
        return f"{us / 1e3:.2f}ms"
    return f"{us:.0f}µs"


def fmt_errors(row: dict[str, Any]) -> str:
    if not row["error_count"]:
        return "0"
    parts = [f"{k} {v}" for k, v in row["errors"].items() if v]
    return f"{row['error_count']} ({', '.join(parts)})"


def print_table(rows: list[dict[str, Any]], out: Any = sys.stdout) -> None:
    header = (
        "scenario",
        "server",
        "conns",
        "answered",
        "req/s",
        "vs gunicorn",
        "p50",
        "p99",
        "errors",
        "CPU µs/req",
        "of which front/master",
    )
    table: list[tuple[str, ...]] = [header]
    notes: list[str] = []
    for row in rows:
        base = next(
            (r for r in rows if r["scenario"] == row["scenario"] and r["server"] == "gunicorn"),
            None,
        )
        ratio = f"{row['req_per_s'] / base['req_per_s']:.2f}x" if base and base["req_per_s"] else ""
        cpu = row["cpu_us_per_request"]
        table.append(
            (
                row["scenario"],
                row["server"],
                str(row["connections"]),
                f"~{row['connections_in_service']:.0f}",
                f"{row['req_per_s']:.0f}",
                ratio,
                fmt_latency(row["latency_us"]["p50"]),
                fmt_latency(row["latency_us"]["p99"]),
                fmt_errors(row),
                "-" if cpu is None else f"{cpu:.1f}",
                "-" if cpu is None else f"{row['cpu_us_per_request_root']:.1f}",
            )
        )
        for note in row["notes"]:
            line = f"{row['server']} ({row['scenario']}): {note}"
            if line not in notes:
                notes.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        cells = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for note in notes:
        print(f"note: {note}", file=out)


def acceptance(rows: list[dict[str, Any]], *, complete: bool = False) -> list[dict[str, Any]]:
    """Corral's targets, judged on this run's figures.

    Without ``complete``, only the targets this run measured are listed. With it (``--check``),
    a target the run did not measure is missed: the issue's acceptance needs Corral in each of
    its scenarios (``ISSUE_SCENARIOS``), and gunicorn sync in ``hello`` for the ratio."""
    mine = {r["scenario"]: r for r in rows if r["server"] == "corral"}
    if not mine and not complete:
        return []
    checks: list[dict[str, Any]] = []

    def missing(check: str) -> None:
        checks.append({"check": check, "value": "not measured", "ok": False})

    scenarios = [s for s in SCENARIOS if s in mine or (complete and s in ISSUE_SCENARIOS)]
    for name in scenarios:
        row = mine.get(name)
        if row is None:
            missing(f"{name}: zero errors")
            continue
        worst = max(row.get("repeats", {}).get("error_count", [row["error_count"]]))
        checks.append({"check": f"{name}: zero errors", "value": worst, "ok": worst == 0})
    for name in scenarios:
        if SCENARIOS[name].script == "close.lua":
            continue  # (see STARVED_SHARE)
        row = mine.get(name)
        conns = SCENARIOS[name].connections if row is None else row["connections"]
        check = f"{name}: every connection answered (>= {STARVED_SHARE:.0%} of {conns} in service)"
        if row is None:
            missing(check)
            continue
        checks.append(
            {
                "check": check,
                "value": row["connections_in_service"],
                "ok": row["connections_in_service"] >= STARVED_SHARE * conns,
            }
        )
    hello = mine.get("hello")
    gunicorn = next(
        (r for r in rows if r["scenario"] == "hello" and r["server"] == "gunicorn"), None
    )
    check = f"hello: req/s >= {TARGET_HELLO_VS_GUNICORN}x gunicorn sync"
    if hello and gunicorn and gunicorn["req_per_s"]:
        ratio = hello["req_per_s"] / gunicorn["req_per_s"]
        checks.append(
            {"check": check, "value": round(ratio, 2), "ok": ratio >= TARGET_HELLO_VS_GUNICORN}
        )
    elif complete:
        missing(check)
    check = f"hello: server CPU <= {TARGET_HELLO_CPU_US:.0f} µs/request"
    if hello and hello["cpu_us_per_request"] is not None:
        checks.append(
            {
                "check": check,
                "value": hello["cpu_us_per_request"],
                "ok": hello["cpu_us_per_request"] <= TARGET_HELLO_CPU_US,
            }
        )
    elif complete:
        missing(check)
    return checks


def git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 2
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="wrk benchmark of Corral against gunicorn (sync), granian and uWSGI.",
    )
    p.add_argument(
        "--servers",
        default="corral,gunicorn,granian,uwsgi",
        help="comma-separated, from: " + ", ".join(KINDS) + " (default: all)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, from: " + ", ".join(SCENARIOS) + " (default: all)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of measurement per scenario (default 10)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of wrk before each measurement, 0 for none (default 2)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes per server, e.g. the cores (here "
        f"{cores}); default: each server with its own defaults, as issue 14 compares them",
    )
    p.add_argument(
        "--wrk-threads",
        type=int,
        default=1,
        help="wrk threads (default 1: the client shares the machine)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="wrk's request timeout in s; slower responses count as errors and "
        "their latency is not recorded (default 10)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure every scenario N times (servers taking turns); report the run with the "
        "median req/s (default 1)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit with status 3 when Corral misses a target, or the run leaves one unmeasured: "
        "issue 14's with the servers' defaults, issue 2's with --workers (see bench/README.md)",
    )
    p.add_argument("--verbose", action="store_true", help="keep wrk's own output in the JSON")
    p.add_argument(
        "--corral-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pass `--set NAME=VALUE` to corral serve (repeatable), e.g. "
        "connections_per_worker=64 for the threads docs/scaling.md recommends for I/O-bound apps",
    )
    p.add_argument(
        "--corral-access-log",
        choices=("combined", "extended", "json"),
        help="corral serve writes its access log in this format to a file in the run's "
        "temporary folder (default: --no-access-log)",
    )
    p.add_argument(
        "--corral-build",
        choices=("compiled", "editable"),
        help="which Corral runs: `compiled`, the wheel `pip install .` gives users (the hot path "
        "compiled with mypyc; built once per change of the sources into a virtualenv under "
        "build/compiled, bench/compiledbuild.py), or `editable`, this interpreter's own install "
        "(pure Python); default: compiled with --check, else editable",
    )
    args = p.parse_args(argv)
    if args.corral_build is None:
        args.corral_build = "compiled" if args.check else "editable"
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in args.server_list:
        if name not in KINDS:
            p.error(f"unknown server {name!r} (choose from {', '.join(KINDS)})")
    for name in args.scenario_list:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    if min(args.workers or 1, args.wrk_threads, args.repeat) < 1 or args.duration < 1:
        p.error("--workers, --wrk-threads and --repeat must be >= 1, and --duration >= 1")
    return args


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        wrk = wrkrun.find_wrk()
    except wrkrun.WrkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load1 = os.getloadavg()[0]
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": round(load1, 2),
        "python": platform.python_version(),
        "wrk": wrkrun.wrk_version(wrk),
        "commit": git_commit(),
        "workers": args.workers,
        "corral_set": args.corral_set,
        "corral_access_log": args.corral_access_log,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "wrk_threads": args.wrk_threads,
        "repeat": args.repeat,
        "wrk_timeout_s": args.timeout,
        "servers": {},
    }
    corral_bin: Path | None = None
    if "corral" in args.server_list and args.corral_build == "compiled":
        print("bench: the compiled build of these sources (bench/compiledbuild.py)...", flush=True)
        try:
            corral_bin = compiledbuild.compiled_venv() / "bin"
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: the compiled build: {exc}", file=sys.stderr)
            return 2
    meta["corral_build"] = args.corral_build
    each = "its own defaults" if args.workers is None else f"{args.workers} workers"
    print(
        f"bench: {', '.join(args.server_list)} x {', '.join(args.scenario_list)}; "
        f"each with {each}, {args.duration:g} s per run "
        f"after {args.warmup:g} s warm-up, {args.repeat} run(s) each, "
        f"wrk {args.wrk_threads} thread(s); load average {load1:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    if load1 > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy; these figures are noisy", flush=True)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    servers: dict[str, Server] = {}
    errors = (ServerError, wrkrun.WrkError, OSError, http.client.HTTPException)

    def fail(name: str, exc: Exception) -> None:
        print(f"\nerror: {name}: {exc}", file=sys.stderr, flush=True)
        failures.append(name)
        servers.pop(name).stop()

    with tempfile.TemporaryDirectory(prefix="corral-bench-") as log_dir:
        try:
            # Every server runs for the whole benchmark (idle ones cost next to nothing), so that
            # the servers take turns scenario by scenario: a change in the machine's load then
            # hits them alike.
            for name in args.server_list:
                servers[name] = Server(KINDS[name], args.workers, Path(log_dir))
                if name == "corral":
                    servers[name].bin_dir = corral_bin
                    servers[name].extra_args = tuple(
                        arg for value in args.corral_set for arg in ("--set", value)
                    )
                    if args.corral_access_log:
                        servers[name].extra_args += (
                            "--access-log",
                            str(Path(log_dir) / "access.log"),
                            "--set",
                            f"access_log_format={args.corral_access_log}",
                        )
                try:
                    servers[name].start()
                    meta["servers"][name] = {
                        "version": servers[name].version,
                        "command": servers[name].exe,
                        "argv": servers[name].argv,
                    }
                    preflight(servers[name])
                    if name == "corral":  # (which build ran: `corral --version` says)
                        print(f"bench: {servers[name].version}", flush=True)
                except errors as exc:
                    fail(name, exc)
            for round_no in range(args.repeat):
                for scenario_name in args.scenario_list:
                    scenario = SCENARIOS[scenario_name]
                    for name in [n for n in args.server_list if n in servers]:
                        label = f"  {scenario.name:12} {name:9}"
                        if args.repeat > 1:
                            label += f" run {round_no + 1}/{args.repeat}"
                        print(label + " ...", end="", flush=True)
                        try:
                            row = measure(servers[name], scenario, wrk, args)
                        except errors as exc:
                            fail(name, exc)
                            continue
                        rows.append(row)
                        print(
                            f" {row['req_per_s']:9.0f} req/s, errors {fmt_errors(row)}, "
                            f"{row['cpu_us_per_request']} µs CPU/req",
                            flush=True,
                        )
        finally:
            for server in servers.values():
                server.stop()
    all_runs = rows
    # The machine is shared: its load at the end says how much of the run the others took too.
    meta["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = median_rows(rows)
    rows.sort(
        key=lambda r: (args.scenario_list.index(r["scenario"]), args.server_list.index(r["server"]))
    )
    print(
        f"\nload average at the end: {' / '.join(map(str, meta['loadavg_at_end']))} (1/5/15 min)\n"
    )
    if rows:
        print_table(rows)
    if args.workers is None:  # servers with their defaults: issue 14's targets
        checks = targets.judge(rows, SCENARIOS, starved_share=STARVED_SHARE, complete=args.check)
    else:  # N workers each: the first benchmark's (issue 2)
        checks = acceptance(rows, complete=args.check)
    if checks:
        print("\nCorral's targets:")
        for c in checks:
            print(f"  [{'ok' if c['ok'] else 'MISSED'}] {c['check']}: {c['value']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "meta": meta,
            "results": rows,
            "runs": all_runs if args.repeat > 1 else [],
            "acceptance": checks,
            "failed_servers": failures,
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {args.json}")
    if failures:
        return 1
    if args.check and not all(c["ok"] for c in checks):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
