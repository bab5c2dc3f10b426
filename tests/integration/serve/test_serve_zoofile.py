"""Zoo 4 `.zoo` files and the last Zoo variables through a real `corral serve`, end to end.

- A Python project as Zoo 4's template writes it (the selected engine's preset, a `static`
  location served as files, another engine's preset unused) answers through Corral's worker;
  its ERROR_LOG_LEVEL decides which of the app's logging records reach its ERROR_LOG_DIR log.
- A Node.js project (NodejsEngine, `public/` static with an empty `public/.zoo`) and a PHP
  project (Php55Engine, a `*.php` location) answer through node and php-cgi.
- ZOO_SUBSTITUTE_HOST: an HTTP backend gets that Host (with %INSTANCE_ID%), the client's in
  X-Forwarded-Host.
- A broken `.zoo` (bad YAML, an unknown engine, a bad value): `corral serve` exits 1 naming
  file:line and setting; `corral check` lists what a .zoo holds that Corral does not act on.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import require_program
from tests.harness import WAIT, Response, request, run_corral, serve

from ports import engine_ports_toml, held

__all__ = ["serve"]  # the shared server fixture

HTTP_BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"

PYTHON_ZOO = """\
application:
  application: PythonProject
  title: Python sample project
  install_command: |
    os.cmd(r'venv\\scripts\\pip.exe install --requirement=requirements.txt')
  parameters:
    app-name: /
    selected-engine: Python34.FCGI.Engine
  engines:
  - engine: Python34.FCGI.Engine
    environment_variables:
      PYTHONPATH: "%APPL_PHYSICAL_PATH%"
      ERROR_LOG_DIR: "log"
      ERROR_LOG_LEVEL: "info"
      WSGI_HANDLER: "welcome.application"
      GREETING: "preset of %APPL_ID%-less Python34.FCGI"
  - engine: Python34.HTTP.Engine
    environment_variables:
      HTTP_WORKER: 'tornado_worker.py'
      GREETING: "the other preset"
  locations:
  - path: 'static'
    engine: none
  - path: '*'
    engine: selected-engine
  shape: unknown
"""

WELCOME = """\
import logging
import os

log = logging.getLogger("welcome")


def application(environ, start_response):
    log.debug("debug record %s", environ["PATH_INFO"])
    log.info("info record %s", environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.environ.get("GREETING", "?").encode()]
"""

NODE_ZOO = """\
application:
  application: NodeJsProject
  parameters:
    selected-engine: NodejsEngine
  engines:
  - engine: NodejsEngine
    path: "*"
    environment_variables:
      APP_WORKER: "app.js"
      ZOO_MARK: "node preset"
  locations:
    - engine: none
      path: "public/"
    - engine: selected-engine
      path: "*"
"""

NODE_APP = """\
const http = require("http");
http.createServer((req, res) => {
  res.writeHead(200, {"Content-Type": "text/plain"});
  res.end(`${process.env.ZOO_MARK} ${req.url}`);
}).listen(Number(process.env.PORT), process.env.HOST || "127.0.0.1");
"""

PHP_ZOO = """\
application:
  application: PhpProject
  parameters:
    selected-engine: Php55Engine
  engines:
  - engine: Php55Engine
    path: ".php"
    environment_variables:
      PHP_INI: '%APPL_PHYSICAL_PATH%\\php55.local.ini'
      ZOO_MARK: php preset
  locations:
  - engine: selected-engine
    path: "*.php"
