"""Request buffering end to end: a chunked request body reaches PHP whole, with its
CONTENT_LENGTH (RFC 3875 4.1.2), through real php-cgi on fd-0 sockets and a real php-fpm
(tcp.service) this test starts. Without buffering, php-cgi and php-fpm read up to CONTENT_LENGTH,
which a chunked body does not have, and see an empty body.

The body is spooled by the front (memory up to `request_buffer_memory`, then a temporary file)
and sent once it is complete; a body over `max_body_size` is still a 413.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import Conn, CorralServer, Response
from tests.integration.interop.test_php import fpm_site, php_site, running_php_fpm, serving

from conftest import require_program
from ports import port

ECHO_MD5 = (
    "<?php\n"
    "$body = file_get_contents('php://input');\n"
    "echo strlen($body), ' ', md5($body), ' ', $_SERVER['CONTENT_LENGTH'] ?? '-';\n"
)


def chunked_post(server: CorralServer, path: str, body: bytes, piece: int = 65536) -> Response:
    """POST ``body`` with Transfer-Encoding: chunked, in pieces of ``piece`` bytes."""
    with Conn(server.port) as conn:
        conn.send(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
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
