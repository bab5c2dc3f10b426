#!/usr/bin/env python3
"""TLS at Corral's front: hello world over https against the same over plain HTTP, one server.

    .venv/bin/python bench/tls.py [--duration 10] [--workers N] [--connections 64] [--repeat 1]

One `corral serve` process (a server TOML: the bench site bound twice, plain HTTP on one
loopback port and https on another, with an EC P-256 certificate this script makes with the
`openssl` command line), so both are measured with the same front and the same workers, taking
turns: wrk (Debian's, built with OpenSSL) kept alive (`hello`: the cost of TLS records on a
request) and with `Connection: close` (`hello-close`: a TCP connection and a full TLS handshake
per request). Prints req/s, p50/p99 latency, errors and the CPU time of Corral's whole process
tree per request. Loopback only; every process started here is stopped at the end. Compare
figures within one run (see bench/README.md, "TLS").

``--nginx`` adds the reference of issue 12 to the same run: nginx (Debian's) terminating TLS with
the same certificate and passing each request over FastCGI (a connection per request, the usual
nginx set-up: a WSGI worker serves one connection at a time) to the same number of Corral's Python
workers, started directly (``python -m corral.worker --bind``);
its CPU is nginx's processes plus those workers'.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import wrkrun
from proctree import tree_cpu_seconds
from servers import SITE_DIR, free_port

_SERVING = re.compile(r"serving .* on (https?)://127\.0\.0\.1:(\d+)")

SCENARIOS = (("hello", "get.lua"), ("hello-close", "close.lua"))


def make_certificate(folder: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(folder / "bench.key"), "-out", str(folder / "bench.pem"),
         "-days", "2", "-subj", "/CN=bench.example",
         "-addext", "subjectAltName=DNS:bench.example"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (folder / "bench.key").chmod(0o600)


def server_toml(folder: Path, plain: int, https: int) -> Path:
    """The bench site's application (bench/site/wsgi.py, imported from there) bound twice."""
    site = folder / "site"
    site.mkdir()
    (site / "corral.toml").write_text(
        f'[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
        f'pythonpath = ["{SITE_DIR}"]\n'
    )
    path = folder / "server.toml"
    path.write_text(
        "[sites.bench]\n"
        f'bindings = ["127.0.0.1:{plain}", {{ address = "127.0.0.1", port = {https}, '
        'protocol = "https", certificate = "bench.pem", key = "bench.key" }]\n'
        '[sites.bench.apps."/"]\nphysical_path = "site"\n'
    )
    return path


class Corral:
    """`corral serve SERVER_TOML --min N --max N --no-access-log` in its own process group."""

    def __init__(self, config: Path, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", str(config), "--min", str(workers),
             "--max", str(workers), "--no-access-log"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
        )  # fmt: skip
        self.urls: dict[str, str] = {}
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        for raw in self.proc.stdout:
            match = _SERVING.search(raw.decode(errors="replace"))
            if match:
                self.urls[match.group(1)] = f"{match.group(1)}://127.0.0.1:{match.group(2)}"
            if len(self.urls) == 2 or time.monotonic() > deadline:
                break
        if len(self.urls) != 2:
            self.stop()
            raise SystemExit("corral serve did not start on both ports")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class NginxTls:
    """nginx terminating TLS in front of ``workers`` of Corral's Python worker over FastCGI."""

    def __init__(self, folder: Path, workers: int, *, http2: bool = False) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        ports = [free_port() for _ in range(workers)]
        for port in ports:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "corral.worker", "--bind", f"127.0.0.1:{port}"],
                    cwd=SITE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )  # fmt: skip
        self.port = free_port()
        servers = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
        (folder / "nginx.conf").write_text(
            "daemon off;\nworker_processes 1;\npid nginx.pid;\nerror_log nginx-error.log;\n"
            "events { worker_connections 1024; }\n"
            "http {\n  access_log off;\n"
            "  client_body_temp_path tmp-body; fastcgi_temp_path tmp-fastcgi;\n"
            "  proxy_temp_path tmp-proxy; uwsgi_temp_path tmp-uwsgi; scgi_temp_path tmp-scgi;\n"
            f"  upstream workers {{\n{servers}  }}\n"
            f"  server {{\n    listen 127.0.0.1:{self.port} ssl{' http2' if http2 else ''};\n"
            f"    ssl_certificate {folder}/bench.pem;\n"
            f"    ssl_certificate_key {folder}/bench.key;\n"
            "    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    location / {\n      include /etc/nginx/fastcgi_params;\n"
            "      fastcgi_param PATH_INFO $uri;\n      fastcgi_param SCRIPT_NAME '';\n"
            "      fastcgi_pass workers;\n    }\n  }\n}\n"
        )
        self.procs.append(
            subprocess.Popen(
                ["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{self.port}"
        time.sleep(1.5)  # (the workers import the app; nginx binds)
        if any(proc.poll() is not None for proc in self.procs):
            self.stop()
            raise SystemExit("nginx or a worker did not start (see nginx-error.log)")

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def measure(
    wrk: str, pids: list[int], url: str, script: str, args: argparse.Namespace
) -> tuple[wrkrun.WrkResult, float]:
    """wrk's result and the CPU microseconds per request of the process trees ``pids``."""
    # A warm-up run, then the measured one.
    wrkrun.run(wrk, url, script, connections=args.connections, duration=2, threads=1, timeout=10)
    time.sleep(0.5)
    before = sum(tree_cpu_seconds(pid).total for pid in pids)
    result = wrkrun.run(wrk, url, script, connections=args.connections,
                        duration=args.duration, threads=1, timeout=10)  # fmt: skip
    spent = sum(tree_cpu_seconds(pid).total for pid in pids) - before
    return result, spent / max(result.requests, 1) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--nginx", action="store_true", help="also nginx terminating TLS, FastCGI to the workers"
    )
    args = parser.parse_args()
    try:
        wrk = wrkrun.find_wrk()
    except wrkrun.WrkError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{wrkrun.wrk_version(wrk)}; {args.workers} workers, {args.connections} connections, "
          f"{args.duration} s per run")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="corral-bench-tls-") as tmp:
        folder = Path(tmp)
        make_certificate(folder)
        corral = Corral(server_toml(folder, free_port(), free_port()), args.workers)
        nginx = NginxTls(folder, args.workers) if args.nginx else None
        try:
            print(f"{'scenario':<12} {'scheme':<6} {'req/s':>9} {'p50':>9} {'p99':>9} "
                  f"{'errors':>7} {'CPU µs/req':>11}")  # fmt: skip
            for _ in range(args.repeat):
                for scenario, script in SCENARIOS:
                    targets = [(scheme, corral.urls[scheme], [corral.proc.pid])
                               for scheme in ("http", "https")]  # fmt: skip
                    if nginx is not None:
                        targets.append(("nginx", nginx.url, nginx.pids))
                    for scheme, base, pids in targets:
                        url = base + "/hello"
                        result, cpu = measure(wrk, pids, url, script, args)
                        p50 = result.latency_us.get("p50", 0) / 1000
                        p99 = result.latency_us.get("p99", 0) / 1000
                        print(f"{scenario:<12} {scheme:<6} {result.req_per_s:>9.0f} "
                              f"{p50:>7.2f}ms {p99:>7.2f}ms {result.error_count:>7} "
                              f"{cpu:>11.0f}")  # fmt: skip
        finally:
            corral.stop()
            if nginx is not None:
                nginx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
