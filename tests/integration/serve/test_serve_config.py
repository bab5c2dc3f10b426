"""`corral serve PATH` driven by the configuration model, end to end: a real `corral serve`
subprocess, raw-socket clients, real workers (Corral's Python worker, php-cgi).

- every fixture site of tests/fixtures/sites serves through its configured engine;
- one server, two sites by host name, three applications at different virtual paths: each sees
  its own variables and SCRIPT_NAME, and none sees another's (no leak);
- listening on every configured binding, routing by the listener's port;
- a broken configuration: every error with file and line, exit 1, and no listener opened;
- `corral check`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tests.harness import WAIT, Conn, CorralServer, Response, run_corral, serve

from ports import engine_ports_toml, held, port

__all__ = ["serve"]  # the shared server fixture

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SITES = FIXTURES / "sites"


def get(
    port: int, path: str, host: str = "localhost", method: str = "GET", headers: str = ""
) -> Response:
    """One request; while the application's deploy script runs (a DEPLOY_FILE, as in the
    django-project fixture), ask again as the browser's auto-refresh would."""
    deadline = time.monotonic() + WAIT
    while True:
        conn = Conn(port)
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n"
            conn.send(head.encode("latin-1"))
            response = conn.response(head=method == "HEAD")
        finally:
            conn.close()
        deploying = response.status == 503 and b"deployment in progress" in response.body
        if not deploying or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


# -- two sites, three applications -------------------------------------------------------------


def test_two_sites_three_apps_each_with_its_own_environment_and_no_leak(serve: Any) -> None:
    # A variable of the host's own environment reaches every application (OS < engine < app);
    # each application's own variables reach only it.
    server = serve(SITES / "multi" / "server.toml", env={"ONLY_OTHER": ""})
    seen = {
        "main": json.loads(get(server.port, "/hello", "main.test").body),
        "blog": json.loads(get(server.port, "/blog/2024/post?x=1", "www.main.test").body),
        "other": json.loads(get(server.port, "/api/v1/items", "x.other.test:8080").body),
    }
    assert (seen["main"]["SCRIPT_NAME"], seen["main"]["PATH_INFO"]) == ("", "/hello")
    assert (seen["blog"]["SCRIPT_NAME"], seen["blog"]["PATH_INFO"]) == ("/blog", "/2024/post")
    assert (seen["other"]["SCRIPT_NAME"], seen["other"]["PATH_INFO"]) == ("/api", "/v1/items")
    marks = {"main": "ONLY_MAIN", "blog": "ONLY_BLOG", "other": "ONLY_OTHER"}
    for name, body in seen.items():
        env = body["env"]
        assert env["APP_MARK"] == name
        assert env[marks[name]] == "1"
        for other, variable in marks.items():
            if other != name:
                # ONLY_OTHER is "" from the host's environment, never another app's "1".
                assert env[variable] in (None, ""), (name, variable, env)
    assert seen["main"]["env"]["SHARED"] == "main:/"
    assert seen["blog"]["env"]["SHARED"] == "blog:/blog"
    assert seen["other"]["env"]["SHARED"] == "other:/api"
    # Paths no mount takes, and hosts no site answers: 404.
    assert get(server.port, "/elsewhere", "other.test").status == 404
    assert get(server.port, "/", "nobody.test").status == 404
    # A prefix on a segment boundary only: /blogger belongs to the root application.
    assert json.loads(get(server.port, "/blogger", "main.test").body)["SCRIPT_NAME"] == ""


def test_each_binding_is_listened_on_and_routes_by_its_port(serve: Any, tmp_path: Path) -> None:
    ports = [port(), port()]  # leased machine-wide: no other process listens there meanwhile
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "wsgi.py").write_text(
            textwrap.dedent(
                f"""
                def application(environ, start_response):
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [b"{name} " + environ["SERVER_PORT"].encode()]
                """
            )
        )
    (tmp_path / "server.toml").write_text(
        textwrap.dedent(
            f"""
            [sites.one]
            bindings = ["127.0.0.1:{ports[0]}:"]
            [sites.one.apps."/"]
            physical_path = "one"

            [sites.two]
            bindings = ["127.0.0.1:{ports[1]}:"]
            [sites.two.apps."/"]
            physical_path = "two"
            """
        )
    )
    (tmp_path / "one" / "corral.toml").write_text('[apps.one]\nengine = "python"\n')
    (tmp_path / "two" / "corral.toml").write_text('[apps.two]\nengine = "python"\n')
    server = CorralServer(tmp_path / "server.toml", args=("--no-access-log",))
    # No --listen: the harness's own --listen would override the bindings; start by hand.
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", str(tmp_path / "server.toml"), "--no-access-log"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    server.proc = proc
    try:
        assert proc.stdout is not None
        lines = []
        while len([line for line in lines if "serving" in line]) < 2:
            line = proc.stdout.readline().decode()
            assert line, "\n".join(lines)
            lines.append(line)
        assert get(ports[0], "/").body == f"one {ports[0]}".encode()
        assert get(ports[1], "/").body == f"two {ports[1]}".encode()
    finally:
        server.stop()


