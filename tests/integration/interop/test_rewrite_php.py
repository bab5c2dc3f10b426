"""IIS URL Rewrite end to end: real `corral serve`, real php-cgi, raw sockets.

What is proved: WordPress's and Laravel's stock web.config rules with small PHP front
controllers (pretty URLs reach index.php with the client's REQUEST_URI, existing files and
folders are served as they are, Laravel's trailing-slash redirect), the same rules in
corral.toml, Redirect / CustomResponse / AbortRequest rules, a sub-folder's web.config whose
rules see URLs relative to it, a client's X-Original-URL never believed, the access log keeping
the request line the client sent, an HTTP backend getting the rewritten target; a PHP
application mapped with `*` (a front controller) running index.php instead of php-cgi's "No
input file specified"; and `corral check` naming a rule that can never match.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.harness import Conn, CorralServer, Response, request, run_corral

from conftest import require_program
from ports import lease

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"
BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"

PHP_HANDLER = (
    '<add name="php.project#x64" scriptProcessor="php.5.4.pipe" path="{path}" verb="*" '
    'modules="HeliconZoo_x64" preCondition="bitness64" />'
)


def copy_site(root: Path, name: str) -> Path:
    """A copy of a fixture site at its real path (PHP reports resolved file names)."""
    site = Path(os.path.realpath(root)) / name
    shutil.copytree(FIXTURES / name, site)
    return site


@contextlib.contextmanager
def serving(site: Path, *args: str) -> Iterator[CorralServer]:
    server = CorralServer(site, args=args)
    try:
        server.start(wait_ready=False)
        yield server
    finally:
        server.stop()


def get(server: CorralServer, path: str, headers: str = "") -> Response:
    return request(server.port, path=path, headers=headers)


def as_json(response: Response) -> Any:
    assert response.status == 200, (response.status, response.body[:2000])
    return json.loads(response.body)


@pytest.fixture(scope="module")
def php_cgi() -> str:
    return require_program("php-cgi")


@pytest.fixture(scope="module")
def wordpress(
    tmp_path_factory: pytest.TempPathFactory, php_cgi: str
) -> Iterator[tuple[Path, CorralServer]]:
    site = copy_site(tmp_path_factory.mktemp("wp"), "rewrite-wordpress")
    with serving(site) as server:  # (with the access log)
        yield site, server


def test_wordpress_pretty_permalinks_reach_index_php_with_the_original_uri(
    wordpress: tuple[Path, CorralServer],
) -> None:
    site, server = wordpress
    seen = as_json(
        get(server, "/2024/01/hello-world/?replytocom=5", headers="X-Original-URL: /wp-admin/\r\n")
    )
    assert seen == {
        "script": "index.php",
        "REQUEST_URI": "/2024/01/hello-world/?replytocom=5",
        "SCRIPT_NAME": "/index.php",
        "SCRIPT_FILENAME": f"{site}/index.php",
        "PATH_INFO": "",
        "QUERY_STRING": "replytocom=5",
        # As IIS sets it; the client's own X-Original-URL is never passed on.
        "HTTP_X_ORIGINAL_URL": "/2024/01/hello-world/?replytocom=5",
        "PHP_SELF": "/index.php",
        "route": "2024/01/hello-world",
        "get": {"replytocom": "5"},
    }
    # The access log keeps the request line the client sent.
    server.wait_log(r'"GET /2024/01/hello-world/\?replytocom=5 HTTP/1\.1" 200 ')


def test_wordpress_existing_files_and_folders_are_served_as_they_are(
    wordpress: tuple[Path, CorralServer],
) -> None:
    _, server = wordpress
    style = get(server, "/wp-content/themes/twenty/style.css")
    assert (style.status, style.body) == (200, b"body { color: #333; }\n")
    assert style.header("Content-Type") == "text/css; charset=utf-8"
    assert get(server, "/wp-login.php").body == b"login form at /wp-login.php\n"
    assert get(server, "/wp-admin/").body == b"dashboard at /wp-admin/index.php\n"
    moved = get(server, "/wp-admin")
    assert (moved.status, moved.header("Location")) == (301, "/wp-admin/")
    assert as_json(get(server, "/"))["SCRIPT_NAME"] == "/index.php"
    # Files are still judged by the static rules: the configuration is an existing file, so no
    # rule rewrites it, and the front never serves it.
    assert get(server, "/web.config").status == 404
    # A missing asset goes to WordPress, which answers its own 404 page (here: the JSON).
    assert as_json(get(server, "/wp-content/missing.png"))["route"] == "wp-content/missing.png"


def test_wordpress_keeps_the_connection_and_the_body(wordpress: tuple[Path, CorralServer]) -> None:
    _, server = wordpress
    with Conn(server.port) as conn:
        for _ in range(2):
            conn.send(b"GET /sample-page/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert json.loads(conn.response().body)["route"] == "sample-page"
        conn.send(b"HEAD /wp-admin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert conn.response(head=True).status == 301
        body = b"comment=hello"
        conn.send(
            b"POST /2024/01/hello-world/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        assert json.loads(conn.response().body)["REQUEST_URI"] == "/2024/01/hello-world/"


def test_laravel_public_folder(tmp_path: Path, php_cgi: str) -> None:
    public = copy_site(tmp_path, "rewrite-laravel") / "public"
    with serving(public, "--no-access-log") as server:
        user = as_json(get(server, "/users/5?tab=posts"))
        assert user == {
            "route": "user 5",
            "path": "/users/5",
            "method": "GET",
            "REQUEST_URI": "/users/5?tab=posts",
            "SCRIPT_NAME": "/index.php",
            "QUERY_STRING": "tab=posts",
            "get": {"tab": "posts"},
            "post": [],
        }
        assert as_json(get(server, "/"))["route"] == "home"
        assert as_json(get(server, "/nowhere"))["route"] == "not found"
        with Conn(server.port) as conn:  # Rule 1: no trailing slash (a 301 the front makes)
            conn.send(b"GET /users/5/?a=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            moved = conn.response()
            assert (moved.status, moved.header("Location")) == (301, "/users/5?a=1")
            conn.send(b"GET /users/5 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert json.loads(conn.response().body)["route"] == "user 5"
        css = get(server, "/css/app.css")
        assert (css.status, css.body) == (200, b".app { margin: 0; }\n")
        docs = get(server, "/docs/")  # an existing folder: neither redirected nor rewritten
        assert (docs.status, docs.body) == (200, b"<p>docs</p>\n")
        posted = request(
            server.port,
            method="POST",
            path="/users/5",
            body=b"name=Zo%C3%AB",
            headers="Content-Type: application/x-www-form-urlencoded\r\n",
        )
        assert as_json(posted)["post"] == {"name": "Zoë"}


LARAVEL_TOML = """\
[apps.laravel]
engine = "php.fastcgi"
paths = ["*.php"]

