#!/usr/bin/env python3
"""Preloaded workers, measured: spawn time and memory per worker, with and without a template.

    python bench/preload.py [--workers 4] [--requests 50] [--apps django,flask] [--json FILE]
                            [--warm] [--warm-up N[,N...]]

For each app (a Django project with its admin loaded, a Flask app; both made in a temporary
folder) and each of ``PRELOAD=off`` and ``PRELOAD=on``, the script runs the app's real pool
(``corral.supervision.pool.Pool`` with the backend ``corral serve`` would build, so real worker
processes and, with preloading, the real template) and measures:

* **first**: from the first request to a ready worker (the template's import included);
* **spawn**: for each further worker, from the pool's decision (``set_bounds`` raising the
  floor by one: the policy starts one worker at once) to that worker answering its readiness
  probe, polled every millisecond;
* **USS** of each worker after it served ``--requests`` requests (the Django admin's login page
  or the Flask page; sent straight to each worker over FastCGI): Private_Clean + Private_Dirty
  from ``/proc/PID/smaps_rollup``, the memory that is that process's alone; and the template's.

Targets (issue 14): a new worker ready within 50 ms of the pool's decision; each worker after
the first adding no more than 30% of the first worker's private memory (here: a forked worker's
USS against a directly started worker's, both warm). Linux only (smaps_rollup, pidfds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent / "tests" / "apps"))

from fcgi_client import TestConnection, cgi_params  # noqa: E402

from corral.config import load_site  # noqa: E402
from corral.engines import Backend, backend_for  # noqa: E402
from corral.engines.poolsettings import pool_settings_for  # noqa: E402
from corral.supervision.pool import Pool  # noqa: E402

DJANGO_SETTINGS = """
import os
BASE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "proj.urls"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.path.join(BASE, "db.sqlite3")}}
STATIC_URL = "static/"
USE_TZ = True
"""

DJANGO_URLS = """
from django.contrib import admin
from django.urls import path
urlpatterns = [path("admin/", admin.site.urls)]
"""

FLASK_APP = """
from flask import Flask, render_template_string
app = Flask(__name__)
PAGE = "<h1>{{ title }}</h1><ul>{% for i in items %}<li>{{ i }}</li>{% endfor %}</ul>"

@app.route("/")
def index():
    return render_template_string(PAGE, title="hello", items=range(20))
"""

PLAIN_APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""

#: App-start hooks that do in the template what the app does lazily at its first request
#: (``--warm``): then every worker shares it instead of building its own copy.
DJANGO_WARM = """
def warm():
    from django.test import Client
    Client().get("/admin/login/")
"""

FLASK_WARM = """
def warm():
    from hello import app
    app.test_client().get("/")
"""

PLAIN_WARM = """
def warm():
    pass
"""

#: (site files, corral.toml's app table, the path each worker is warmed with)
APPS: dict[str, tuple[dict[str, str], str, str]] = {
    "django": (
        {
            "proj/__init__.py": "",
            "proj/settings.py": DJANGO_SETTINGS,
            "proj/urls.py": DJANGO_URLS,
            "warmup.py": DJANGO_WARM,
        },
        'django_settings_module = "proj.settings"',
        "/admin/login/",
    ),
    "flask": ({"hello.py": FLASK_APP, "warmup.py": FLASK_WARM}, 'wsgi_app = "hello:app"', "/"),
    # Corral's worker alone: what any app's worker costs at least.
    "plain": ({"plain.py": PLAIN_APP, "warmup.py": PLAIN_WARM}, 'wsgi_app = "plain:app"', "/"),
}


def make_site(
    root: Path, name: str, preload: str, warm: bool, warm_up: int = 0, venv: str | None = None
) -> Path:
    """The app's site; ``warm``: its app-start hook serves a request; ``warm_up``: the
    ``warm_up`` setting names the app's page, sent that many times (0: not set); ``venv``:
    the app runs in that virtualenv's interpreter (``virtual_env``)."""
    files, table, path = APPS[name]
    site = (
        root / f"{name}-{preload}{'-warm' if warm else ''}{f'-warm-up{warm_up}' if warm_up else ''}"
    )
    if warm:
        table += '\nhook_app_start = "warmup:warm"'
    if warm_up:
        table += f'\nwarm_up = "{path}"\nwarm_up_requests = {warm_up}'
    if venv:
        table += f'\nvirtual_env = "{venv}"'

    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(textwrap.dedent(text))
    (site / "corral.toml").write_text(
        f'[apps.{name}]\nengine = "python"\npreload = "{preload}"\n{table}\n'
    )
    return site


