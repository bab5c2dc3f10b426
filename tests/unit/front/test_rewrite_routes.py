"""The router's side of URL Rewrite and of PHP front controllers (front/routes.py), and the HTTP
backend's request head after a rewrite (front/forward.py). Pure: nothing is started."""

from __future__ import annotations

import os
from pathlib import Path

from corral.app import ServeOptions, build_apps
from corral.backends import BODY_NONE
from corral.config.load import load_site
from corral.front.forward import request_head
from corral.front.routes import ConfigRouter
from corral.protocol.http1.events import Request

HANDLER = (
    '<add name="php#x64" scriptProcessor="php.5.4.pipe" path="{path}" '
    'modules="HeliconZoo_x64" preCondition="bitness64" />'
)


def router_for(site: Path) -> ConfigRouter:
    config = load_site(str(site))
    apps = build_apps(config, ServeOptions(path=site))
    routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
    return ConfigRouter(config, routes)


def web_config(handler_path: str, rules: str = "") -> str:
    rewrite = f"<rewrite><rules>{rules}</rules></rewrite>" if rules else ""
    return (
        "<configuration><system.webServer><handlers>"
        + HANDLER.format(path=handler_path)
        + f"</handlers>{rewrite}</system.webServer></configuration>"
    )


def test_a_mount_with_rules_answers_with_its_rewrite_route(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text(
        web_config(
            "*.php",
            '<rule name="r"><match url="x" /><action type="Rewrite" url="index.php" /></rule>',
        )
    )
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "web.config").write_text(
        "<configuration><system.webServer><rewrite><rules><clear />"
        "</rules></rewrite></system.webServer></configuration>"
    )
    (tmp_path / "index.php").write_text("<?php\n")
    router = router_for(tmp_path)
    marker = router.match(b"localhost", b"/anything")
    assert marker is not None and marker.rewrite is not None
    assert marker is router.match(b"localhost", b"/other")  # one per mount
    rules = marker.rewrite
    assert [rule.name for rule in rules.rules_for("/x")] == ["r"]
    assert rules.rules_for("/static/x") == ()  # cleared there
    assert rules.answers.name == "rewrite:default:/"
    # After the rules: the ordinary routes, never the rewrite route again.
    script = router.routed(b"localhost", b"/index.php")
    assert script is not None and script.script_params is not None
    assert dict(script.script_params)[b"SCRIPT_NAME"] == b"/index.php"
    static = router.routed(b"localhost", b"/static/a.css")
    assert static is not None and static.static is not None and static.rewrite is None


def test_a_mount_without_rules_routes_as_before(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text(web_config("*.php"))
    (tmp_path / "index.php").write_text("<?php\n")
    route = router_for(tmp_path).match(b"localhost", b"/index.php")
    assert route is not None and route.rewrite is None and route.script_params is not None


def test_a_php_star_handler_is_a_front_controller(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text(web_config("*"))
    (tmp_path / "index.php").write_text("<?php\n")
    (tmp_path / "tool.php").write_text("<?php\n")
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "index.php").write_text("<?php\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    router = router_for(tmp_path)
    root = os.fsencode(os.path.realpath(tmp_path))

    def script(path: bytes) -> tuple[bytes, bytes, bytes] | None:
        route = router.match(b"localhost", path)
        assert route is not None
        if route.script_params is None:
            return None
        params = dict(route.script_params)
        return params[b"SCRIPT_NAME"], params[b"SCRIPT_FILENAME"], params[b"PATH_INFO"]

    assert script(b"/users/5") == (b"/index.php", root + b"/index.php", b"/users/5")
    assert script(b"/") == (b"/index.php", root + b"/index.php", b"")
    assert script(b"/tool.php/x") == (b"/tool.php", root + b"/tool.php", b"/x")
    assert script(b"/admin/") == (b"/admin/index.php", root + b"/admin/index.php", b"")
    assert script(b"/missing.php") == (b"/index.php", root + b"/index.php", b"/missing.php")
    logo = router.match(b"localhost", b"/logo.png")
    assert logo is not None and logo.static is not None
    (tmp_path / "index.php").unlink()  # no front controller: the static rules answer
    fallback = router.match(b"localhost", b"/users/5")
    assert fallback is not None and fallback.static is not None


def test_an_http_backend_gets_the_rewritten_target_and_the_original_url() -> None:
    request = Request(
        method=b"GET",
        target=b"/v1/items?x=1",
        path=b"/v1/items",
        query=b"x=1",
        http_version="1.1",
        headers=[(b"Host", b"example.com"), (b"X-Original-URL", b"/forged")],
        keep_alive=True,
        expect_continue=False,
        content_length=None,
        chunked=False,
        upgrade=None,
    )
    head = request_head(
        request,
        host=b"example.com",
        client=b"127.0.0.1",
        trusted=False,
        body=BODY_NONE,
        target=b"/api/items?x=1",
    )
    assert head.startswith(b"GET /api/items?x=1 HTTP/1.1\r\nHost: example.com\r\n")
    assert b"X-Original-URL: /v1/items?x=1\r\n" in head
    assert b"/forged" not in head
    plain = request_head(
        request, host=b"example.com", client=b"127.0.0.1", trusted=False, body=BODY_NONE
    )
    assert plain.startswith(b"GET /v1/items?x=1 HTTP/1.1\r\n")