# -- broken configurations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("malformed-xml/web.config", r"web\.config:6: xml: malformed XML"),
        ("malformed-toml/corral.toml", r"corral\.toml:3: toml: malformed TOML"),
        ("unknown-engine/web.config", r"web\.config:\d+: scriptProcessor: unknown engine"),
        ("duplicate-names/web.config", r"web\.config:11: application: duplicate application"),
        ("bad-numbers/server.toml", r"applicationHost\.config:6: maxInstances: expected a whole"),
        ("duplicate-binding/server.toml", r"server\.toml:8: bindings: every host .* site 'a'"),
        ("duplicate-site/server.toml", r"server\.toml:3: toml: malformed TOML"),
        ("entity-expansion/web.config", r"web\.config:3: xml: entity declarations are refused"),
        ("switchboard-disabled/server.toml", r"corral\.toml:1: engine: .* disabled .*switchboard"),
        ("toml-typos/server.toml", r"server\.toml:6: bindigns: unknown site setting"),
    ],
)
def test_a_broken_configuration_starts_nothing(fixture: str, expected: str, tmp_path: Path) -> None:
    import re

    path = FIXTURES / "config-errors" / fixture
    target = path.parent if path.name in ("web.config", "corral.toml") else path
    free = port()
    result = run_corral("serve", str(target), "--listen", f"127.0.0.1:{free}")
    assert result.returncode == 1, result.stderr
    assert "nothing started" in result.stderr.splitlines()[0]
    assert re.search(expected, result.stderr), result.stderr
    assert "serving" not in result.stderr + result.stdout
    # Nothing listened: the port is still free.
    with socket.socket() as again:
        again.bind(("127.0.0.1", free))


