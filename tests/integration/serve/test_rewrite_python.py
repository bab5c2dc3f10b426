"""URL Rewrite in front of Corral's own Python worker: a WSGI application mounted at a virtual
path, its rules in corral.toml (a Django-style site moved off IIS). What the application's
environ holds after a rewrite: PATH_INFO/QUERY_STRING of the rewritten URL, SCRIPT_NAME the
mount's, REQUEST_URI and HTTP_X_ORIGINAL_URL the client's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import CorralServer, make_site, request

RULES = r"""
[apps.web]
engine = "python"

[[rewrite]]
name = "articles"
match = '^articles/(\d+)$'
action = { type = "Rewrite", url = "env?article={R:1}" }

[[rewrite]]
name = "old feed"
match = '^rss\.xml$'
action = { type = "Redirect", url = "feed/", redirect_type = "Found", append_query_string = false }

[[rewrite]]
name = "lower case"
match = "[A-Z]"
ignore_case = false
action = { type = "Redirect", url = "/blog/{ToLower:{C:1}}", redirect_type = "Permanent" }
conditions = [{ input = "{URL}", pattern = "^/blog/([a-z]*[A-Z].*)$", ignore_case = false }]
"""


def test_rules_before_a_wsgi_application_at_a_virtual_path(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site / "corral.toml").write_text(RULES)
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(
        '[sites.main]\nbindings = ["127.0.0.1:0"]\n[sites.main.apps."/blog"]\n'
        'physical_path = "site"\n'
    )
    server = CorralServer(server_toml, args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        response = request(server.port, path="/blog/articles/7?x=1")
        assert response.status == 200, server.text()
        environ = json.loads(response.body)
        assert {
            key: environ.get(key)
            for key in (
                "SCRIPT_NAME",
                "PATH_INFO",
                "QUERY_STRING",
                "REQUEST_URI",
                "HTTP_X_ORIGINAL_URL",
            )
        } == {
            "SCRIPT_NAME": "/blog",
            "PATH_INFO": "/env",
            "QUERY_STRING": "article=7&x=1",
            "REQUEST_URI": "/blog/articles/7?x=1",
            "HTTP_X_ORIGINAL_URL": "/blog/articles/7?x=1",
        }
        feed = request(server.port, path="/blog/rss.xml?utm=1")
        assert (feed.status, feed.header("Location")) == (302, "/blog/feed/")
        upper = request(server.port, path="/blog/About-Us")
        assert (upper.status, upper.header("Location")) == (301, "/blog/about-us")
        assert request(server.port, path="/blog/hello").body == b"Hello, world!\n"
        assert request(server.port, path="/articles/7").status == 404  # outside the mount
    finally:
        server.stop()