[[rewrite]]
name = "Imported Rule 1"
match = "^(.*)/$"
ignore_case = false
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "IsDirectory", ignore_case = false, negate = true },
]
action = { type = "Redirect", redirect_type = "Permanent", url = "/{R:1}" }
stop_processing = true

[[rewrite]]
name = "Imported Rule 2"
match = "^"
ignore_case = false
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "IsDirectory", ignore_case = false, negate = true },
  { input = "{REQUEST_FILENAME}", match_type = "IsFile", ignore_case = false, negate = true },
]
action = { type = "Rewrite", url = "index.php" }
stop_processing = true
"""


def test_the_same_rules_in_corral_toml(tmp_path: Path, php_cgi: str) -> None:
    public = copy_site(tmp_path, "rewrite-laravel") / "public"
    (public / "web.config").unlink()
    (public / "corral.toml").write_text(LARAVEL_TOML)
    with serving(public, "--no-access-log") as server:
        assert as_json(get(server, "/users/7"))["route"] == "user 7"
        moved = get(server, "/users/7/")
        assert (moved.status, moved.header("Location")) == (301, "/users/7")
        assert get(server, "/css/app.css").body == b".app { margin: 0; }\n"


RULES_SITE = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <handlers>{handler}</handlers>
    <rewrite>
      <rules>
        <rule name="moved blog" stopProcessing="true">
          <match url="^old-blog/(.*)" />
          <action type="Redirect" url="blog/{{R:1}}" redirectType="Found" />
        </rule>
        <rule name="canonical host" stopProcessing="true">
          <match url="(.*)" />
          <conditions>
            <add input="{{HTTP_HOST}}" pattern="^www\\.(.+)$" />
          </conditions>
          <action type="Redirect" url="http://{{C:1}}/{{R:1}}" redirectType="308" />
        </rule>
        <rule name="https only" stopProcessing="true">
          <match url="^secure/(.*)" />
          <conditions>
            <add input="{{HTTPS}}" pattern="^OFF$" />
          </conditions>
          <action type="Redirect" url="https://{{HTTP_HOST}}/secure/{{R:1}}" />
        </rule>
        <rule name="no dumps" stopProcessing="true">
          <match url="^(.*)\\.sql$" />
          <action type="CustomResponse" statusCode="403" statusReason="Forbidden by rule"
                  statusDescription="No database dumps here ({{R:0}})." />
        </rule>
        <rule name="drop probes" stopProcessing="true">
          <match url="^wp-config" />
          <action type="AbortRequest" />
        </rule>
      </rules>
    </rewrite>
  </system.webServer>
</configuration>
"""