def test_the_generic_http_engine_runs_app_command_on_its_port(tmp_path: Path, serve: Any) -> None:
    """engine = "http": APP_COMMAND is any HTTP server, given its port as %PORT%."""
    backend = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"
    command = f"{sys.executable} {backend} %HOST% %PORT%"
    taken = held()
    (tmp_path / "corral.toml").write_text(
        f'[apps.node]\nengine = "http"\n[apps.node.env]\nAPP_COMMAND = "{command}"\n'
        + engine_ports_toml(["http"], taken)
    )
    server = serve(tmp_path)
    conn = Conn(server.port)
    conn.send(b"GET /argv HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    response = conn.response()
    assert response.status == 200, server.text()
    argv = response.body.decode().split("\n")
    assert argv[-2] == "127.0.0.1" and int(argv[-1]) in taken.ports


# -- corral check ------------------------------------------------------------------------------


def test_check_prints_the_model_and_exits_0() -> None:
    result = run_corral("check", str(SITES / "multi" / "server.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Configuration OK.")
    assert "application 'blog' at /blog" in result.stdout


def test_check_sees_a_folder_as_serve_does_and_what_serve_would_refuse(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "wsgi.py").write_text("application = None\n")
    result = run_corral("check", str(plain))
    assert result.returncode == 0
    assert "application 'default' at /" in result.stdout  # not "static files"
    refused = tmp_path / "refused"
    refused.mkdir()
    (refused / "corral.toml").write_text(
        '[engines.python]\ntransport = "tcp"\n[apps.a]\nengine = "python"\n'
    )
    result = run_corral("check", str(refused))
    assert result.returncode == 1
    assert "corral serve would refuse it" in result.stderr
    assert f"{refused / 'corral.toml'}:1: transport: " in result.stderr


def test_check_reports_every_error_and_exits_1() -> None:
    result = run_corral("check", str(FIXTURES / "config-errors" / "unknown-engine"))
    assert result.returncode == 1
    assert "unknown engine" in result.stderr
    missing = run_corral("check", "/nonexistent/folder")
    assert missing.returncode == 2


# -- the fixture sites -------------------------------------------------------------------------


def site_copy(tmp_path: Path, name: str) -> Path:
    """A fixture site copied out of the source tree: serving writes its error logs (the
    site's ERROR_LOG_DIR) under the site's folder."""
    target = tmp_path / name
    shutil.copytree(SITES / name, target, ignore=shutil.ignore_patterns("*.log", "__pycache__"))
    return target


def test_the_seed_example_serves(serve: Any, tmp_path: Path) -> None:
    server = serve(site_copy(tmp_path, "seed-wsgi"))
    response = get(server.port, "/anything")
    assert (response.status, response.body) == (200, b"Hello from WSGI.project\n")


def test_the_static_subfolder_site_serves_its_folders_natively(serve: Any, tmp_path: Path) -> None:
    server = serve(site_copy(tmp_path, "static-subfolder"))
    # static/web.config removes the shop's handlers, media/web.config clears them, and an empty
    # assets/.zoo disables the application there (Zoo 4): the front serves those folders.
    for path, body in [
        ("/static/app.js", b'console.log("app");\n'),
        ("/media/readme.txt", b"media file\n"),
        ("/assets/site.css", b"asset file\n"),
    ]:
        response = get(server.port, path)
        assert (response.status, response.body) == (200, body), path
    assert get(server.port, "/static/img/logo.gif").header("content-type") == "image/gif"
    # Never: the engine's sources, hidden files, the folders' own web.config, the .zoo file.
    for path in ("/static/helper.py", "/static/.env", "/static/web.config", "/assets/.zoo"):
        refused = get(server.port, path)
        assert refused.status == 404, path
        assert b"SECRET" not in refused.body and b"helper module" not in refused.body
    # Everything else is the shop's, including its log folder's URLs (the app decides).
    cart = get(server.port, "/cart")
    assert (cart.status, cart.body) == (200, b"shop /cart\n")


def test_the_django_project_serves_with_its_settings_module(serve: Any, tmp_path: Path) -> None:
    pytest.importorskip("django")
    server = serve(site_copy(tmp_path, "django-project"))
    response = get(server.port, "/")
    assert (response.status, response.body) == (200, b"django at / (script '')")
    # static/web.config removes the handlers: the front serves the folder itself.
    css = get(server.port, "/static/css/site.css")
    assert (css.status, css.body) == (200, b"body { color: #333; }\n")
    assert css.header("content-type") == "text/css; charset=utf-8"


def test_the_django_project_at_a_virtual_path_sees_its_script_name(
    serve: Any, tmp_path: Path
) -> None:
    pytest.importorskip("django")
    (tmp_path / "server.toml").write_text(
        f'[sites.s]\nbindings = ["127.0.0.1:8080:"]\n'
        f'[sites.s.apps."/shop"]\nphysical_path = "{site_copy(tmp_path, "django-project")}"\n'
    )
    server = serve(tmp_path / "server.toml")
    response = get(server.port, "/shop/")
    assert (response.status, response.body) == (200, b"django at /shop/ (script '/shop')")


def test_flask_in_a_virtualenv_runs_under_the_virtualenvs_interpreter(
    serve: Any, tmp_path: Path
) -> None:
    pytest.importorskip("flask")
    root = Path(os.path.realpath(tmp_path)) / "flask"
    shutil.copytree(SITES / "flask-venv", root, ignore=shutil.ignore_patterns("venv"))
    # A real virtualenv that sees this interpreter's packages (Flask among them).
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", root / "venv"],
        check=True,
        timeout=120,
    )
    # The worker's command line shows its title, not the interpreter: the app tells which one
    # runs it (sys.prefix: the virtualenv's only when its own interpreter was started).
    with (root / "app" / "hello.py").open("a") as source:
        source.write(
            "\nimport sys as _sys\n_app = app\n\n\n"
            "def app(environ, start_response):\n"
            "    if environ.get('PATH_INFO') == '/prefix':\n"
            "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
            "        return [_sys.prefix.encode()]\n"
            "    return _app(environ, start_response)\n"
        )
    server = serve(root)
    response = get(server.port, "/")
    assert (response.status, response.body) == (200, f"hello from {root}/venv\n".encode())
    assert response.header("content-type") == "text/html; charset=utf-8"  # Flask's, not ours
    assert get(server.port, "/prefix").body.decode() == f"{root}/venv"


def test_the_php_site_serves_php_through_php_cgi_and_its_files_statically(serve: Any) -> None:
    from conftest import require_program

    require_program("php-cgi")
    server = serve(SITES / "php-site")
    response = get(server.port, "/index.php")
    # PHP_FCGI_MAX_REQUESTS=500 from the application overrides the engine's 10000.
    assert (response.status, response.body) == (200, b"hello from php 500\n")
    about = get(server.port, "/about.html")
    assert (about.status, about.body) == (200, b"static page\n")
    # PHP sources and php.ini (PHP_INI) are never served as files.
    assert get(server.port, "/php.ini").status == 404
    assert get(server.port, "/lib/settings.inc").status == 404
    # A folder URL's default document: index.php (PHP) before index.html (static).
    assert get(server.port, "/").body == b"hello from php 500\n"
    index = get(server.port, "/static-only/index.html")
    assert (index.status, get(server.port, "/static-only/").body) == (200, index.body)
    # The script's variables as php-cgi saw them, at /env.php/extra?x=1.
    seen = json.loads(get(server.port, "/env.php/extra?x=1").body)
    root = str(SITES / "php-site")
    assert seen["SCRIPT_NAME"] == "/env.php"
    assert seen["SCRIPT_FILENAME"] == f"{root}/env.php"
    assert seen["PATH_INFO"] == "/extra"
    assert seen["DOCUMENT_ROOT"] == root
    assert seen["get"] == {"x": "1"}


def test_a_tcp_service_engine_connects_to_a_running_server(serve: Any, tmp_path: Path) -> None:
    """transport="tcp.service": nothing is started; requests go to the server at host:port
    (here Corral's own worker, started by the test as any FastCGI server would be)."""
    site = tmp_path / "svc"
    site.mkdir()
    (site / "wsgi.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [('service pid %d %s' % (os.getpid(), environ['SCRIPT_NAME'])).encode()]\n"
    )
    service_port = port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "corral.worker", "--bind", f"127.0.0.1:{service_port}"],
        cwd=site,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        (tmp_path / "server.toml").write_text(
            textwrap.dedent(
                f"""
                [engines.svc]
                transport = "tcp.service"
                protocol = "fastcgi"
                host = "127.0.0.1"
                port_lower = {service_port}

                [sites.s]
                bindings = ["127.0.0.1:8080:"]
                [sites.s.apps."/svc"]
                physical_path = "svc"
                """
            )
        )
        (site / "corral.toml").write_text('[apps.svc]\nengine = "svc"\n')
        server = serve(tmp_path / "server.toml")
        assert server.workers() == []  # nothing started by Corral
        for _ in range(100):
            with socket.socket() as ready:
                if ready.connect_ex(("127.0.0.1", service_port)) == 0:
                    break
            time.sleep(0.1)
        first = get(server.port, "/svc/x")
        assert (first.status, first.body) == (200, f"service pid {backend.pid} /svc".encode())
        assert get(server.port, "/svc/y").body == first.body  # the kept-alive connection
        assert server.workers() == []
        backend.kill()
        backend.wait(WAIT)
        down = get(server.port, "/svc/z")
        assert down.status == 503
        assert b"cannot connect to 127.0.0.1:" in down.body  # loopback clients see why
    finally:
        if backend.poll() is None:
            backend.kill()
            backend.wait(WAIT)