"""


def get(port: int, path: str, *, host: str = "localhost") -> Response:
    """A request, asked again while the application's first worker starts (503)."""
    deadline = time.monotonic() + WAIT
    while True:
        response = request(port, path=path, host=host)
        if response.status != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_a_python_project_zoo_file_serves_its_preset_and_static_location(
    tmp_path: Path, serve: Any
) -> None:
    (tmp_path / ".zoo").write_text(PYTHON_ZOO)
    (tmp_path / "welcome.py").write_text(WELCOME)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "style.css").write_text("body { color: teal }\n")
    (tmp_path / "static" / "page.py").write_text("not run: the static location has no engine\n")
    server = serve(tmp_path)
    response = get(server.port, "/hello")
    assert response.status == 200, server.text()
    assert response.body == b"preset of -less Python34.FCGI"
    css = get(server.port, "/static/style.css")
    assert (css.status, css.body) == (200, b"body { color: teal }\n")
    # A .py in the static folder is the app's source, not a script to run nor a file to serve.
    assert get(server.port, "/static/page.py").status == 404
    assert get(server.port, "/static/.zoo").status == 404
    # ERROR_LOG_LEVEL=info: the app's info records reach its log (ERROR_LOG_DIR), debug ones
    # do not.
    deadline = time.monotonic() + WAIT
    text = ""
    while time.monotonic() < deadline:
        logs = list((tmp_path / "log").glob("*.log"))
        text = "".join(path.read_text() for path in logs)
        if "info record /hello" in text:
            break
        time.sleep(0.2)
    assert "INFO welcome: info record /hello" in text, text
    assert "debug record" not in text


def test_error_log_level_unset_leaves_python_logging_as_it_is(tmp_path: Path, serve: Any) -> None:
    (tmp_path / ".zoo").write_text(PYTHON_ZOO.replace('      ERROR_LOG_LEVEL: "info"\n', ""))
    (tmp_path / "welcome.py").write_text(WELCOME)
    server = serve(tmp_path)
    assert get(server.port, "/quiet").status == 200, server.text()
    assert get(server.port, "/quiet2").status == 200
    time.sleep(0.5)
    text = "".join(path.read_text() for path in (tmp_path / "log").glob("*.log"))
    assert "worker" in text  # the log is written ...
    assert "info record" not in text  # ... but Python's default (warning) keeps info out


def test_a_node_project_zoo_file(tmp_path: Path, serve: Any) -> None:
    require_program("node", "nodejs")
    (tmp_path / ".zoo").write_text(NODE_ZOO)
    (tmp_path / "app.js").write_text(NODE_APP)
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / ".zoo").write_text("")  # Zoo 4's template: the parent app is off here
    (tmp_path / "public" / "logo.txt").write_text("a static file\n")
    (tmp_path / "corral.toml").write_text(engine_ports_toml(["NodejsEngine"], held()))
    server = serve(tmp_path)
    response = get(server.port, "/api/items")
    assert (response.status, response.body) == (200, b"node preset /api/items"), server.text()
    logo = get(server.port, "/public/logo.txt")
    assert (logo.status, logo.body) == (200, b"a static file\n")


def test_a_php_project_zoo_file(tmp_path: Path, serve: Any) -> None:
    require_program("php-cgi")
    (tmp_path / ".zoo").write_text(PHP_ZOO)
    (tmp_path / "php55.local.ini").write_text("default_charset = UTF-8\n")
    (tmp_path / "index.php").write_text(
        '<?php echo getenv("ZOO_MARK"), " ", php_ini_loaded_file() ? "ini" : "no ini";'
    )
    (tmp_path / "readme.txt").write_text("plain\n")
    server = serve(tmp_path)
    response = get(server.port, "/index.php")
    assert (response.status, response.body) == (200, b"php preset ini"), server.text()
    assert get(server.port, "/readme.txt").body == b"plain\n"  # not *.php: a static file


def test_zoo_substitute_host_is_the_host_an_http_backend_gets(tmp_path: Path, serve: Any) -> None:
    zoo = f"""\
application:
  parameters:
    selected-engine: http
  engines:
  - engine: http
    environment_variables:
      APP_COMMAND: "{sys.executable} {HTTP_BACKEND} %HOST% %PORT%"
      ZOO_SUBSTITUTE_HOST: "zoo%INSTANCE_ID%.%APPL_ID%app"
"""
    (tmp_path / ".zoo").write_text(zoo)
    (tmp_path / "corral.toml").write_text(engine_ports_toml(["http"], held()))
    server = serve(tmp_path)
    response = get(server.port, "/headers", host="www.example.test")
    assert response.status == 200, server.text()
    lines = response.body.decode("latin-1").lower().splitlines()
    assert "host: zoo0.app" in lines, lines
    assert "x-forwarded-host: www.example.test" in lines


