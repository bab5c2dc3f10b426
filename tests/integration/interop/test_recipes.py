"""docs/recipes.md, run for real: the nginx and Apache configurations in that file (read out of it,
with only socket paths and ports changed) in front of Corral's Python worker serving a WSGI and an
ASGI app, and nginx proxying WebSockets to `corral serve`.

nginx and Apache run in the foreground with their own config, pid file and logs under a temporary
folder, on a free loopback port, each in a process group this test created; teardown ends exactly
those groups. (As root, Apache's children run as www-data: the Unix sockets they use live in a
folder they can search and are made writable for them, as the recipe says.)
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require_program
from tests.harness import WAIT, serve_asgi
from tests.worker_support import ROOT, Workers, free_port, workers_fixture

RECIPES = ROOT / "docs" / "recipes.md"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def recipe(name: str) -> str:
    """The fenced block that follows ``<!-- recipe: NAME -->`` in docs/recipes.md."""
    text = RECIPES.read_text()
    match = re.search(
        rf"<!-- recipe: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", text, flags=re.S
    )
    assert match, f"no recipe {name!r} in {RECIPES}"
    return match.group(1)


def substitute(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"the recipe no longer contains {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Server:
    port: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@contextlib.contextmanager
def running(argv: list[str], port: int, log_path: Path) -> Iterator[Server]:
    """Run a server in its own process group until its port answers; end that group after."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server = Server(port, log_path)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    pytest.fail(f"{argv[0]} did not start: {err}\n{server.log}")
                time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short folder that other users may search (Apache's children run as www-data)."""
    path = Path(tempfile.mkdtemp(prefix="corral-recipe-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_unix_worker(workers: Workers, path: Path, app: str) -> None:
    workers.start("--bind", f"unix:{path}", "--app", app)
    path.chmod(0o666)  # the web server's user connects to it


NGINX_MAIN = """
daemon off;
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
{site}
}}
"""


def nginx_server(tmp_path: Path, site: str, port: int) -> contextlib.AbstractContextManager[Server]:
    nginx = require_program("nginx", "/usr/sbin/nginx")
    params = Path("/etc/nginx/fastcgi_params")
    assert params.exists(), "nginx's fastcgi_params is missing (Debian's nginx-common ships it)"
    shutil.copy(params, tmp_path / "fastcgi_params")  # `include` is relative to the config
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(tmp=tmp_path, site=site))
    argv = [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
    return running(argv, port, tmp_path / "error.log")


# -------------------------------------------------------------------------------- nginx


def test_nginx_recipe_serves_a_wsgi_app_and_a_mounted_asgi_app(
    tmp_path: Path, workers: Workers, socket_dir: Path
) -> None:
    blog, chat = socket_dir / "blog.sock", socket_dir / "chat.sock"
    start_unix_worker(workers, blog, "worker_apps:application")
    start_unix_worker(workers, chat, "asgi_apps:app")
    port = free_port()
    site = substitute(
        recipe("nginx"),
        {
            "listen 80;": f"listen 127.0.0.1:{port};",
            "/run/corral/blog.sock": str(blog),
            "/run/corral/chat.sock": str(chat),
        },
    )
    with nginx_server(tmp_path, site, port) as nginx:
        # WSGI at the root.
        status, _, body = nginx.request("GET", "/hello")
        assert (status, body) == (200, b"Hello, world!"), nginx.log
        status, _, body = nginx.request("GET", "/environ?q=1")
        environ = json.loads(body)
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/environ")
        assert environ["QUERY_STRING"] == "q=1"
        data = os.urandom(2_000_000)
        for _ in range(3):  # kept-alive upstream connections
            status, _, body = nginx.request("POST", "/input?op=chunks&size=65536", data)
            assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
        # ASGI mounted at /chat.
        status, _, body = nginx.request("GET", "/chat/scope?x=%2F")
        assert status == 200, nginx.log
        scope = json.loads(body)
        assert scope["root_path"] == "/chat"
        assert scope["path"] == "/chat/scope"
        assert scope["query_string"] == "x=%2F"
        status, _, body = nginx.request("POST", "/chat/echo", data)
        assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
        status, _, body = nginx.request("GET", "/chat/stream?n=20&size=100000")
        assert len(body) == 2_000_000


# -------------------------------------------------------------------------------- Apache

APACHE_MAIN = """
ServerRoot "{tmp}"
DefaultRuntimeDir "{tmp}"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile "{tmp}/httpd.pid"
ErrorLog "{tmp}/error.log"
LogLevel warn
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_fcgi_module {modules}/mod_proxy_fcgi.so
{user}
{site}
"""


def test_apache_recipe_serves_apps_over_a_unix_socket_and_tcp(
    tmp_path: Path, workers: Workers, socket_dir: Path
) -> None:
    apache = require_program("apache2", "/usr/sbin/apache2")
    assert APACHE_MODULES.is_dir(), f"no Apache modules at {APACHE_MODULES}"
    blog = socket_dir / "blog.sock"
    start_unix_worker(workers, blog, "worker_apps:application")
    chat_port = free_port()
    workers.start("--bind", f"127.0.0.1:{chat_port}", "--app", "asgi_apps:app")
    port = free_port()
    site = substitute(
        recipe("apache"),
        {
            "<VirtualHost *:80>": f"<VirtualHost 127.0.0.1:{port}>",
            "/run/corral/blog.sock": str(blog),
            "127.0.0.1:9001": f"127.0.0.1:{chat_port}",
        },
    )
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    conf = tmp_path / "httpd.conf"
    conf.write_text(
        APACHE_MAIN.format(tmp=tmp_path, port=port, modules=APACHE_MODULES, user=user, site=site)
    )
    argv = [apache, "-f", str(conf), "-DFOREGROUND"]
    with running(argv, port, tmp_path / "error.log") as httpd:
        # WSGI over a Unix socket, mounted at /blog.
        status, _, body = httpd.request("GET", "/blog/hello")
        assert (status, body) == (200, b"Hello, world!"), httpd.log
        status, _, body = httpd.request("GET", "/blog/environ?x=%2F")
        environ = json.loads(body)
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/blog", "/environ")
        assert environ["QUERY_STRING"] == "x=%2F"
        assert environ["REQUEST_URI"] == "/blog/environ?x=%2F"
        data = os.urandom(2_000_000)
        status, _, body = httpd.request("POST", "/blog/input?op=chunks&size=65536", data)
        assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
        status, _, body = httpd.request("GET", "/blog/big?size=3000000")
        assert (status, len(body)) == (200, 3_000_000)
        status, _, body = httpd.request("GET", "/blog/boom")
        assert status == 500
        # ASGI over TCP, mounted at /chat.
        status, _, body = httpd.request("GET", "/chat/scope")
        assert status == 200, httpd.log
        scope = json.loads(body)
        assert (scope["root_path"], scope["path"]) == ("/chat", "/chat/scope")
        status, _, body = httpd.request("POST", "/chat/echo", data)
        assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
        status, _, body = httpd.request("GET", "/chat/stream?n=10&size=100000")
        assert len(body) == 1_000_000


# -------------------------------------------------------------------------------- WebSocket


def assert_echoes(port: int, text: str) -> None:
    """A WebSocket to the Starlette app's /ws echo, through the proxy on ``port``: a text
    message and a 300 kB binary one come back whole."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT) as ws:
        ws.send(text)
        assert ws.recv(timeout=WAIT) == text
        blob = os.urandom(300_000)
        ws.send(blob)
        assert ws.recv(timeout=WAIT) == blob


def test_nginx_websocket_recipe_reaches_an_asgi_app_under_corral_serve(tmp_path: Path) -> None:
    corral = serve_asgi(tmp_path, "starlette_app:app").start()
    try:
        port = free_port()
        site = substitute(
            recipe("nginx-websocket"),
            {
                "listen 80;": f"listen 127.0.0.1:{port};",
                "proxy_pass http://127.0.0.1:8080;": f"proxy_pass http://127.0.0.1:{corral.port};",
            },
        )
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        with nginx_server(nginx_dir, site, port) as nginx:
            status, _, body = nginx.request("GET", "/hello")
            assert (status, body) == (200, b"Hello, Starlette!"), nginx.log
            assert_echoes(port, "through nginx and corral")
    finally:
        corral.stop()


def test_apache_websocket_recipe_reaches_an_asgi_app_under_corral_serve(tmp_path: Path) -> None:
    apache = require_program("apache2", "/usr/sbin/apache2")
    assert APACHE_MODULES.is_dir(), f"no Apache modules at {APACHE_MODULES}"
    corral = serve_asgi(tmp_path, "starlette_app:app").start()
    try:
        port = free_port()
        site = substitute(
            recipe("apache-websocket"),
            {
                "<VirtualHost *:80>": f"<VirtualHost 127.0.0.1:{port}>",
                '"http://127.0.0.1:8080/"': f'"http://127.0.0.1:{corral.port}/"',
            },
        )
        user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
        main = APACHE_MAIN + f"LoadModule proxy_http_module {APACHE_MODULES}/mod_proxy_http.so\n"
        conf = tmp_path / "httpd.conf"
        conf.write_text(
            main.format(tmp=tmp_path, port=port, modules=APACHE_MODULES, user=user, site=site)
        )
        with running([apache, "-f", str(conf), "-DFOREGROUND"], port, tmp_path / "error.log") as (
            httpd
        ):
            status, _, body = httpd.request("GET", "/hello")
            assert (status, body) == (200, b"Hello, Starlette!"), httpd.log
            assert_echoes(port, "through apache and corral")
    finally:
        corral.stop()
