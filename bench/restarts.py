"""Requests lost to restarts: wrk loads `corral serve` while its application is restarted.

    .venv/bin/python bench/restarts.py [--duration 15] [--connections 16] [--workers 2]

A temporary site (WATCH_FILE_CHANGES_MASK=*.py) is served with --min/--max N workers. During
the wrk run the script edits a .py file (rolling restart by the watcher), touches restart.txt
(rolling restart), and changes a variable in web.config (configuration reload: a new pool takes
over once ready). It prints wrk's totals (every error kind, every non-2xx status) and the
restarts the server logged. The target is zero errors.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrkrun import find_wrk, run

WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration><system.webServer>
  <heliconZoo><application name="bench.app"><environmentVariables>
    <add name="WSGI_APP" value="wsgi.application" />
    <add name="WATCH_FILE_CHANGES_MASK" value="*.py" />
    <add name="GREETING" value="{greeting}" />
  </environmentVariables></application></heliconZoo>
  <handlers><add name="bench.app#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
    modules="HeliconZoo_x64" preCondition="bitness64" /></handlers>
</system.webServer></configuration>
"""
APP = """import os
from version import V

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {V} {os.environ['GREETING']}".encode()]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="corral-restarts-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "web.config").write_text(WEB_CONFIG.format(greeting="one"))
        (site / "wsgi.py").write_text(APP)
        (site / "version.py").write_text("V = 1\n")
        n = str(args.workers)
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "corral", "serve", str(site), "--listen", "127.0.0.1:0"),
                *("--no-access-log", "--min", n, "--max", n),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        log: list[str] = []
        port = threading.Event()
        found: list[int] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.append(line.rstrip())
                match = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
                if match and not found:
                    found.append(int(match.group(1)))
                    port.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            if not port.wait(30):
                raise SystemExit("corral serve did not start:\n" + "\n".join(log))
            url = f"http://127.0.0.1:{found[0]}/"
            subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=False, timeout=30)
            step = args.duration / 4

            def changes() -> None:
                time.sleep(step)
                (site / "version.py").write_text("V = 2\n")
                time.sleep(step)
                (site / "restart.txt").write_text(str(time.time()))
                time.sleep(step)
                (site / "web.config").write_text(WEB_CONFIG.format(greeting="two"))

            threading.Thread(target=changes, daemon=True).start()
            result = run(
                wrk,
                url,
                "get.lua",
                connections=args.connections,
                duration=args.duration,
                threads=1,
                timeout=10,
                extra=("statuses.lua",),
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        restarts = [line for line in log if "rolling restart (" in line or "reloaded:" in line]
        print(f"requests {result.requests} in {result.duration_s:.1f} s ({result.req_per_s:.0f}/s)")
        print(f"errors {result.errors}  statuses {result.statuses}")
        print(
            f"latency p50 {result.latency_us.get('p50', 0) / 1000:.1f} ms, "
            f"p99 {result.latency_us.get('p99', 0) / 1000:.1f} ms"
        )
        for line in restarts:
            print("  " + line)
        non_2xx = sum(v for k, v in result.statuses.items() if not 200 <= k < 300)
        return 0 if result.error_count == 0 and non_2xx == 0 and len(restarts) >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
