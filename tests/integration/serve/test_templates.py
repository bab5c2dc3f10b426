"""`corral new TEMPLATE DIR` then `corral serve DIR`: every template is served at once and
answers its start page (issue 15, "Templates").

The Python templates' deploy script makes the site's virtualenv and pip-installs its
requirements from the package index (the Node one runs npm install), so the first request
shows the "deployment in progress" page with that output, then the application, whose workers
run the virtualenv's Python. pip's downloads are cached for the session (PIP_CACHE_DIR in a
folder shared by the xdist workers).
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import require_program
from tests.harness import CorralServer, Response, request, run_corral
from tests.wsclient import WebSocket

#: Seconds a template's deploy script may take (a virtualenv, pip or npm from the registry).
DEPLOY_WAIT = 400.0
pytestmark = pytest.mark.timeout(DEPLOY_WAIT + 120)


@pytest.fixture(scope="session")
def pip_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip's and npm's caches, one for the whole run (xdist workers share the parent folder)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-") else base
    return {
        "PIP_CACHE_DIR": str(shared / "pip-cache"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "npm_config_cache": str(shared / "npm-cache"),
        "npm_config_update_notifier": "false",
    }


#: ``new_site(TEMPLATE, *OPTIONS)``: ``corral new`` then ``corral serve`` (not waiting).
NewSite = Callable[..., tuple[CorralServer, Path]]


@pytest.fixture
def new_site(tmp_path: Path, pip_env: dict[str, str]) -> Iterator[NewSite]:
    servers: list[CorralServer] = []

    def make(template: str, *options: str) -> tuple[CorralServer, Path]:
        folder = tmp_path / template
        created = run_corral("new", template, str(folder), *options)
        assert created.returncode == 0, created.stderr
        assert f"corral serve {folder}" in created.stdout
        server = CorralServer(folder, args=("--no-access-log",), env=pip_env)
        servers.append(server)
        server.start(wait_ready=False)
        return server, folder

    yield make
    for server in servers:
        server.stop()


def _text(response: Response) -> str:
    return html.unescape(response.body.decode("utf-8", "replace"))


def first_page(server: CorralServer, path: str, marker: str) -> tuple[list[str], Response]:
    """Ask for ``path`` until the application's page (with ``marker``) answers; the pages seen
    before it (the deployment's), in order."""
    seen: list[str] = []
    deadline = time.monotonic() + DEPLOY_WAIT
    while time.monotonic() < deadline:
        response = request(server.port, path=path)
        text = _text(response)
        if response.status == 200 and marker in text:
            return seen, response
        seen.append(text)
        time.sleep(0.5)
    raise AssertionError(f"{path} never showed {marker!r}:\n{seen[-1:]}\n{server.text()}")


def _workers_run(server: CorralServer, python: Path) -> None:
    """The workers run the site's virtualenv (their command line shows their process title,
    not the interpreter: the kernel's executable and the virtualenv in their environment)."""
    workers = server.workers()
    assert workers
    for worker in workers:
        assert worker.exe() == os.path.realpath(python), (worker.exe(), python)
        assert worker.environ().get("VIRTUAL_ENV") == str(python.parent.parent)


def _deployed_with_pip(pages: list[str], requirement: str) -> None:
    """The first request showed the deploy script's output: the virtualenv, then pip."""
    assert pages, "the application answered before its deploy script ran"
    first = pages[0]
    assert "Application deployment in progress" in first, first
    assert "Making the virtualenv" in first and "pip install" in first, first
    assert requirement in first.lower() or requirement == "", first


def test_wsgi_template_shows_the_service_information(new_site: NewSite) -> None:
    server, folder = new_site("wsgi")
    pages, response = first_page(server, "/", "Python WSGI project")
    _deployed_with_pip(pages, "")
    assert "welcome.py" in _text(response)
    _workers_run(server, folder / "venv" / "bin" / "python")


def test_flask_template(new_site: NewSite) -> None:
    server, folder = new_site("flask")
    pages, _ = first_page(server, "/", "Flask on Corral")
    _deployed_with_pip(pages, "flask")
    # The template's WARM_UP: its page served in the template process before the workers fork.
    server.wait_log(r"warm-up request GET /: 10 x 200 in \d+ ms, before forking")
    _, hello = first_page(server, "/hello/Zoo", "Hello, Zoo!")
    assert hello.header("content-type") == "text/html; charset=utf-8"
    _workers_run(server, folder / "venv" / "bin" / "python")


def test_flask_template_in_toml(new_site: NewSite) -> None:
    server, folder = new_site("flask", "--toml")
    assert (folder / "corral.toml").is_file() and not (folder / "web.config").exists()
    first_page(server, "/", "Flask on Corral")
    server.wait_log(r"warm-up request GET /: 10 x 200 in \d+ ms, before forking")
    _workers_run(server, folder / "venv" / "bin" / "python")


def test_django_template_admin_with_its_static_files(new_site: NewSite) -> None:
    server, folder = new_site("django")
    pages, _ = first_page(server, "/", "Django on Corral")
    _deployed_with_pip(pages, "django")
    deployed = "\n".join(pages)
    assert "manage.py migrate" in deployed and "collectstatic" in deployed
    assert (folder / "db.sqlite3").is_file()
    server.wait_log(r"warm-up request GET /: 10 x 200 in \d+ ms, before forking")
    _, login = first_page(server, "/admin/login/?next=/admin/", "Django administration")
    assert "/static/admin/css/base.css" in _text(login)
    css = request(server.port, path="/static/admin/css/base.css")
    assert css.status == 200
    assert (css.header("content-type") or "").startswith("text/css")
    assert b"body" in css.body
    _workers_run(server, folder / "venv" / "bin" / "python")


def test_fastapi_template_with_its_websocket(new_site: NewSite) -> None:
    server, folder = new_site("fastapi")
    pages, _ = first_page(server, "/", "FastAPI on Corral")
    _deployed_with_pip(pages, "fastapi")
    _, api = first_page(server, "/api/hello?name=Zoo", "Hello, Zoo!")
    assert api.header("content-type") == "application/json"
    socket = WebSocket(server.port, "/ws")
    try:
        assert socket.echo("ping") == "echo: ping"
    finally:
        socket.close()
    _workers_run(server, folder / "venv" / "bin" / "python")


def test_node_template_runs_npm_install(new_site: NewSite) -> None:
    require_program("node")
    require_program("npm")
    server, folder = new_site("node")
    pages, _ = first_page(server, "/", "Node.js on Corral")
    assert pages and "Application deployment in progress" in pages[0], pages[:1]
    assert "npm install" in pages[0]
    assert (folder / "node_modules" / "express" / "package.json").is_file()
    _, api = first_page(server, "/api/hello?name=Zoo", "Hello, Zoo!")
    assert (api.header("content-type") or "").startswith("application/json")


def test_php_template(new_site: NewSite) -> None:
    require_program("php-cgi")
    server, _ = new_site("php")
    _, page = first_page(server, "/", "PHP on Corral")
    assert "It works" in _text(page)
    css = request(server.port, path="/style.css")
    assert css.status == 200 and (css.header("content-type") or "").startswith("text/css")
    assert request(server.port, path="/php.ini").status == 404


def test_static_template(new_site: NewSite) -> None:
    server, _ = new_site("static", "--toml")
    pages, page = first_page(server, "/", "A static site on Corral")
    assert pages == []  # nothing to deploy
    assert page.header("etag")
    assert request(server.port, path="/corral.toml").status == 404