def test_an_application_host_config_with_engines_user_engines_and_switchboard(
    serve: Any, tmp_path: Path
) -> None:
    from conftest import require_program

    require_program("php-cgi")
    for name in ("apphost", "php-site", "django-project", "seed-wsgi"):  # (its relative paths)
        site_copy(tmp_path, name)
    server = serve(tmp_path / "apphost" / "server.toml")
    # Default Web Site: PHP at / (php.5.4.pipe from <engines>), Django at /django
    # (python.2.7.pipe from <userEngines>, amended by the TOML).
    php = get(server.port, "/index.php", "www.example.test")
    assert php.status == 200 and php.body.startswith(b"hello from php"), php.body[:200]
    if importlib.util.find_spec("django") is not None:
        django = get(server.port, "/django/", "example.test")
        assert (django.status, django.body) == (200, b"django at /django/ (script '/django')")
    # Restricted Site: its switchboard disables everything but the python.2.7 engines.
    seed = get(server.port, "/", "restricted.example.test")
    assert (seed.status, seed.body) == (200, b"Hello from WSGI.project\n")
    check = run_corral("check", str(SITES / "apphost" / "server.toml"))
    assert check.returncode == 0
    # <userEngines> replaced <engines>' python.2.7.pipe (its variables), the TOML amended it.
    assert "ENGINE_MARK=from-userEngines" in check.stdout
    assert "python.2.7.pipe: Corral Python worker; NamedPipe/fastcgi; instances 1..2" in (
        check.stdout
    )
