"""Request buffering end to end: a chunked request body reaches PHP whole, with its
CONTENT_LENGTH (RFC 3875 4.1.2), through real php-cgi on fd-0 sockets and a real php-fpm
(tcp.service) this test starts. Without buffering, php-cgi and php-fpm read up to CONTENT_LENGTH,
which a chunked body does not have, and see an empty body.

The body is spooled by the front (memory up to `request_buffer_memory`, then a temporary file)
and sent once it is complete; a body over `max_body_size` is still a 413.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import Conn, CorralServer, Response
from tests.integration.interop.test_php import fpm_site, php_site, running_php_fpm, serving

from conftest import require_program
from ports import engine_ports_toml, lease, port

ECHO_MD5 = (
    "<?php\n"
    "$body = file_get_contents('php://input');\n"
    "echo strlen($body), ' ', md5($body), ' ', $_SERVER['CONTENT_LENGTH'] ?? '-';\n"
)


def chunked_post(
    server: CorralServer, path: str, body: bytes, piece: int = 65536, method: str = "POST"
) -> Response:
    """POST ``body`` with Transfer-Encoding: chunked, in pieces of ``piece`` bytes."""
    with Conn(server.port) as conn:
        conn.send(
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for start in range(0, len(body), piece):
            data = body[start : start + piece]
            conn.send(b"%x\r\n%s\r\n" % (len(data), data))
        conn.send(b"0\r\n\r\n")
        return conn.response()


def check_bodies_arrive_whole(server: CorralServer) -> None:
    for size in (0, 5, 70_000, 3 * 1024 * 1024 + 7):
        body = os.urandom(size)
        answer = chunked_post(server, "/md5.php", body)
        assert answer.status == 200, (answer.status, answer.body[:500])
        expected = f"{size} {hashlib.md5(body).hexdigest()} {size}".encode()
        assert answer.body == expected, (size, answer.body[:200])


def with_md5_script(site: Path) -> Path:
    (site / "md5.php").write_text(ECHO_MD5)
    return site


def test_php_cgi_gets_a_chunked_body_whole(tmp_path: Path) -> None:
    require_program("php-cgi")
    site = with_md5_script(php_site(tmp_path))
    with serving(site) as server:
        check_bodies_arrive_whole(server)


def test_php_cgi_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    require_program("php-cgi")
    site = with_md5_script(php_site(tmp_path))
    with serving(site, "--set", "max_body_size=100000") as server:
        answer = chunked_post(server, "/md5.php", b"x" * 200_000)
        assert answer.status == 413


@pytest.fixture
def fpm(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    folder = Path(os.path.realpath(tmp_path))
    fpm_port = port()
    with running_php_fpm(folder, ("127.0.0.1", fpm_port)):
        yield folder, fpm_port


def test_php_fpm_gets_a_chunked_body_whole(fpm: tuple[Path, int]) -> None:
    folder, fpm_port = fpm
    site = with_md5_script(fpm_site(folder / "site", fpm_port))
    with serving(site) as server:
        check_bodies_arrive_whole(server)


WSGI_ECHO = """
import hashlib

def application(environ, start_response):
    body = environ["wsgi.input"].read()
    length = environ.get("CONTENT_LENGTH") or "-"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{len(body)} {hashlib.md5(body).hexdigest()} {length}".encode()]
"""


def python_site(root: Path, buffering: str) -> Path:
    site = root / f"site-{buffering}"
    site.mkdir()
    (site / "wsgi.py").write_text(WSGI_ECHO)
    (site / "web.config").write_text(
        "<configuration><system.webServer>"
        '<heliconZoo><application name="app"><environmentVariables>'
        '<add name="WSGI_APP" value="wsgi.application"/>'
        f'<add name="REQUEST_BUFFERING" value="{buffering}"/>'
        "</environmentVariables></application></heliconZoo>"
        '<handlers><add name="app" scriptProcessor="python" path="*" verb="*" '
        'modules="HeliconZoo_x64"/></handlers>'
        "</system.webServer></configuration>"
    )
    return site


def test_request_buffering_is_a_setting_of_every_application(tmp_path: Path) -> None:
    """REQUEST_BUFFERING=on gives Corral's Python worker (which streams bodies, so auto is
    off for it) the body whole with its CONTENT_LENGTH; auto keeps it streamed."""
    body = os.urandom(200_000)
    digest = hashlib.md5(body).hexdigest()
    server = CorralServer(python_site(tmp_path, "on"), args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        answer = chunked_post(server, "/echo", body)
        assert (answer.status, answer.body) == (200, f"200000 {digest} 200000".encode())
    finally:
        server.stop()
    server = CorralServer(python_site(tmp_path, "auto"), args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        answer = chunked_post(server, "/echo", body)
        assert (answer.status, answer.body) == (200, f"200000 {digest} -".encode())
    finally:
        server.stop()


def test_an_http_engine_with_request_buffering_gets_a_content_length(tmp_path: Path) -> None:
    """Node.js (an HTTP backend) with requestBuffering on: a chunked upload is sent to it with
    a Content-Length, once complete."""
    require_program("node", "nodejs")
    example = Path(__file__).resolve().parents[3] / "examples" / "nodejs"
    shutil.copytree(example, tmp_path / "site")
    with lease() as taken:
        server_toml = tmp_path / "server.toml"
        server_toml.write_text(
            engine_ports_toml(["nodejs.http"], taken)
            + 'request_buffering = "on"\n'
            + '[sites.main]\nbindings = ["127.0.0.1:0"]\n'
            + '[sites.main.apps."/"]\nphysical_path = "site"\n'
        )
        server = CorralServer(server_toml, args=("--no-access-log",))
        server.start(wait_ready=False)
        try:
            body = os.urandom(1024 * 1024 + 3)
            answer = chunked_post(server, "/upload", body)
            assert answer.status == 200, answer
            assert json.loads(answer.body) == {
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
            # (the example's /headers answers a GET, whatever its body)
            headers = json.loads(chunked_post(server, "/headers", b"abc", method="GET").body)
            assert headers.get("content-length") == "3", headers
            assert "transfer-encoding" not in headers, headers
        finally:
            server.stop()
