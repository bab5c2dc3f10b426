"""The configuration model drives real workers: each fixture site's application, loaded from its
web.config / corral.toml, starts under Corral's Python worker with the environment, working
directory and interpreter the model resolved, and answers a FastCGI request sent with the
SCRIPT_NAME and PATH_INFO the router chose. Three applications of two sites run at once and none
sees another's variables.

These drive the pieces directly (Router.match -> AppConfig -> a pool); the same sites through a
real `corral serve` are in test_serve_config.py, and the composition is corral.engines.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from fcgi_client import TestConnection, cgi_params
from pool_testkit import run_under, with_lease

from corral.config import load, load_site
from corral.config.expand import finish_env
from corral.config.model import AppConfig, EngineKind
from corral.routing import Router
from corral.supervision import Pool, PoolSettings, python_worker_plan
from corral.supervision.launch import LaunchPlan

SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"


class RoutedConnection(TestConnection):
    """TestConnection that sends the SCRIPT_NAME / PATH_INFO the router chose."""

    async def call(self, script_name: bytes, path_info: bytes, filename: bytes = b"") -> bytes:
        params = [(b"SCRIPT_FILENAME", filename)] if filename else []
        params += cgi_params(path_info, script_name=script_name, server_port=b"8080")
        head, body = await self.request(params)
        # CGI: no Status header means 200 (php-cgi sends none).
        assert head.startswith(b"Status: 200") or b"Status:" not in head, head[:500]
        return body


def pool_for(app: AppConfig) -> Pool:
    """What `corral serve` does per application (engine kind PYTHON_WORKER)."""
    assert app.engine.kind is EngineKind.PYTHON_WORKER
    env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0, base={})
    plan = python_worker_plan(
        app.current_directory, python=app.interpreter, app_env=env, engine=app.engine.name
    )
    settings = PoolSettings(
        min_instances=app.engine.min_instances,
        max_instances=1,
        start_timeout=20.0,
        graceful_shutdown_timeout=float(app.engine.graceful_shutdown_timeout),
        idle_timeout=None,
    )
    return Pool(f"{app.site}:{app.virtual_path}:{app.name}", plan, settings, RoutedConnection.open)


async def call(pool: Pool, script_name: bytes, path_info: bytes, filename: bytes = b"") -> bytes:
    _pid, body = await with_lease(pool, lambda conn: conn.call(script_name, path_info, filename))
    return body


def serve_once(app: AppConfig, script_name: bytes, path_info: bytes) -> bytes:
    pool = pool_for(app)

    async def main() -> bytes:
        try:
            return await call(pool, script_name, path_info)
        finally:
            await pool.close(grace=2.0)

    return run_under("asyncio", main())


def test_two_sites_three_applications_each_with_its_own_environment() -> None:
    config = load(str(SITES / "multi" / "server.toml"))
    router = Router(config)
    requests = [
        ("main.test", b"/hello"),
        ("www.main.test", b"/blog/2024/post"),
        ("x.other.test:8080", b"/api/v1/items"),
    ]
    routes = [router.match(host, path) for host, path in requests]
    pools: dict[str, Pool] = {}
    for route in routes:
        assert route is not None and route.app is not None
        pools[route.app.name] = pool_for(route.app)

    async def main() -> list[dict[str, Any]]:
        try:
            bodies = await asyncio.gather(
                *(
                    call(pools[r.app.name], r.script_name_bytes, r.path_info_bytes)  # type: ignore[union-attr]
                    for r in routes
                    if r is not None
                )
            )
        finally:
            await asyncio.gather(*(pool.close(grace=2.0) for pool in pools.values()))
        return [json.loads(body) for body in bodies]

    main_seen, blog_seen, other_seen = run_under("asyncio", main())
    assert (main_seen["SCRIPT_NAME"], main_seen["PATH_INFO"]) == ("", "/hello")
    assert (blog_seen["SCRIPT_NAME"], blog_seen["PATH_INFO"]) == ("/blog", "/2024/post")
    assert (other_seen["SCRIPT_NAME"], other_seen["PATH_INFO"]) == ("/api", "/v1/items")
    assert main_seen["env"] == {
        "APP_MARK": "main",
        "ONLY_MAIN": "1",
        "ONLY_BLOG": None,
        "ONLY_OTHER": None,
        "SHARED": "main:/",
        "APPL_VIRTUAL_PATH": "/",
    }
    assert blog_seen["env"] == {
        "APP_MARK": "blog",
        "ONLY_MAIN": None,
        "ONLY_BLOG": "1",
        "ONLY_OTHER": None,
        "SHARED": "blog:/blog",
        "APPL_VIRTUAL_PATH": "/blog",
    }
    assert other_seen["env"] == {
        "APP_MARK": "other",
        "ONLY_MAIN": None,
        "ONLY_BLOG": None,
        "ONLY_OTHER": "1",
        "SHARED": "other:/api",
        "APPL_VIRTUAL_PATH": "/api",
    }


def test_the_seed_example_serves() -> None:
    config = load_site(str(SITES / "seed-wsgi"))
    route = Router(config).match("localhost", "/anything")
    assert route is not None and route.app is not None
    assert serve_once(route.app, b"", b"/anything") == b"Hello from WSGI.project\n"


def test_the_static_subfolder_site_serves_its_app() -> None:
    config = load_site(str(SITES / "static-subfolder"))
    route = Router(config).match("localhost", "/cart")
    assert route is not None and route.app is not None
    assert serve_once(route.app, b"", b"/cart") == b"shop /cart\n"


def test_flask_in_a_virtualenv_runs_under_the_virtualenvs_interpreter(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path)) / "flask"
    shutil.copytree(SITES / "flask-venv", root)
    base = Path(os.path.realpath(sys.executable))
    (root / "venv" / "pyvenv.cfg").write_text(
        f"home = {base.parent}\ninclude-system-site-packages = false\n"
    )
    (root / "venv" / "bin").mkdir()
    (root / "venv" / "bin" / "python").symlink_to(base)
    config = load_site(str(root))
    (app,) = config.apps
    assert app.interpreter == f"{root}/venv/bin/python"
    assert serve_once(app, b"", b"/") == f"hello from {root}/venv\n".encode()


def test_the_django_project_serves_when_django_is_installed() -> None:
    pytest.importorskip("django", reason="Django is not installed in this interpreter")
    config = load_site(str(SITES / "django-project"))
    (app,) = config.apps
    body = serve_once(app, b"", b"/")
    assert body == b"django at / (script '')"


def test_the_php_site_serves_php_through_php_cgi() -> None:
    from conftest import require_program

    php_cgi = require_program("php-cgi")
    config = load_site(str(SITES / "php-site"))
    router = Router(config)
    route = router.match("localhost", "/index.php")
    assert route is not None and route.app is not None
    app = route.app
    assert app.argv == ("php-cgi", "-c", f"{app.physical_path}/php.ini")
    env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0)
    plan = LaunchPlan(argv=(php_cgi, *app.argv[1:]), env=env, cwd=app.current_directory)
    pool: Pool = Pool(
        "php",
        plan,
        PoolSettings(min_instances=1, max_instances=1, idle_timeout=None),
        RoutedConnection.open,
    )
    script = os.path.join(app.physical_path, route.path_info.lstrip("/"))

    async def main() -> bytes:
        try:
            return await call(pool, b"", route.path_info_bytes, script.encode())
        finally:
            await pool.close(grace=2.0)

    # PHP_FCGI_MAX_REQUESTS=500 from the application overrides the engine's 10000.
    assert run_under("asyncio", main()) == b"hello from php 500\n"
    assert router.match("localhost", "/css/site.css").app is None  # type: ignore[union-attr]