def uss_kib(pid: int) -> int:
    """Private_Clean + Private_Dirty of ``pid``, KiB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


async def warm(address: object, path: str, requests: int) -> None:
    conn = await TestConnection.open(address)  # type: ignore[arg-type]
    try:
        for _ in range(requests):
            head, _ = await conn.request(cgi_params(path.encode()))
            if b"Status: 5" in head:
                raise RuntimeError(f"{path} answered {head!r}")
    finally:
        conn.close()


def site_pool(site: Path, name: str, workers: int) -> tuple[Pool, Backend]:
    """The real pool ``corral serve`` would run for the site's one app (up to ``workers``)."""
    config = load_site(str(site))
    [app] = config.apps
    settings = pool_settings_for(app, {"min_instances": 0, "max_instances": workers})
    backend = backend_for(app, settings)
    assert backend.plan is not None and backend.probe is not None
    pool = Pool(
        name, backend.plan, settings, backend.connect, backend.probe, spawner=backend.spawner
    )
    return pool, backend


async def warm_workers(pool: Pool, path: str, requests: int) -> None:
    """Send ``requests`` requests for ``path`` straight to each of the pool's workers."""
    for info in pool.snapshot().workers:
        assert info.address is not None
        address: object = info.address
        if ":" in info.address and not info.address.startswith("/"):
            host, port = info.address.rsplit(":", 1)
            address = (host, int(port))
        await warm(address, path, requests)


async def measure(site: Path, name: str, workers: int, requests: int) -> dict[str, object]:
    pool, backend = site_pool(site, name, workers)

    def ready() -> list[int]:
        return [w.pid for w in pool.snapshot().workers if w.state == "idle" and w.pid]

    try:
        started = time.perf_counter()
        lease = await pool.acquire()
        first = time.perf_counter() - started
        pool.release(lease, reusable=True)
        spawns: list[float] = []
        for count in range(2, workers + 1):
            started = time.perf_counter()
            pool.set_bounds(count, workers)
            while len(ready()) < count:  # noqa: ASYNC110 - polled: the figure is the point
                await asyncio.sleep(0.001)
            spawns.append(time.perf_counter() - started)
        await warm_workers(pool, APPS[name][2], requests)
        pids = ready()
        uss = [uss_kib(pid) for pid in pids]
        template = backend.spawner.template_pid if backend.spawner is not None else None
        return {
            "first_ready_ms": round(first * 1000, 1),
            "spawn_ms": [round(s * 1000, 1) for s in spawns],
            "spawn_ms_median": round(statistics.median(spawns) * 1000, 1) if spawns else None,
            "worker_uss_kib": uss,
            "template_uss_kib": uss_kib(template) if template else None,
        }
    finally:
        await pool.close(0)


def suffix(warm: bool, warm_up: int) -> str:
    return (" +warm" if warm else "") + (f" +warm_up x{warm_up}" if warm_up else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--apps", default="django,flask")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--virtual-env",
        metavar="DIR",
        help="run the apps in this virtualenv (its interpreter, with Flask and Django)",
    )
    parser.add_argument(
        "--warm-up",
        metavar="N[,N...]",
        help="also measure preloading with the warm_up setting naming the app's page (the "
        "template requests it through the app before forking), sent N times (each N a run)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="also measure preloading with an app-start hook that serves one request in the "
        "template (what the app builds lazily is then shared)",
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.warm_up.split(",")] if args.warm_up else []
    variants = [("off", False, 0), ("on", False, 0)]
    variants += [("on", True, 0)] if args.warm else []
    variants += [("on", False, n) for n in counts]
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="corral-preload-") as tmp:
        for name in args.apps.split(","):
            for preload, warm, warm_up in variants:
                site = make_site(Path(tmp), name, preload, warm, warm_up, args.virtual_env)
                label = f"{name} preload={preload}{suffix(warm, warm_up)}"
                results[label] = asyncio.run(measure(site, name, args.workers, args.requests))
    print(
        f"{'app':<30} {'first ready':>11} {'spawn median (each)':>34} "
        f"{'worker USS KiB (each)':>36} {'template':>9}"
    )
    for label, r in results.items():
        spawn = f"{r['spawn_ms_median']} ms ({', '.join(str(s) for s in r['spawn_ms'])})"  # type: ignore[union-attr]
        uss = r["worker_uss_kib"]
        assert isinstance(uss, list)
        print(
            f"{label:<30} {r['first_ready_ms']:>8} ms {spawn:>34} "
            f"{round(statistics.mean(uss)):>8} ({', '.join(map(str, uss))}) "
            f"{r['template_uss_kib'] or '-':>9}"
        )
    for name in args.apps.split(","):
        off = results[f"{name} preload=off"]
        direct = statistics.mean(off["worker_uss_kib"])  # type: ignore[arg-type]
        for variant in [suffix(warm, warm_up) for preload, warm, warm_up in variants[1:]]:
            on = results[f"{name} preload=on{variant}"]
            forked = statistics.mean(on["worker_uss_kib"])  # type: ignore[arg-type]
            print(
                f"{name}{variant}: a forked worker's USS is {forked / direct:.0%} of a direct "
                f"worker's (target <= 30%); spawn median {on['spawn_ms_median']} ms with "
                f"preloading, {off['spawn_ms_median']} ms without (target <= 50 ms)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
