"""Each server started with its own defaults: bench/run.py without ``--workers`` (issue 14).

Issue 14 compares servers as users run them, untuned: every server gets what it needs to serve
the bench app over HTTP on the harness's port, and nothing that changes how many processes or
threads it runs, its backlog or its queueing. What each one is given beyond its defaults, and
why, is in bench/README.md ("Defaults on both sides"); ``--workers N`` keeps the older
comparison, every server with N worker processes (servers.py).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

#: Environment variables through which a server takes settings: the servers run without them, so
#: that whatever the harness's caller has set cannot change a server's defaults.
SETTING_VARIABLES = ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")
SETTING_PREFIXES = ("GRANIAN_", "UWSGI_")


def command(name: str, exe: str, port: int, site: Path) -> list[str]:
    """The command line of server ``name`` with its defaults, listening on 127.0.0.1:``port``."""
    listen = f"127.0.0.1:{port}"
    if name == "corral":
        # No pool settings at all: the workers, their threads and their scaling are Corral's
        # own defaults. No access log, like the other three by default.
        return [exe, "serve", str(site), "--listen", listen, "--no-access-log"]
    if name == "gunicorn":
        # gunicorn's defaults: one sync worker, backlog 2048, no access log. --chdir is where
        # the app is (the harness also starts it there).
        return [exe, "--bind", listen, "--chdir", str(site), "wsgi:application"]
    if name == "gunicorn-nginx":
        # gunicorn's defaults behind nginx, as gunicorn's deployment docs set it up
        # (behind_nginx.py). Not in the default list: a reference for the relaying scenarios.
        return [sys.executable, str(Path(__file__).with_name("behind_nginx.py")), "--port",
                str(port), "--site", str(site), "--gunicorn", exe]  # fmt: skip
    if name == "granian":
        # granian's defaults: one worker, its WSGI threads, backlog 1024. Its default interface is
        # RSGI: a WSGI app needs --interface wsgi.
        return [exe, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--working-dir", str(site), "wsgi:application"]  # fmt: skip
    if name == "uwsgi":
        # uWSGI's defaults (one process, no master, no threads, backlog 100) behind its HTTP
        # router (--http, as in its quick start: a process of its own that speaks HTTP to
        # clients and uwsgi to the worker). --http-keepalive: without it the router answers
        # HTTP/1.1 without "Connection: close" and then closes, which a kept-alive client takes
        # for a broken connection (wrk: a read error per request). Request logging off (every
        # other server has no access log by default); --need-app and --die-on-term so that a
        # broken start fails and SIGTERM stops it; the last three keep client disconnects out
        # of its log.
        return [exe, "--http", listen, "--http-keepalive", "--wsgi-file", str(site / "wsgi.py"),
                "--need-app", "--die-on-term", "--disable-logging", "--ignore-sigpipe",
                "--ignore-write-errors", "--disable-write-exception"]  # fmt: skip
    raise AssertionError(name)


def clean_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that would change a server's settings."""
    return {
        k: v
        for k, v in env.items()
        if k not in SETTING_VARIABLES and not k.startswith(SETTING_PREFIXES)
    }