def test_zoo_substitute_host_on_a_fastcgi_app_is_listed_by_check(tmp_path: Path) -> None:
    (tmp_path / ".zoo").write_text(
        PYTHON_ZOO.replace(
            '      GREETING: "preset', '      ZOO_SUBSTITUTE_HOST: tomcat\n      GREETING: "preset'
        )
    )
    (tmp_path / "welcome.py").write_text(WELCOME)
    result = run_corral("check", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "ZOO_SUBSTITUTE_HOST (a FastCGI backend gets the client's HTTP_HOST" in result.stdout


def test_check_describes_a_zoo_file(tmp_path: Path) -> None:
    (tmp_path / ".zoo").write_text(PYTHON_ZOO)
    (tmp_path / "welcome.py").write_text(WELCOME)
    result = run_corral("check", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    zoo = tmp_path / ".zoo"
    assert f"Files read:\n  {zoo}\n" in out
    assert f"/*  -> PythonProject [Python34.FCGI.Engine]  ({zoo}:8)" in out
    assert f"/static/*  -> static files  ({zoo}:22)" in out
    assert f"application 'PythonProject' at /  ({zoo}:2)" in out
    assert "GREETING=preset of -less Python34.FCGI" in out
    assert f"{zoo}:26: application.shape (unknown key)" in out
    assert f"{zoo}:4: application.install_command is Zoo's installer code" in out


def test_a_broken_zoo_file_is_refused_with_file_line_and_setting(tmp_path: Path) -> None:
    cases = {
        "yaml": ("application:\n  parameters: {selected-engine: x\n", ":3: YAML: "),
        "engine": (
            PYTHON_ZOO.replace("selected-engine: Python34.FCGI.Engine", "selected-engine: Jython"),
            ":8: selected-engine: unknown engine 'Jython'",
        ),
        "value": (
            PYTHON_ZOO.replace('ERROR_LOG_LEVEL: "info"', 'ERROR_LOG_LEVEL: "chatty"'),
            ":14: ERROR_LOG_LEVEL: expected one of debug, info, warning, error, critical",
        ),
    }
    for name, (text, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / ".zoo").write_text(text)
        (folder / "welcome.py").write_text(WELCOME)
        for command in ("serve", "check"):
            args = (
                (command, str(folder), "--listen", "127.0.0.1:0")
                if command == "serve"
                else (command, str(folder))
            )
            result = run_corral(*args)
            assert result.returncode == 1, (name, command, result.stdout, result.stderr)
            assert f"{folder / '.zoo'}{expected}" in result.stderr + result.stdout, (
                name,
                command,
                result.stderr,
            )


def test_a_changed_zoo_file_is_reloaded(tmp_path: Path, serve: Any) -> None:
    (tmp_path / ".zoo").write_text(PYTHON_ZOO)
    (tmp_path / "welcome.py").write_text(WELCOME)
    server = serve(tmp_path)
    assert get(server.port, "/").body == b"preset of -less Python34.FCGI", server.text()
    # Zoo's Manager switched engines by editing selected-engine: the other preset applies.
    (tmp_path / ".zoo").write_text(
        PYTHON_ZOO.replace(
            "selected-engine: Python34.FCGI.Engine", "selected-engine: Python34.HTTP.Engine"
        ).replace("HTTP_WORKER: 'tornado_worker.py'", 'WSGI_HANDLER: "welcome.application"')
    )
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    body = b""
    while time.monotonic() < deadline:
        body = get(server.port, "/").body
        if body == b"the other preset":
            break
        time.sleep(0.2)
    assert body == b"the other preset", server.text()
