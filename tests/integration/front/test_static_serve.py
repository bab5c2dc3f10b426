"""Static files over the wire: a real `corral serve` subprocess answering files of a folder whose
web.config removes the application's handlers, and raw-socket clients.

- what is served and how: 200/206/304/412/416, HEAD, 405 with Allow, folder redirect, index
  document, 403 for a folder without one, ETag/Last-Modified/Content-Type, keep-alive;
- security: traversal (plain, encoded, double-encoded, backslash, symlinks out), hidden and
  configuration files, engine sources, the error-log folder: 400/403/404, never the file;
- large files: streamed whole and intact; a client that stops reading holds the server's memory
  to about one piece, and other clients are served meanwhile.
"""

from __future__ import annotations

import hashlib
import os
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.harness import WAIT, Conn, CorralServer, Response

SECRET = b"TOP-SECRET-CONTENT"
BIG = 24 * 1024 * 1024

WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="shop">
        <environmentVariables>
          <add name="WSGI_APP" value="shop:application" />
          <add name="ERROR_LOG_DIR" value="files\\logs" />
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="shop#x64" scriptProcessor="python.3.4.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""

STATIC_WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <handlers>
      <remove name="shop#x64" />
    </handlers>
  </system.webServer>
</configuration>
"""

SHOP = textwrap.dedent(
    """
    def application(environ, start_response):
        body = ("shop " + environ.get("PATH_INFO", "")).encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    """
)


def _site(root: Path) -> Path:
    site = root / "site"
    files = site / "files"
    for folder in ("docs", "empty", "logs", ".git", "__pycache__"):
        (files / folder).mkdir(parents=True)
    (site / "web.config").write_text(WEB_CONFIG)
    (site / "shop.py").write_text(SHOP)
    (files / "web.config").write_text(STATIC_WEB_CONFIG)
    (files / "hello.txt").write_bytes(b"hello, static\n")
    (files / "style.css").write_bytes(b"body{}\n")
    (files / "docs" / "index.html").write_bytes(b"<p>docs</p>\n")
    (files / "logs" / "error.log").write_bytes(SECRET)
    (files / ".env").write_bytes(SECRET)
    (files / ".git" / "config").write_bytes(SECRET)
    (files / "__pycache__" / "x.cpython-311.pyc").write_bytes(SECRET)
    (files / "helper.py").write_bytes(SECRET)
    (files / "corral.toml").write_bytes(SECRET)
    (root / "secret.txt").write_bytes(SECRET)
    os.symlink(root / "secret.txt", files / "outside.txt")
    os.symlink(root, files / "up")
    os.symlink(files / "hello.txt", files / "inside.txt")
    with open(files / "big.bin", "wb") as out:
        block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB, not compressible by accident
        for _ in range(BIG // len(block)):
            out.write(block)
    return site


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    root = Path(os.path.realpath(tmp_path_factory.mktemp("static")))
    server = CorralServer(_site(root), args=("--no-access-log",))
    try:
        server.start(wait_ready=False)
        yield server
    finally:
        server.stop()


def send(port: int, raw: str) -> Response:
    conn = Conn(port)
    try:
        conn.send(raw.encode("latin-1"))
        return conn.response(head=raw.startswith("HEAD "))
    finally:
        conn.close()


def get(port: int, target: str, headers: str = "", method: str = "GET") -> Response:
    return send(
        port, f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
    )


# -- serving -----------------------------------------------------------------------------------


def test_a_file_is_served_with_its_validators(server: CorralServer) -> None:
    response = get(server.port, "/files/hello.txt")
    assert response.status == 200
    assert response.body == b"hello, static\n"
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.header("content-length") == "14"
    assert response.header("accept-ranges") == "bytes"
    assert (response.header("etag") or "").startswith('"')
    assert (response.header("last-modified") or "").endswith(" GMT")
    assert get(server.port, "/files/style.css").header("content-type") == "text/css; charset=utf-8"
    # Everything outside files/ is the application's.
    assert get(server.port, "/hello.txt").body == b"shop /hello.txt"


def test_conditional_and_range_requests(server: CorralServer) -> None:
    first = get(server.port, "/files/hello.txt")
    etag, modified = first.header("etag"), first.header("last-modified")
    assert get(server.port, "/files/hello.txt", f"If-None-Match: {etag}\r\n").status == 304
    assert get(server.port, "/files/hello.txt", f"If-Modified-Since: {modified}\r\n").status == 304
    assert get(server.port, "/files/hello.txt", 'If-Match: "nope"\r\n').status == 412
    partial = get(server.port, "/files/hello.txt", "Range: bytes=7-12\r\n")
    assert (partial.status, partial.body) == (206, b"static")
    assert partial.header("content-range") == "bytes 7-12/14"
    assert get(server.port, "/files/hello.txt", "Range: bytes=-3\r\n").body == b"ic\n"
    unsatisfiable = get(server.port, "/files/hello.txt", "Range: bytes=100-\r\n")
    assert unsatisfiable.status == 416
    assert unsatisfiable.header("content-range") == "bytes */14"
    stale = get(server.port, "/files/hello.txt", 'Range: bytes=0-1\r\nIf-Range: "old"\r\n')
    assert (stale.status, stale.body) == (200, b"hello, static\n")
    fresh = get(server.port, "/files/hello.txt", f"Range: bytes=0-1\r\nIf-Range: {etag}\r\n")
    assert fresh.body == b"he"


def test_head_405_and_keep_alive(server: CorralServer) -> None:
    conn = Conn(server.port)
    try:
        conn.send(b"HEAD /files/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = conn.response(head=True)
        assert (head.status, head.header("content-length")) == (200, "14")
        conn.send(b"POST /files/hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        refused = conn.response()
        assert refused.status == 405
        assert refused.header("allow") == "GET, HEAD"
        # The same connection still serves (the 405 did not close it, the HEAD sent no body).
        conn.send(b"GET /files/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert conn.response().body == b"hello, static\n"
    finally:
        conn.close()


def test_folders_redirect_serve_their_index_or_refuse_a_listing(server: CorralServer) -> None:
    moved = get(server.port, "/files/docs?x=1")
    assert moved.status == 301
    assert moved.header("location") == "/files/docs/?x=1"
    index = get(server.port, "/files/docs/")
    assert (index.status, index.body) == (200, b"<p>docs</p>\n")
    assert index.header("content-type") == "text/html; charset=utf-8"
    assert get(server.port, "/files/empty/").status == 403
    # A symlink that stays inside the folder is followed.
    assert get(server.port, "/files/inside.txt").body == b"hello, static\n"


# -- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        # traversal, plain and encoded (the front removes dot segments: what remains is the
        # application's path, or a 404 when it climbs above the root)
        "/files/../../secret.txt",
        "/files/../files/.env",
        "/files/docs/%2e%2e/logs/error.log",
        "/files/%2e%2e/%2e%2e/secret.txt",
        "/files/%2E%2E%2F%2E%2E%2Fsecret.txt",
        # double-encoded, backslash
        "/files/%252e%252e/%252e%252e/secret.txt",
        "/files/%252e%252e%252fsecret.txt",
        "/files/..%5c..%5csecret.txt",
        "/files/%5c..%5csecret.txt",
        # symlinks leading out of the folder
        "/files/outside.txt",
        "/files/up/secret.txt",
        # hidden and configuration files, engine sources, the log folder
        "/files/.env",
        "/files/.git/config",
        "/files/%2egit/config",
        "/files/corral.toml",
        "/files/web.config",
        "/files/WEB.CONFIG",
        "/files/web.config.",
        "/files/__pycache__/x.cpython-311.pyc",
        "/files/helper.py",
        "/files/HELPER.PY",
        "/files/logs/error.log",
        "/files/LOGS/error.log",
        "/files/logs/",
        # NUL and bytes that are no file name
        "/files/hello.txt%00.html",
        "/files/%ff",
    ],
)
def test_nothing_outside_or_hidden_is_ever_served(server: CorralServer, target: str) -> None:
    response = get(server.port, target)
    assert SECRET not in response.body, (target, response.status)
    if response.status == 200:
        # Only the application may answer 200 (a path outside files/ after dot removal).
        assert response.body.startswith(b"shop "), (target, response.body[:100])
    elif "%00" in target:
        # A NUL byte is no file name: a bad request (400), like any malformed target.
        assert response.status == 400, (target, response.status)
    else:
        # The rule: refused as missing or forbidden, never a hint of what exists.
        assert response.status in (403, 404), (target, response.status)
    head = get(server.port, target, method="HEAD")
    assert head.status == response.status


# -- large files -------------------------------------------------------------------------------


def test_a_large_file_is_streamed_whole(server: CorralServer) -> None:
    assert server.site is not None
    expected = hashlib.sha256((server.site / "files" / "big.bin").read_bytes()).hexdigest()
    response = get(server.port, "/files/big.bin")
    assert response.status == 200
    assert len(response.body) == BIG
    assert hashlib.sha256(response.body).hexdigest() == expected
    tail = get(server.port, "/files/big.bin", f"Range: bytes={BIG - 100_000}-\r\n")
    assert tail.body == response.body[-100_000:]


def test_a_client_that_stops_reading_costs_no_memory_and_blocks_no_one(
    server: CorralServer,
) -> None:
    assert server.proc is not None
    host = psutil.Process(server.proc.pid)
    get(server.port, "/files/hello.txt")
    before = host.memory_info().rss
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        for _ in range(3):  # three downloads pipelined, none read yet
            slow.sendall(b"GET /files/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(1.0)
        # Meanwhile other clients are answered.
        started = time.monotonic()
        assert get(server.port, "/files/hello.txt").status == 200
        assert time.monotonic() - started < 5.0
        grown = host.memory_info().rss - before
        # The socket buffers hold what was sent; the host holds about one piece in its transport
        # buffer (256 KiB) per connection, nowhere near the 72 MiB asked for.
        assert grown < 8 * 1024 * 1024, grown
        # Reading now gets every byte of the three responses, intact.
        slow.settimeout(WAIT)
        received = 0
        deadline = time.monotonic() + 60
        while received < 3 * BIG and time.monotonic() < deadline:
            data = slow.recv(1 << 20)
            if not data:
                break
            received += len(data)
        assert received > 3 * BIG  # three bodies and their heads
    finally:
        slow.close()


def test_files_are_closed_after_every_kind_of_answer(server: CorralServer) -> None:
    assert server.proc is not None
    host = psutil.Process(server.proc.pid)
    get(server.port, "/files/hello.txt")
    before = host.num_fds()
    for _ in range(10):
        get(server.port, "/files/hello.txt")
        get(server.port, "/files/hello.txt", "Range: bytes=1-2\r\n")
        get(server.port, "/files/hello.txt", method="HEAD")
        # A download the client abandons midway.
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as gone:
            gone.sendall(b"GET /files/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            gone.recv(65536)
    deadline = time.monotonic() + WAIT
    while host.num_fds() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host.num_fds() <= before
