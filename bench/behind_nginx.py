#!/usr/bin/env python3
"""gunicorn behind nginx, as gunicorn's deployment documentation sets them up: a reference server.

    python bench/behind_nginx.py --port PORT --site DIR [--workers N] [--gunicorn EXE] [--nginx EXE]

gunicorn's documentation asks for a buffering proxy in front of its sync workers ("we strongly
advise that you use nginx"): slow clients then cost nginx a connection, not a worker. That is
the deployment whose work Corral's front does itself (it reads requests and writes responses for
its workers), so it is the fair reference for the scenarios where the front's relaying is the
cost (``1mib``, ``upload``): bench/run.py ``--servers gunicorn-nginx``.

This launcher is the root of the server's process tree, so bench/run.py counts the CPU of nginx
(master and worker) and of gunicorn (arbiter and worker) together; it spends none itself while
the bench runs (it waits). Both keep their defaults except where the documented setup sets
something: gunicorn's own defaults (one sync worker) bound to a Unix socket; nginx with one worker
process, the documented ``client_max_body_size 4G`` (nginx's 1 MB default would refuse the
``upload`` scenario's bodies) and proxy headers, its access log off (no server in the bench logs
requests). Files live in a temporary folder that is removed on exit. SIGTERM stops both.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STOP_GRACE = 10.0

NGINX_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream app_server {{
        server unix:{tmp}/gunicorn.sock fail_timeout=0;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 4G;
        location / {{
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Host $http_host;
            proxy_redirect off;
            proxy_pass http://app_server;
        }}
    }}
}}
"""


def nginx_conf(tmp: Path, port: int) -> str:
    """The configuration; as root, nginx's workers keep our user (its default, ``nobody``,
    could reach neither the socket nor the temporary folder)."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    return NGINX_CONF.format(user=user, tmp=tmp, port=port)


def _program(name: str, given: str | None) -> str:
    if given:
        return given
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    found = found or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise SystemExit(f"behind_nginx: {name} not found")
    return found


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--site", type=Path, required=True, help="folder of wsgi.py (application)")
    p.add_argument("--workers", type=int, help="gunicorn's --workers (default: its own, 1)")
    p.add_argument("--gunicorn")
    p.add_argument("--nginx")
    args = p.parse_args(argv)
    gunicorn = _program("gunicorn", args.gunicorn)
    nginx = _program("nginx", args.nginx)
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        (tmp / "nginx.conf").write_text(nginx_conf(tmp, args.port))
        workers = ["--workers", str(args.workers)] if args.workers else []
        app = [gunicorn, "--bind", f"unix:{tmp}/gunicorn.sock", "--chdir", str(args.site)]
        app += [*workers, "wsgi:application"]
        procs.append(subprocess.Popen(app, stdin=subprocess.DEVNULL))
        procs.append(
            subprocess.Popen(
                [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
            )
        )
        while not stopping:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"behind_nginx: {proc.args[0]} exited with {proc.returncode}",
                          file=sys.stderr)  # fmt: skip
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop(procs)
        log = tmp / "error.log"
        if log.is_file() and log.stat().st_size:
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
