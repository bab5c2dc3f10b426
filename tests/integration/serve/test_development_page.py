"""The development page for an exception raised during a request, through a real `corral
serve`: a local browser of an application in DEVELOPMENT_MODE gets the traceback with the local
variables (WSGI and ASGI); a client behind a proxy, and every client of an application not in
development mode, get the plain 500 (issue 15, "A first hour that delights")."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.chromium import Page, dump_dom, screenshot
from tests.harness import CorralServer, request

APP = """\
SECRET_TOKEN = "tok-" + "12345"


def application(environ, start_response):
    if environ["PATH_INFO"] == "/ok":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    order_id = environ["QUERY_STRING"]
    api_token = SECRET_TOKEN
    basket = {"items": ["<b>tea</b>", "scones"], "total": 12.5}
    return checkout(basket, order_id)


def checkout(basket, order_id):
    discount = None
    return basket["total"] / len(order_id) * discount
"""

ASGI_APP = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    visitor = scope["query_string"].decode()
    raise RuntimeError("asgi failure for " + visitor)
"""

PLAIN = "The application failed to answer this request."


def _site(root: Path, name: str, source: str, spec: str, development: bool) -> Path:
    site = root / name
    site.mkdir()
    module = spec.partition(":")[0]
    (site / f"{module}.py").write_text(source)
    flag = "true" if development else "false"
    (site / "corral.toml").write_text(
        f'[apps.{name}]\nengine = "python"\nwsgi_app = "{spec}"\npythonpath = ["."]\n'
        f"development_mode = {flag}\n"
    )
    return site


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CorralServer]]:
    root = tmp_path_factory.mktemp("devpage")
    sites = {
        "dev": _site(root, "dev", APP, "shop:application", True),
        "prod": _site(root, "prod", APP, "shop:application", False),
        "asgi": _site(root, "asgi", ASGI_APP, "events:app", True),
    }
    running: dict[str, CorralServer] = {}
    try:
        for name, site in sites.items():
            running[name] = CorralServer(site, args=("--no-access-log",)).start(wait_ready=False)
        yield running
    finally:
        for server in running.values():
            server.stop()


def test_a_local_client_of_a_development_app_gets_the_traceback(
    servers: dict[str, CorralServer],
) -> None:
    server = servers["dev"]
    response = request(server.port, path="/checkout?<script>alert(1)</script>")
    assert response.status == 500, server.text()
    assert response.header("content-type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in (response.header("content-security-policy") or "")
    body = response.body.decode()
    text = html.unescape(body)
    assert "TypeError at GET /checkout" in text
    assert "unsupported operand type(s) for *: 'float' and 'NoneType'" in text
    # Both of the application's frames, with their locals; escaped, secrets masked.
    assert "in application" in text and "in checkout" in text
    assert "corral/worker/" not in text  # Corral's own frames around the call are left out
    assert "<th>discount</th><td>None</td>" in body
    assert "&#x27;&lt;b&gt;tea&lt;/b&gt;&#x27;" in body
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "tok-12345" not in text and "<th>api_token</th><td>********</td>" in body
    # The log has the traceback too.
    server.wait_log("TypeError: unsupported operand")


def test_a_client_behind_a_proxy_gets_the_plain_500(servers: dict[str, CorralServer]) -> None:
    server = servers["dev"]
    response = request(server.port, path="/checkout?1", headers="X-Forwarded-For: 203.0.113.9\r\n")
    assert response.status == 500
    assert PLAIN in response.body.decode()
    assert "checkout" not in response.body.decode()


def test_an_app_not_in_development_mode_gives_the_plain_500(
    servers: dict[str, CorralServer],
) -> None:
    server = servers["prod"]
    assert request(server.port, path="/ok").status == 200, server.text()
    response = request(server.port, path="/checkout?1")
    assert response.status == 500
    body = response.body.decode()
    assert PLAIN in body and "discount" not in body and "Traceback" not in body


def test_head_gets_the_head_only(servers: dict[str, CorralServer]) -> None:
    response = request(servers["dev"].port, "HEAD", path="/checkout?1")
    assert response.status == 500 and response.body == b""
    assert int(response.header("content-length") or 0) > 1000


def test_an_asgi_exception_gets_the_page_too(servers: dict[str, CorralServer]) -> None:
    server = servers["asgi"]
    response = request(server.port, path="/events?visitor<i>")
    assert response.status == 500, server.text()
    body = response.body.decode()
    assert "RuntimeError at GET /events" in html.unescape(body)
    assert "<th>visitor</th><td>&#x27;visitor&lt;i&gt;&#x27;</td>" in body
    forwarded = request(server.port, path="/events", headers="Forwarded: for=198.51.100.1\r\n")
    assert forwarded.status == 500 and PLAIN in forwarded.body.decode()


def test_chromium_renders_the_page(servers: dict[str, CorralServer], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{servers['dev'].port}/checkout?order-42"
    page = Page(dump_dom(url))
    assert page.title == "TypeError at GET /checkout"
    assert page.rows["discount"] == "None"
    assert page.rows["order_id"] == "'order-42'"
    shot = screenshot(url, tmp_path / "development-page.png", height=1400)
    assert shot.stat().st_size > 10_000
