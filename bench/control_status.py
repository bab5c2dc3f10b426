"""How fast `corral status` answers: 20 applications of 5 workers each (100 workers).

    .venv/bin/python bench/control_status.py [--apps 20] [--workers 5] [--rounds 30]

A temporary server file lists ``--apps`` applications (Corral's Python worker, a three-line
WSGI app) served with ``--min``/``--max`` ``--workers``; once every worker is ready, the script
times ``corral status`` three ways, ``--rounds`` times each:

- ``in-process``: the client's work without starting a process (connect, request, read the
  reply, decode it, draw the screen: ``ops.client.call`` + ``ops.screen.render``);
- ``status``: ``corral status`` as a user runs it (the installed ``corral`` script next to this
  interpreter), a new process: interpreter start included;
- ``status --json``: the same, printing the document.

Wall-clock times, and the CPU time (user + system) of the client process, which a loaded
machine disturbs less; ``python -c pass`` is timed too, for reference.

It prints the median, the 90th percentile and the worst of each (milliseconds), the size of the
document, and the modules ``corral status`` imports beyond the interpreter's own start. The
target: under 100 ms, process start included.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from corral.ops import controlproto as proto
from corral.ops.client import call
from corral.ops.screen import render

APP = """def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def write_server(root: Path, apps: int) -> Path:
    lines = ['[sites.bench]\nbindings = ["127.0.0.1:0"]\n']
    for n in range(apps):
        folder = root / f"a{n}"
        folder.mkdir()
        (folder / "wsgi.py").write_text(APP)
        (folder / "corral.toml").write_text(f'[apps.a{n}]\nengine = "python"\n')
        lines.append(f'[sites.bench.apps."/a{n}"]\nphysical_path = "a{n}"\n')
    path = root / "server.toml"
    path.write_text("\n".join(lines))
    return path


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"median {statistics.median(ordered) * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms   "
        f"max {ordered[-1] * 1000:6.1f} ms"
    )


def ready_workers(sock: Path) -> int:
    document = call(sock, proto.Request(proto.STATUS))
    assert isinstance(document, dict)
    apps = document["apps"]
    assert isinstance(apps, list)
    return sum(
        1 for app in apps for w in app["workers"] if w["state"] in ("idle", "busy", "probing")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "corral"
    corral = [str(script)] if script.exists() else [sys.executable, "-m", "corral"]
    with tempfile.TemporaryDirectory(prefix="corral-status-") as tmp:
        root = Path(tmp)
        server_file = write_server(root, args.apps)
        sock = root / "control.sock"
        log = (root / "serve.log").open("w+")
        serve = subprocess.Popen(
            [
                *corral,
                "serve",
                str(server_file),
                "--listen",
                "127.0.0.1:0",
                "--min",
                str(args.workers),
                "--max",
                str(args.workers),
                "--no-access-log",
                "--control",
                str(sock),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            port = None
            while port is None and time.monotonic() < deadline:
                time.sleep(0.1)
                log.seek(0)
                match = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", log.read())
                port = int(match.group(1)) if match else None
            assert port is not None, "corral serve did not start"
            for n in range(args.apps):  # the first request starts each app's workers
                urllib.request.urlopen(f"http://127.0.0.1:{port}/a{n}/", timeout=60).read()
            want = args.apps * args.workers
            deadline = time.monotonic() + 300
            while ready_workers(sock) < want:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {ready_workers(sock)} of {want} workers are ready")
                time.sleep(0.5)
            time.sleep(2.0)  # let the starts' CPU settle

            request = proto.Request(proto.STATUS)
            inside: list[float] = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                lines = render(call(sock, request))
                inside.append(time.perf_counter() - start)
            size = len(proto.encode_reply(proto.Reply(True, call(sock, request))))

            def timed(*command: str) -> tuple[list[float], list[float]]:
                """Wall-clock and CPU seconds of each run of ``command``."""
                walls, cpus = [], []
                for _ in range(args.rounds):
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    done = subprocess.run(command, capture_output=True, check=True)
                    walls.append(time.perf_counter() - start)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                    assert done.stdout or command[1] == "-c"
                return walls, cpus

            text = timed(*corral, "status", "--control", str(sock))
            as_json = timed(*corral, "status", "--json", "--control", str(sock))
            bare = timed(sys.executable, "-c", "pass")
            imports = subprocess.run(
                [
                    sys.executable,
                    "-X",
                    "importtime",
                    "-m",
                    "corral",
                    "status",
                    "--control",
                    str(sock),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stderr
        finally:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(60)
    corral_modules = sorted(
        {
            line.split("|")[-1].strip()
            for line in imports.splitlines()
            if line.startswith("import time:") and "corral" in line.split("|")[-1]
        }
    )
    others = [
        line.split("|")[-1].strip()
        for line in imports.splitlines()
        if line.startswith("import time:") and "|" in line and "corral" not in line
    ]
    print(
        f"{args.apps} apps x {args.workers} workers = {want} workers; status document "
        f"{size / 1024:.0f} KiB, screen {len(lines)} lines; {args.rounds} rounds each"
    )
    print(f"  in-process (client work only)   {figures(inside)}")
    for name, (walls, cpus) in (
        ("corral status", text),
        ("corral status --json", as_json),
        ("python -c pass", bare),
    ):
        print(f"  {name:<22} wall  {figures(walls)}")
        print(f"  {'':<22} CPU   {figures(cpus)}")
    print(f"  corral modules imported: {', '.join(m.strip() for m in corral_modules)}")
    print(f"  other modules imported: {len(others)} (stdlib only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
