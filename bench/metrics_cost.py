"""What the admin listener costs the front: the CPU of one /metrics scrape (and of one dashboard
update) with 20 applications, against the front's CPU at the hello load.

    .venv/bin/python bench/metrics_cost.py [--apps 20] [--scrapes 300] [--duration 10]

A temporary server TOML with ``--apps`` sites, one Python application each (every one woken by a
request, so that each has a worker and its figures), served by ``corral serve --admin``. Then:

1. ``--scrapes`` scrapes of /metrics one after another on one kept-alive connection, and as many
   GETs of /api/status (what the dashboard's event stream computes each second): the CPU time of
   the Corral process itself (not its workers) over them, per scrape;
2. wrk's hello scenario (64 connections, keep-alive) on one application for ``--duration``
   seconds, twice: without a scraper, then with /metrics scraped once a second; the Corral
   process's CPU per request in each;
3. the share: CPU of one scrape per second over the front's CPU per second at that load.

The target (issue 11): scraping every second costs the front under 1% of its CPU at the hello
load. Figures go to bench/README.md with this command.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrkrun import find_wrk, run

TOKEN = "bench-admin-token-0123456789abcdef"
APP = """def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    return [b"Hello, world!\\n"]
"""


def own_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def server_toml(root: Path, port: int, apps: int) -> Path:
    site = root / "site"
    site.mkdir()
    (site / "wsgi.py").write_text(APP)
    (site / "corral.toml").write_text(
        '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
    )
    lines = ["[server]", 'admin = "127.0.0.1:0"', ""]
    for index in range(apps):
        lines += [
            f"[sites.s{index}]",
            f'bindings = ["127.0.0.1:{port}:s{index}.local"]',
            f'[sites.s{index}.apps."/"]',
            f'physical_path = "{site}"',
            "",
        ]
    path = root / "server.toml"
    path.write_text("\n".join(lines))
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> bytes:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    return body


def cost(pid: int, port: int, path: str, count: int, headers: dict[str, str]) -> tuple[float, int]:
    """Seconds of the Corral process's CPU per GET of ``path``, and the body's size."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    size = len(get(conn, path, headers))
    before = own_cpu(pid)
    for _ in range(count):
        get(conn, path, headers)
    spent = own_cpu(pid) - before
    conn.close()
    return spent / count, size


def load(
    wrk: str, pid: int, front: int, admin: int, duration: float, scrape: bool
) -> tuple[float, float, int]:
    """wrk hello on s0: (Corral's CPU seconds per second, per request, requests)."""
    stop = threading.Event()
    scrapes = 0

    def scraper() -> None:
        nonlocal scrapes
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
        while not stop.wait(1.0):
            get(conn, "/metrics", {})
            scrapes += 1
        conn.close()

    thread = threading.Thread(target=scraper, daemon=True) if scrape else None
    run(
        wrk,
        f"http://127.0.0.1:{front}/hello",
        "get.lua",
        connections=64,
        duration=2,
        threads=1,
        timeout=10,
        extra=("vhost.lua",),
    )  # warm-up
    time.sleep(1)
    if thread is not None:
        thread.start()
    before, started = own_cpu(pid), time.monotonic()
    result = run(
        wrk,
        f"http://127.0.0.1:{front}/hello",
        "get.lua",
        connections=64,
        duration=duration,
        threads=1,
        timeout=10,
        extra=("vhost.lua",),
    )
    spent, elapsed = own_cpu(pid) - before, time.monotonic() - started
    stop.set()
    if thread is not None:
        thread.join(5)
    if result.error_count:
        raise RuntimeError(f"wrk errors: {result.errors}")
    return spent / elapsed, spent / max(1, result.requests), result.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    wrk = find_wrk()
    os.environ["CORRAL_BENCH_HOST"] = "s0.local"  # read by lua/vhost.lua in wrk
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="corral-metrics-cost-") as tmp:
        config = server_toml(Path(tmp), port, args.apps)
        env = {**os.environ, "CORRAL_ADMIN_TOKEN": TOKEN, "XDG_RUNTIME_DIR": tmp}
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", str(config), "--no-access-log"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            text=True,
        )
        try:
            assert proc.stdout is not None
            admin = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not admin:
                line = proc.stdout.readline()
                match = re.search(r"admin listener on http://127\.0\.0\.1:(\d+)", line)
                if match:
                    admin = int(match.group(1))
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            if not admin:
                raise RuntimeError("corral did not open its admin listener")
            time.sleep(1)
            front = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for index in range(args.apps):
                get(front, "/", {"Host": f"s{index}.local"})  # wake every application
            front.close()
            time.sleep(2)  # a health round: every worker's memory and CPU figures
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            per_scrape, size = cost(proc.pid, admin, "/metrics", args.scrapes, {})
            per_status, status_size = cost(proc.pid, admin, "/api/status", args.scrapes, bearer)
            print(f"{args.apps} applications, Corral pid {proc.pid}")
            print(f"/metrics:    {per_scrape * 1e6:8.0f} µs CPU per scrape ({size} bytes)")
            print(f"/api/status: {per_status * 1e6:8.0f} µs CPU per update ({status_size} bytes)")
            plain = load(wrk, proc.pid, port, admin, args.duration, scrape=False)
            scraped = load(wrk, proc.pid, port, admin, args.duration, scrape=True)
            for name, (per_second, per_request, requests) in (
                ("hello", plain),
                ("hello + 1 Hz /metrics", scraped),
            ):
                print(
                    f"{name:22s} {requests / args.duration:8.0f} req/s, Corral CPU "
                    f"{per_second * 100:5.1f}% of a core, {per_request * 1e6:5.1f} µs/request"
                )
            busy = max(plain[0], scraped[0])  # the front's CPU per second at that load
            share = per_scrape / busy
            print(
                f"one scrape a second = {share * 100:.2f}% of the front's CPU at the hello load "
                f"({busy * 100:.0f}% of a core; target < 1%)"
            )
            return 0 if share < 0.01 else 3
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
