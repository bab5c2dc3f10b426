"""How `corral serve` loads a Python application, as its log and pages show it (issue 10, item
19): the application's folder is on ``sys.path`` once, and an app that cannot be imported is
reported with its own frames and exception, without Corral's loader and importlib's frames."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

from tests.harness import WAIT, CorralServer, make_site, request

from corral.cli import default_site

SYS_PATH_APP = textwrap.dedent(
    """
    import sys

    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["\\n".join(sys.path).encode()]
    """
)


def _site_like_the_example(tmp_path: Path, app: str) -> Path:
    """A site with the bundled example's web.config (PYTHONPATH = %APPL_PHYSICAL_PATH%...)."""
    site = make_site(Path(os.path.realpath(tmp_path)), app)
    shutil.copy(default_site() / "web.config", site / "web.config")
    return site


def test_the_application_folder_is_on_sys_path_once(tmp_path: Path) -> None:
    site = _site_like_the_example(tmp_path, SYS_PATH_APP)
    server = CorralServer(site, args=("--no-access-log",), env={"PYTHONPATH": ""})
    try:
        server.start(wait_ready=False)
        response = request(server.port, path="/")
        assert response.status == 200, server.text()
    finally:
        server.stop()
    path = response.body.decode().splitlines()
    assert path[0] == str(site), path
    assert [os.path.realpath(entry or ".") for entry in path].count(str(site)) == 1, path


BROKEN_APP = "import helper  # the app's own module fails as it is imported\n"
BROKEN_HELPER = textwrap.dedent(
    """
    SETTINGS = {}


    def configure():
        return SETTINGS["database"]


    configure()
    """
)


def test_an_app_that_cannot_be_imported_is_reported_with_its_own_frames_only(
    tmp_path: Path,
) -> None:
    site = _site_like_the_example(tmp_path, BROKEN_APP)
    (site / "helper.py").write_text(BROKEN_HELPER)
    server = CorralServer(site, args=("--no-access-log",), env={"PYTHONPATH": ""})
    try:
        server.start(wait_ready=False)
        response = request(server.port, path="/")
        assert response.status == 503, server.text()
        server.wait_log("KeyError: 'database'", timeout=WAIT)
        log = server.text()
    finally:
        server.stop()
    # The application's frames, in order, and its exception.
    wsgi_frame = log.index(f'File "{site}/wsgi.py", line 1, in <module>')
    helper_frame = log.index(f'File "{site}/helper.py", line 9, in <module>')
    configure_frame = log.index(f'File "{site}/helper.py", line 6, in configure')
    error = log.index("KeyError: 'database'", configure_frame)
    assert wsgi_frame < helper_frame < configure_frame < error, log
    # Nothing of how Corral got there.
    for noise in ("corral/worker/loader.py", "importlib", "<frozen "):
        assert noise not in log, (noise, log)
    page = response.body.decode("utf-8", "replace")
    for noise in ("corral/worker/loader.py", "importlib", "&lt;frozen "):
        assert noise not in page, (noise, page)
