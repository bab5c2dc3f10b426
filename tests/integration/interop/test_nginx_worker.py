"""Interop: real nginx in front of the worker (``fastcgi_pass unix:...``), as a user would run it.

nginx runs in the foreground with its own prefix, pid file, temp paths and error log under
tmp_path, on a free loopback port; each worker and nginx run in process groups this test
created, and teardown ends exactly those.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require_program
from tests.worker_support import ROOT, Workers, free_port, unix_address, workers_fixture

PARAMS = """
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param HTTPS $https if_not_empty;
"""

CONFIG = """
daemon off;
# One process running as the test's user (a root master would hand requests to "nobody",
# who cannot reach the sockets and temp files under tmp_path).
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 64m;
    upstream apps {{
        server unix:{apps_sock};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            {params}
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_pass unix:{hello_sock};
        }}
        location /apps/ {{
            {params}
            # The application is mounted at /apps: SCRIPT_NAME is its virtual path.
            fastcgi_split_path_info ^(/apps)(/.*)$;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_keep_conn on;
            fastcgi_read_timeout 8s;
            fastcgi_pass apps;
        }}
    }}
}}
"""


@dataclass
class Site:
    port: int
    tmp: Path
    workers: Workers

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    @property
    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


@pytest.fixture
def site(tmp_path: Path, workers: Workers) -> Iterator[Site]:
    nginx = require_program("nginx", "/usr/sbin/nginx")
    hello_sock = unix_address(tmp_path, "hello.sock")
    apps_sock = unix_address(tmp_path, "apps.sock")
    workers.start(
        "--bind",
        f"unix:{hello_sock}",
        cwd=ROOT / "examples" / "hello",
        env={"WSGI_APP": "wsgi.application", "CORRAL_ENGINE": "python.3.x.wsgi"},
    )
    workers.start("--bind", f"unix:{apps_sock}", "--app", "worker_apps:application")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        CONFIG.format(
            tmp=tmp_path, port=port, hello_sock=hello_sock, apps_sock=apps_sock, params=PARAMS
        )
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    log = (
                        (tmp_path / "error.log").read_text()
                        if (tmp_path / "error.log").exists()
                        else ""
                    )
                    pytest.fail(f"nginx did not start: {err}\n{log}")
                time.sleep(0.05)
        yield Site(port, tmp_path, workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def test_example_site_start_page_through_nginx(site: Site) -> None:
    status, headers, body = site.request("GET", "/?from=nginx")
    assert status == 200, site.error_log
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert "Hello from Corral" in page
    assert "python.3.x.wsgi" in page
    assert str((ROOT / "examples" / "hello").resolve()) in page
    assert "from=nginx" in page


def test_head_through_nginx(site: Site) -> None:
    status, headers, body = site.request("HEAD", "/")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 1000


def test_mounted_app_gets_script_name_and_decoded_path_info(site: Site) -> None:
    status, _, body = site.request("GET", "/apps/caf%C3%A9/a%20b?x=%2F")
    assert status == 200, site.error_log
    environ = json.loads(body)
    assert environ["SCRIPT_NAME"] == "/apps"
    # nginx decodes the URI once; the worker passes it on as latin-1 text, never decoding again.
    assert environ["PATH_INFO"] == "/caf\xc3\xa9/a b"
    assert environ["QUERY_STRING"] == "x=%2F"
    assert environ["REQUEST_URI"] == "/apps/caf%C3%A9/a%20b?x=%2F"


def test_post_body_and_kept_alive_upstream_connections(site: Site) -> None:
    body = os.urandom(3_000_000)
    for _ in range(3):  # fastcgi_keep_conn on: the worker serves these on kept connections
        status, _, answer = site.request("POST", "/apps/input?op=chunks&size=65536", body)
        assert status == 200, site.error_log
        result = json.loads(answer)
        assert result["length"] == len(body)
        assert result["sha256"] == hashlib.sha256(body).hexdigest()


def test_large_streamed_response_and_file_through_nginx(site: Site, tmp_path: Path) -> None:
    status, _, body = site.request("GET", "/apps/big?size=5000000")
    assert status == 200
    assert len(body) == 5_000_000
    data = os.urandom(1_000_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    status, _, body = site.request("GET", f"/apps/file?path={path}")
    assert status == 200
    assert body == data


def test_app_error_is_a_500_through_nginx_and_the_worker_survives(site: Site) -> None:
    status, _, body = site.request("GET", "/apps/boom")
    assert status == 500
    assert b"Internal Server Error" in body
    status, _, body = site.request("GET", "/apps/hello")
    assert (status, body) == (200, b"Hello, world!")


def test_concurrent_requests_with_kept_alive_upstream_connections(site: Site) -> None:
    """nginx opens a second connection while the first is busy, then keeps the first idle in
    its cache: the worker's only thread must not stay parked on that idle connection while the
    second one waits (it hands its thread over)."""
    results: list[tuple[int, bytes]] = []

    def fetch() -> None:
        status, _, body = site.request("GET", "/apps/sleep?seconds=0.3")
        results.append((status, body))

    for _ in range(3):
        threads = [threading.Thread(target=fetch) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(results) == 9
    assert all(status == 200 and body.startswith(b"slept") for status, body in results), (
        results,
        site.error_log,
    )
