"""Nothing leaks to someone who should not see it (issue 10, items 3, 4, 17 and 19), through a
real `corral serve`, real workers and loopback sockets.

- Error details (a traceback, a deploy script's output, the service information) go only to a
  development application's clients or to a local client that is not behind a proxy: "local"
  is decided after the trusted-proxy policy. Everyone else gets the friendly page and a
  reference id that is also in the server's log.
- Forwarded fields (X-Forwarded-*, Forwarded) reach a FastCGI application only from a trusted
  proxy, and then as REMOTE_ADDR, HTTPS and the host; the access log shows that client.
- An absolute-form target's authority is the HTTP_HOST and SERVER_NAME the application sees.
- The front's error lines read like an operator's log, with the target escaped.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import WAIT, Conn, CorralServer, request, serve, serving

__all__ = ["serve"]

SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"

BROKEN = "import module_that_is_not_there_at_all  # the app's import fails\n"
PROXY_CLIENT = "X-Forwarded-For: 203.0.113.9\r\n"


def _reference(body: bytes) -> str:
    match = re.search(rb"Reference: <code>([0-9a-f]{8,})", body)
    assert match, body[:2000]
    return match.group(1).decode()


# -- 3: error details -----------------------------------------------------------------------


def test_a_visitor_behind_a_trusted_proxy_gets_no_traceback_but_a_reference(
    tmp_path: Path,
) -> None:
    with serving(
        tmp_path,
        "--no-access-log",
        "--set",
        "trusted_proxies=127.0.0.1",
        app=BROKEN,
        wait_ready=False,
    ) as server:
        stranger = request(server.port, headers=PROXY_CLIENT)
        assert stranger.status == 503
        assert b"The application cannot start." in stranger.body
        assert b"module_that_is_not_there_at_all" not in stranger.body
        assert b"Traceback" not in stranger.body
        reference = _reference(stranger.body)
        # The operator finds the traceback with the reference.
        line = server.wait_log(rf"\b{reference}\b")
        assert "answered 503" in line
        server.wait_log("module_that_is_not_there_at_all")
        # Through the trusted proxy, a client on the proxy's own host is local.
        local = request(server.port, headers="X-Forwarded-For: 127.0.0.1\r\n")
        assert local.status == 503
        assert b"module_that_is_not_there_at_all" in local.body
        # A trusted proxy that names no client hides who it is: not local.
        unnamed = request(server.port)
        assert b"module_that_is_not_there_at_all" not in unnamed.body


def test_a_visitor_behind_an_untrusted_same_host_proxy_gets_no_traceback(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-access-log", app=BROKEN, wait_ready=False) as server:
        proxied = request(server.port, headers=PROXY_CLIENT)
        assert proxied.status == 503
        assert b"module_that_is_not_there_at_all" not in proxied.body
        _reference(proxied.body)
        forwarded = request(server.port, headers="Forwarded: for=198.51.100.7\r\n")
        assert b"module_that_is_not_there_at_all" not in forwarded.body
        # The developer's own loopback request, straight to Corral, still sees it.
        direct = request(server.port)
        assert b"module_that_is_not_there_at_all" in direct.body


def test_deploy_output_is_not_streamed_when_errors_are_not_shown_to_loopback(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = tmp_path / "deploy-ok"
    shutil.copytree(SITES / "deploy-ok", root)
    server = serve(root, "--set", "show_errors_to_loopback=false", env={"DEPLOY_SLEEP": "2"})
    first = request(server.port)
    assert first.status == 503
    assert first.header("content-length") is not None  # the page, not a stream
    assert b"Application deployment in progress" in first.body
    assert b'<meta http-equiv="refresh"' in first.body
    assert b"deploy: starting" not in first.body


def test_deploy_output_is_not_streamed_to_a_proxied_visitor(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    root = tmp_path / "deploy-ok"
    shutil.copytree(SITES / "deploy-ok", root)
    server = serve(root, env={"DEPLOY_SLEEP": "2"})
    first = request(server.port, headers=PROXY_CLIENT)
    assert first.status == 503
    assert b"Application deployment in progress" in first.body
    assert b"deploy: starting" not in first.body


def test_the_page_with_no_application_shows_no_environ_to_a_stranger(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    site = tmp_path / "empty"
    site.mkdir()
    server = serve(site)
    deadline = time.monotonic() + WAIT
    while (page := request(server.port, path="/x?token=abc")).status != 200:
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    assert b"no application configured" in page.body
    for private in (b"sys.path", b"PATH_INFO", b"QUERY_STRING", b"Python executable", b"/x"):
        assert private not in page.body, private
    assert str(site).encode() not in page.body


DEVELOPMENT_SITE = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="nothing.yet">
        <environmentVariables>
          <add name="DEVELOPMENT_MODE" value="true" />
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="nothing.yet#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""


def test_the_page_with_no_application_shows_everything_in_development_mode(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    site = tmp_path / "dev"
    site.mkdir()
    (site / "web.config").write_text(DEVELOPMENT_SITE)
    server = serve(site)
    deadline = time.monotonic() + WAIT
    while (page := request(server.port, path="/x", headers=PROXY_CLIENT)).status != 200:
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    assert b"no application configured" in page.body
    for shown in (b"sys.path", b"PATH_INFO", b"Python executable", str(site).encode()):
        assert shown in page.body, shown


# -- 4 and 17: forwarded fields, the host -------------------------------------------------


def _env(
    port: int, headers: str = "", *, target: str = "/env", host: str = "localhost"
) -> dict[str, str]:
    response = request(port, path=target, headers=headers, host=host)
    assert response.status == 200, response
    env: dict[str, str] = json.loads(response.body)
    return env


SPOOF = (
    "X-Forwarded-For: 203.0.113.9\r\n"
    "X-Forwarded-Proto: https\r\n"
    "X-Forwarded-Host: evil.example\r\n"
    "Forwarded: for=203.0.113.9;proto=https;host=evil.example\r\n"
)


def test_a_client_that_is_no_proxy_cannot_forward(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-access-log") as server:
        env = _env(server.port, SPOOF)
    for name in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"):
        assert name not in env, (name, env.get(name))
    assert "HTTP_FORWARDED" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env.get("HTTPS", "off") == "off"
    assert env["HTTP_HOST"] == "localhost"
    assert env["SERVER_NAME"] == "localhost"


def test_a_trusted_proxy_names_the_client_scheme_and_host(tmp_path: Path) -> None:
    with serving(tmp_path, "--set", "trusted_proxies=127.0.0.1") as server:
        env = _env(
            server.port,
            "X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: www.example.org\r\n",
        )
        assert env["REMOTE_ADDR"] == "203.0.113.9"
        assert env["wsgi.url_scheme"] == "https"
        assert env["HTTPS"] == "on"
        assert env["HTTP_HOST"] == "www.example.org"
        assert env["SERVER_NAME"] == "www.example.org"
        assert env["SERVER_PORT"] == "443"
        # The same fields an HTTP backend gets: the chain with the proxy appended.
        assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.1, 203.0.113.9, 127.0.0.1"
        assert env["HTTP_X_FORWARDED_PROTO"] == "https"
        # RFC 7239's Forwarded, from the same proxy.
        env = _env(server.port, 'Forwarded: for="[2001:db8::7]:4711";proto=https\r\n')
        assert env["REMOTE_ADDR"] == "2001:db8::7"
        assert env["wsgi.url_scheme"] == "https"
        # The access log shows the resolved client, not the proxy.
        server.wait_log(r'^203\.0\.113\.9 - - \[.*"GET /env HTTP/1\.1" 200 ')


def test_an_absolute_form_target_is_the_host_the_app_sees(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-access-log") as server:
        env = _env(server.port, target="http://abs.example:8081/env?q=1", host="other.example")
    assert env["HTTP_HOST"] == "abs.example:8081"
    assert env["SERVER_NAME"] == "abs.example"
    assert env["SERVER_PORT"] == "8081"
    assert env["PATH_INFO"] == "/env"


# -- 19: the front's log lines ----------------------------------------------------------------


def test_a_failed_request_is_logged_as_an_operator_reads_it(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-access-log") as server, Conn(server.port) as conn:
        conn.send(b'GET /die?a="b\\ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        assert conn.response().status == 502
        line = server.wait_log(r"answered 502")
    assert "b'" not in line and 'b"' not in line
    assert "GET /die?a=\\x22b\\x5c answered 502" in line, line
    name = line.split(": ", 1)[0].split()[-1]
    assert line.count(name) == 1, line
