"""Corral's pages as a browser shows them: headless Chromium loads them from `corral serve`.

The example site's start page (what `corral serve` with no argument shows a new user) must show
the service information, with secrets masked; Corral's own error pages must render as pages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.chromium import Page, chromium, dump_dom, screenshot
from tests.harness import CorralServer, request, serving

from corral.cli import default_site


@pytest.fixture(scope="module")
def example() -> Iterator[CorralServer]:
    """`corral serve` with no argument: the bundled example site."""
    chromium()  # skip (or fail under CORRAL_REQUIRE_EXTERNAL=1) before starting anything
    server = CorralServer(None, args=("--no-access-log",))
    try:
        server.start(wait_ready=False)
        yield server
    finally:
        server.stop()


def test_the_example_start_page_shows_the_service_information(example: CorralServer) -> None:
    secret = "pw-that-must-not-show"
    url = f"http://127.0.0.1:{example.port}/status/page?db=postgres://corral:{secret}@db.local/x"
    page = Page(dump_dom(url))

    assert page.title == "Hello from Corral"
    assert page.headings[:1] == ["Hello from Corral"]
    assert {"Service", "Host settings", "WSGI environ"} <= set(page.headings)
    rows = page.rows
    # The worker that answered is one of this server's own workers, running this Python.
    worker_pids = {str(proc.pid) for proc in example.workers()}
    assert rows["Worker pid"] in worker_pids, (rows["Worker pid"], worker_pids)
    assert rows["Python version"] == " ".join(sys.version.split())
    assert rows["Python executable"] == sys.executable
    assert rows["Engine"] and rows["Engine"] != "(not set)"
    assert rows["Application root"] == str(default_site().resolve())
    assert rows["Virtual path"] == "/"
    # The request as the app saw it: Chromium's own headers, PEP 3333's split of the path.
    assert rows["REQUEST_METHOD"] == "GET"
    assert rows["PATH_INFO"] == "/status/page"
    assert rows["SCRIPT_NAME"] == ""
    assert "Chrome" in rows["HTTP_USER_AGENT"]
    # Secrets are masked wherever they appear: the password in a URL, here in the query string.
    assert secret not in page.text
    assert "postgres://corral:********@db.local/x" in rows["QUERY_STRING"]


def test_the_start_page_screenshot_is_an_image(example: CorralServer, tmp_path: Path) -> None:
    png = screenshot(f"http://127.0.0.1:{example.port}/", tmp_path / "start.png")
    assert png.stat().st_size > 10_000  # a rendered page, not a blank window


def test_an_application_that_cannot_start_gets_a_503_page_with_its_traceback(
    tmp_path: Path,
) -> None:
    chromium()
    broken = "import module_that_is_not_there_at_all  # the app's import fails\n"
    with serving(tmp_path, "--no-access-log", app=broken, wait_ready=False) as server:
        page = Page(dump_dom(f"http://127.0.0.1:{server.port}/"))
    assert page.title == "503 Service Unavailable"
    assert page.headings == ["503 Service Unavailable"]
    assert "The application cannot start." in page.text
    # Shown to a loopback client only: the reason and the application's traceback.
    (details,) = page.preformatted
    assert "could not be loaded" in details
    assert "ModuleNotFoundError" in details
    assert "module_that_is_not_there_at_all" in details
    assert "Corral" in page.text  # the server's signature line


def test_a_request_the_front_refuses_gets_an_error_page(example: CorralServer) -> None:
    # Chromium sends what it is given; a target longer than the front accepts is refused with
    # Corral's own page (414), which the browser shows.
    long_path = "/" + "a" * 9000
    page = Page(dump_dom(f"http://127.0.0.1:{example.port}{long_path}"))
    assert page.title.startswith("414 ")
    assert "longer than this server accepts" in page.text
    assert os.fspath(default_site()) not in page.text


STATIC_ONLY = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <handlers>
      <clear />
    </handlers>
  </system.webServer>
</configuration>
"""


def test_a_static_site_shows_its_page_and_a_404_page_for_a_missing_file(tmp_path: Path) -> None:
    chromium()
    site = tmp_path / "static-site"
    site.mkdir()
    (site / "web.config").write_text(STATIC_ONLY)  # no handler: every URL is a static file
    (site / "index.html").write_text(
        "<!DOCTYPE html><html><head><title>A static site</title></head>"
        "<body><h1>Served from disk</h1></body></html>"
    )
    server = CorralServer(site, args=("--no-access-log",))
    try:
        server.start(wait_ready=False)
        home = Page(dump_dom(f"http://127.0.0.1:{server.port}/"))
        missing = Page(dump_dom(f"http://127.0.0.1:{server.port}/no/such/page.html"))
        hidden = request(server.port, path="/web.config")  # no browser needed for this one
    finally:
        server.stop()
    assert (home.title, home.headings) == ("A static site", ["Served from disk"])
    assert missing.title == "404 Not Found"
    assert missing.headings == ["404 Not Found"]
    assert "Corral" in missing.text
    assert hidden.status == 404  # the configuration is never served
    assert b"<handlers>" not in hidden.body
