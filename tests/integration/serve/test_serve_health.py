"""Health settings through `corral serve` and a site's web.config, end to end: a request past
WORKER_REQUEST_TIMEOUT is a 504 with the worker's stack in the log, and DEVELOPMENT_MODE decides
who sees a failing application's traceback."""

from __future__ import annotations

from pathlib import Path

from tests.harness import CorralServer, request

HANGING_APP = """
import os, time

def hang_here_forever():
    while True:
        time.sleep(3600)

def application(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        hang_here_forever()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""

BROKEN_APP = "import this_module_does_not_exist_for_corral\n"


def web_config(variables: dict[str, str]) -> str:
    adds = "".join(f'<add name="{name}" value="{value}"/>' for name, value in variables.items())
    return (
        "<configuration><system.webServer>"
        f'<heliconZoo><application name="app"><environmentVariables>{adds}'
        "</environmentVariables></application></heliconZoo>"
        '<handlers><add name="app" scriptProcessor="python" path="*" verb="*" '
        'modules="HeliconZoo_x64"/></handlers>'
        "</system.webServer></configuration>"
    )


def make_site(root: Path, app: str, variables: dict[str, str]) -> Path:
    site = root / "site"
    site.mkdir()
    (site / "wsgi.py").write_text(app)
    (site / "web.config").write_text(web_config({"WSGI_APP": "wsgi.application", **variables}))
    return site


def get(port: int, path: str) -> tuple[int, bytes]:
    response = request(port, path=path, host="x")
    return response.status, response.body


def test_a_request_past_worker_request_timeout_is_a_504_and_the_stack_is_logged(
    tmp_path: Path,
) -> None:
    site = make_site(tmp_path, HANGING_APP, {"WORKER_REQUEST_TIMEOUT": "1", "ERROR_LOG_DIR": "log"})
    server = CorralServer(site, args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        status, first = get(server.port, "/pid")
        assert status == 200
        status, body = get(server.port, "/hang")
        assert status == 504 and b"did not answer in time" in body
        server.wait_log("past the request timeout of 1 s")
        server.wait_log("hang_here_forever")  # faulthandler's dump, through the app's log
        status, second = get(server.port, "/pid")
        assert status == 200 and second != first  # a new worker
    finally:
        server.stop()
    # The app's own error log (ERROR_LOG_DIR) has the event and the stack.
    [log_file] = (site / "log").glob("*.log")
    text = log_file.read_text()
    assert "past the request timeout" in text and "hang_here_forever" in text


def test_development_mode_shows_the_traceback_to_every_client(tmp_path: Path) -> None:
    # show_errors_to_loopback=false makes this loopback client count as any other client.
    site = make_site(tmp_path, BROKEN_APP, {"DEVELOPMENT_MODE": "true"})
    server = CorralServer(site, args=("--no-access-log", "--set", "show_errors_to_loopback=0"))
    server.start(wait_ready=False)
    try:
        status, body = get(server.port, "/")
        assert status == 503 and b"cannot start" in body
        assert b"this_module_does_not_exist_for_corral" in body
        assert b"Corral tries again in" in body
    finally:
        server.stop()


def test_without_development_mode_other_clients_get_a_generic_page(tmp_path: Path) -> None:
    site = make_site(tmp_path, BROKEN_APP, {})
    server = CorralServer(site, args=("--no-access-log", "--set", "show_errors_to_loopback=0"))
    server.start(wait_ready=False)
    try:
        status, body = get(server.port, "/")
        assert status == 503 and b"cannot start" in body
        assert b"this_module_does_not_exist_for_corral" not in body
        server.wait_log("this_module_does_not_exist_for_corral")  # the log has it
    finally:
        server.stop()