SHOP_RULES = """<configuration><system.webServer><rewrite><rules>
  <rule name="product" stopProcessing="true">
    <match url="^p/(\\d+)$" />
    <action type="Rewrite" url="product.php?id={R:1}" />
  </rule>
</rules></rewrite></system.webServer></configuration>
"""


def rules_site(root: Path) -> Path:
    site = Path(os.path.realpath(root)) / "rules"
    (site / "shop").mkdir(parents=True)
    (site / "web.config").write_text(RULES_SITE.format(handler=PHP_HANDLER.format(path="*.php")))
    (site / "dump.sql").write_text("secret\n")
    (site / "shop" / "web.config").write_text(SHOP_RULES)
    (site / "shop" / "product.php").write_text(
        '<?php echo json_encode(["id" => $_GET["id"], "uri" => $_SERVER["REQUEST_URI"],'
        ' "script" => $_SERVER["SCRIPT_NAME"]]), "\\n";\n'
    )
    return site


def test_redirect_custom_response_abort_and_a_sub_folder(tmp_path: Path, php_cgi: str) -> None:
    site = rules_site(tmp_path)
    (site / "secure").mkdir()
    (site / "secure" / "page.html").write_text("secret page\n")
    with serving(site, "--no-access-log", "--set", "trusted_proxies=127.0.0.1") as server:
        moved = get(server, "/old-blog/2024/x?ref=feed")
        assert (moved.status, moved.header("Location")) == (302, "/blog/2024/x?ref=feed")
        assert moved.body == b"Moved to /blog/2024/x?ref=feed\n"
        canonical = request(server.port, path="/a/b", host="www.example.com")
        assert (canonical.status, canonical.header("Location")) == (308, "http://example.com/a/b")
        # {HTTPS}: off for a plain client; on when a trusted proxy says https.
        insecure = get(server, "/secure/page.html")
        assert (insecure.status, insecure.header("Location")) == (
            301,
            "https://localhost/secure/page.html",
        )
        proxied = get(server, "/secure/page.html", headers="X-Forwarded-Proto: https\r\n")
        assert (proxied.status, proxied.body) == (200, b"secret page\n")
        refused = get(server, "/backup/dump.sql")
        assert (refused.status, refused.reason) == (403, "Forbidden by rule")
        assert b"No database dumps here (backup/dump.sql)." in refused.body
        assert get(server, "/dump.sql").status == 403  # an existing file: the rule comes first
        with Conn(server.port) as conn:  # AbortRequest: no answer at all
            conn.send(b"GET /wp-config.php.bak HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert conn.read_to_eof() == b""
        product = get(server, "/shop/p/42")
        assert json.loads(product.body) == {
            "id": "42",
            "uri": "/shop/p/42",
            "script": "/shop/product.php",
        }
        assert get(server, "/p/42").status == 404  # shop's rules see only /shop/...
        server.wait_log(
            r"rewrite:default:/: GET /wp-config\.php\.bak dropped by rule 'drop probes'"
        )


def test_a_php_star_handler_is_a_front_controller(tmp_path: Path, php_cgi: str) -> None:
    site = Path(os.path.realpath(tmp_path)) / "front"
    (site / "css").mkdir(parents=True)
    (site / "web.config").write_text(
        "<configuration><system.webServer><handlers>"
        + PHP_HANDLER.format(path="*")
        + "</handlers></system.webServer></configuration>"
    )
    (site / "index.php").write_text(
        '<?php echo json_encode(["file" => $_SERVER["SCRIPT_FILENAME"], "name" => '
        '$_SERVER["SCRIPT_NAME"], "path" => $_SERVER["PATH_INFO"], "uri" => '
        '$_SERVER["REQUEST_URI"]]), "\\n";\n'
    )
    (site / "other.php").write_text('<?php echo "other ", $_SERVER["PATH_INFO"], "\\n";\n')
    (site / "css" / "site.css").write_text("p {}\n")
    with serving(site, "--no-access-log") as server:
        # Was: 404 "No input file specified." for every URL (no SCRIPT_FILENAME was sent).
        assert as_json(get(server, "/users/5?x=1")) == {
            "file": f"{site}/index.php",
            "name": "/index.php",
            "path": "/users/5",
            "uri": "/users/5?x=1",
        }
        assert as_json(get(server, "/"))["path"] == ""
        assert get(server, "/other.php/extra").body == b"other /extra\n"
        assert get(server, "/css/site.css").body == b"p {}\n"
        assert get(server, "/web.config").status == 404


def test_an_http_backend_gets_the_rewritten_target(tmp_path: Path) -> None:
    site = tmp_path / "api"
    site.mkdir()
    with lease() as ports:
        (site / "corral.toml").write_text(
            textwrap.dedent(
                f"""\
                [engines."stdlib.http"]
                full_path = {json.dumps(sys.executable)}
                arguments = '{BACKEND} %HOST% %PORT%'
                transport = "tcp"
                protocol = "http"
                port_lower = {ports.low}
                port_upper = {ports.high}

                [apps.api]
                engine = "stdlib.http"

                [[rewrite]]
                name = "versioned"
                match = "^v1/(.*)"
                action = {{ type = "Rewrite", url = "api/{{R:1}}" }}
                """
            )
        )
        with serving(site, "--no-access-log") as server:
            assert get(server, "/v1/items/3").body.endswith(b" GET /api/items/3")
            headers = get(server, "/v1/x/headers?q=1", headers="X-Original-URL: /forged\r\n").body
            assert b"X-Original-URL: /v1/x/headers?q=1\n" in headers
            assert b"/forged" not in headers
            assert get(server, "/plain").body.endswith(b" GET /plain")


def test_corral_check_names_a_rule_that_can_never_match(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "web.config").write_text(
        """<configuration>
  <system.webServer>
    <rewrite>
      <rules>
        <rule name="everything" stopProcessing="true">
          <match url=".*" />
          <action type="Rewrite" url="index.php" />
        </rule>
        <rule name="api">
          <match url="^api/(.*)" />
          <action type="Rewrite" url="api.php/{R:1}" />
        </rule>
      </rules>
    </rewrite>
  </system.webServer>
</configuration>
"""
    )
    checked = run_corral("check", str(site))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert (
        f"{site}/web.config:9: rewrite: rule 'api' can never match: rule 'everything' at "
        f"{site}/web.config:5 comes first, takes every URL (pattern '.*', no conditions) and "
        "ends the evaluation"
    ) in checked.stderr + checked.stdout
