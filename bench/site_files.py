"""Sites as files under load: wrk loads site A while site B's file is added, changed, broken,
fixed and removed in the include folder (`[server] include = ["sites.d/*.toml"]`).

    .venv/bin/python bench/site_files.py [--step 3] [--connections 16]

Site A binds every host; site B the host b.test. A probe asks b.test every 20 ms. The script
prints wrk's totals for A (every error kind, every non-2xx status: the target is none) and,
for each step, how long after the file was written B answered as that step should (b1, b2,
still b2 while its file is broken, b1 again, then site A's answer once removed: A binds every
host). It exits 1 unless A saw no error and B answered each step's version, and only it, after.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wrkrun import find_wrk, run

APP = """import os

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"NAME " + str(os.getpid()).encode()]
"""


def site(name: str, folder: str, host: str = "") -> str:
    return (
        f'[sites.{name}]\nbindings = ["127.0.0.1:8080:{host}"]\n'
        f'[sites.{name}.apps."/"]\nphysical_path = "../apps/{folder}"\n'
    )


def write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def ask(port: int, host: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status = data.split(b" ", 2)[1].decode()
    if status != "200":
        return status
    return data.partition(b"\r\n\r\n")[2].split(b" ")[0].decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="corral-site-files-") as tmp:
        root = Path(tmp)
        for name in ("a", "b1", "b2"):
            folder = root / "apps" / name
            folder.mkdir(parents=True)
            (folder / "wsgi.py").write_text(APP.replace("NAME", name))
            (folder / "corral.toml").write_text('[apps.app]\nengine = "python"\n')
        sites = root / "sites.d"
        sites.mkdir()
        (root / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
        write(sites / "a.toml", site("a", "a"))
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "corral", "serve", str(root / "server.toml")),
                *("--listen", "127.0.0.1:0", "--no-access-log", "--min", "2", "--max", "2"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        log: list[str] = []
        ready = threading.Event()
        found: list[int] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.append(line.rstrip())
                match = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
                if match and not found:
                    found.append(int(match.group(1)))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        seen: list[tuple[float, str]] = []
        stop = threading.Event()
        try:
            if not ready.wait(30):
                raise SystemExit("corral serve did not start:\n" + "\n".join(log))
            port = found[0]
            url = f"http://127.0.0.1:{port}/"
            subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=False, timeout=30)

            def probe() -> None:
                while not stop.is_set():
                    try:
                        seen.append((time.monotonic(), ask(port, "b.test")))
                    except OSError as exc:
                        seen.append((time.monotonic(), f"error {exc}"))
                    time.sleep(0.02)

            b = sites / "b.toml"
            steps = [
                ("added", lambda: write(b, site("b", "b1", "b.test")), "b1"),
                ("changed", lambda: write(b, site("b", "b2", "b.test")), "b2"),
                ("broken", lambda: write(b, "[sites.b]\nbindings = [\n"), "b2"),
                ("fixed", lambda: write(b, site("b", "b1", "b.test")), "b1"),
                ("removed", b.unlink, "a"),  # site A answers every other host
            ]
            written: list[float] = []

            def changes() -> None:
                for _, change, _ in steps:
                    time.sleep(args.step)
                    written.append(time.monotonic())
                    change()

            threading.Thread(target=probe, daemon=True).start()
            threading.Thread(target=changes, daemon=True).start()
            result = run(
                wrk,
                url,
                "get.lua",
                connections=args.connections,
                duration=args.step * (len(steps) + 1),
                threads=1,
                timeout=10,
                extra=("statuses.lua",),
            )
        finally:
            stop.set()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        print(f"site A: {result.requests} requests in {result.duration_s:.1f} s")
        print(f"site A: errors {result.errors}  statuses {result.statuses}")
        ok = result.error_count == 0 and set(result.statuses) == {200}
        for index, (what, _, expected) in enumerate(steps):
            start = written[index] if index < len(written) else float("inf")
            end = written[index + 1] if index + 1 < len(written) else float("inf")
            answers = [(t, body) for t, body in seen if start <= t < end]
            first = next((t for t, body in answers if body == expected), None)
            if first is None:
                ok = False
                print(f"site B {what}: never answered {expected}")
                continue
            after = {body for t, body in answers if t >= first}
            if after != {expected}:
                ok = False
            print(
                f"site B {what}: answered {expected} {1000 * (first - start):.0f} ms after the "
                f"write; afterwards {sorted(after)}"
            )
        print("errors in the log:", sum(" ERROR " in line for line in log))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
