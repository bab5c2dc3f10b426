"""PHP end to end: `corral serve` runs the PHP fixture site (tests/fixtures/sites/php-site) with
Debian's php-cgi on fd-0 sockets, and again through a php-fpm this test starts on a loopback port
(engine transport tcp.service). Clients are raw sockets and curl.

What is proved: the CGI variables php-cgi needs (SCRIPT_FILENAME, SCRIPT_NAME, PATH_INFO,
PATH_TRANSLATED, REQUEST_URI, REDIRECT_STATUS, DOCUMENT_ROOT) for `/x.php`, `/x.php/extra/path`
and a folder's index.php; the site's php.ini (PHP_INI -> -c); a form POST, a multipart upload, a
redirect, several Set-Cookie fields, response fields and a status set with header(); PHP's errors
in Corral's log and not on the page; a php-cgi that dies costs its one request a 502;
PHP_FCGI_MAX_REQUESTS recycles the worker before php-cgi quits by itself; the site under a
virtual path; php-fpm on a port and on a Unix socket; and the FastCGI client never splits a
name-value pair across PARAMS records nor pads an empty record (php-fpm resets the connection on
the first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.harness import WAIT, Conn, CorralServer, Response, request

from conftest import require_program
from corral.protocol.fastcgi import records
from ports import port

SITE = Path(__file__).resolve().parents[2] / "fixtures" / "sites" / "php-site"


def php_site(
    root: Path, *, max_requests: int | None = None, error_log_dir: str | None = None
) -> Path:
    """A copy of the PHP fixture site (its real path: PHP reports resolved file names)."""
    site = Path(os.path.realpath(root)) / "php-site"
    shutil.copytree(SITE, site)
    config = site / "web.config"
    text = config.read_text()
    limit = '<add name="PHP_FCGI_MAX_REQUESTS" value="500" />'
    assert limit in text
    if max_requests is not None:
        text = text.replace(limit, limit.replace('"500"', f'"{max_requests}"'))
    if error_log_dir is not None:
        text = text.replace(limit, f'{limit}<add name="ERROR_LOG_DIR" value="{error_log_dir}" />')
    config.write_text(text)
    return site


@contextlib.contextmanager
def serving(site: Path, *args: str) -> Iterator[CorralServer]:
    server = CorralServer(site, args=("--no-access-log", *args))
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


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    binary = require_program("curl")
    return subprocess.run(
        [binary, "--silent", "--show-error", "--max-time", str(WAIT), *args],
        capture_output=True,
        timeout=WAIT + 5,
        check=True,
    )


@pytest.fixture(scope="module")
def php_cgi() -> str:
    return require_program("php-cgi")


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, php_cgi: str
) -> Iterator[tuple[Path, CorralServer]]:
    """One server on the PHP site for the tests that do not disturb its worker."""
    root = php_site(tmp_path_factory.mktemp("php"), error_log_dir="log")
    with serving(root) as server:
        yield root, server


# -- the same checks, for php-cgi and php-fpm -----------------------------------------------------


def check_script_variables(root: Path, server: CorralServer) -> None:
    seen = as_json(get(server, "/env.php/extra/path?x=1&y=%C3%A9", headers="X-Test: yes\r\n"))
    assert seen["SCRIPT_FILENAME"] == f"{root}/env.php"
    assert seen["SCRIPT_NAME"] == "/env.php"
    assert seen["PATH_INFO"] == "/extra/path"
    assert seen["PATH_TRANSLATED"] == f"{root}/extra/path"
    assert seen["PHP_SELF"] == "/env.php/extra/path"
    assert seen["REQUEST_URI"] == "/env.php/extra/path?x=1&y=%C3%A9"
    assert seen["QUERY_STRING"] == "x=1&y=%C3%A9"
    assert seen["DOCUMENT_ROOT"] == str(root)
    assert seen["REDIRECT_STATUS"] == "200"
    assert seen["HTTP_X_TEST"] == "yes"
    assert seen["get"] == {"x": "1", "y": "é"}
    plain = as_json(get(server, "/env.php"))
    assert (plain["SCRIPT_NAME"], plain["PATH_INFO"], plain["PATH_TRANSLATED"]) == (
        "/env.php",
        "",
        None,
    )


def check_default_documents_and_static_files(server: CorralServer) -> None:
    docs = get(server, "/docs/")
    assert (docs.status, docs.body) == (200, b"docs index from php at /docs/index.php\n")
    moved = get(server, "/docs")
    assert moved.status == 301 and moved.header("Location") == "/docs/"
    static_index = get(server, "/static-only/")
    assert (static_index.status, static_index.body) == (200, b"<p>static-only index</p>\n")
    about = get(server, "/about.html")
    assert (about.status, about.body) == (200, b"static page\n")
    # PHP sources are never served as files.
    assert get(server, "/lib/settings.inc").status == 404
    assert get(server, "/docs/index.html").status == 200  # only shadowed as a default document


def check_form_post(server: CorralServer) -> None:
    body = b"name=Zo%C3%AB+Smith&colour%5B%5D=red&colour%5B%5D=blue"
    response = request(
        server.port,
        method="POST",
        path="/form.php?from=form",
        body=body,
        headers="Content-Type: application/x-www-form-urlencoded\r\n",
    )
    assert as_json(response) == {
        "method": "POST",
        "post": {"name": "Zoë Smith", "colour": ["red", "blue"]},
        "get": {"from": "form"},
    }
    form = get(server, "/form.php")
    assert form.status == 200 and b'<form method="post"' in form.body


def check_upload(server: CorralServer, tmp_path: Path) -> None:
    data = os.urandom(300_000) + b"\r\n--not-a-boundary\r\n" + os.urandom(1000)
    upload = tmp_path / "photo.bin"
    upload.write_bytes(data)
    result = curl(
        "-F",
        f"picture=@{upload};filename=holiday photo.bin",
        "-F",
        "caption=at the beach",
        f"http://127.0.0.1:{server.port}/upload.php",
    )
    assert json.loads(result.stdout) == {
        "files": {
            "picture": {
                "name": "holiday photo.bin",
                "size": len(data),
                "error": 0,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        },
        "post": {"caption": "at the beach"},
    }


def check_redirect_cookies_headers_status(server: CorralServer, tmp_path: Path) -> None:
    moved = get(server, "/redirect.php")
    assert moved.status == 302
    assert moved.header("Location") == "/form.php?redirected=1"
    assert moved.body == b"moved\n"
    followed = curl("--location", f"http://127.0.0.1:{server.port}/redirect.php")
    assert b'<form method="post"' in followed.stdout

    cookies = get(server, "/cookies.php", headers="Cookie: old=1\r\n")
    set_cookies = [value for name, value in cookies.headers if name.lower() == "set-cookie"]
    assert set_cookies == [
        "first=one; path=/; HttpOnly",
        "second=two%20words; path=/; SameSite=Lax",
    ]
    assert as_json(cookies) == {"received": {"old": "1"}}
    jar = tmp_path / "cookies.txt"
    url = f"http://127.0.0.1:{server.port}/cookies.php"
    curl("--cookie-jar", str(jar), url)
    again = curl("--cookie", str(jar), url)
    assert json.loads(again.stdout) == {"received": {"first": "one", "second": "two words"}}

    fields = get(server, "/headers.php")
    assert fields.status == 200
    assert fields.header("Content-Type") == "text/plain; charset=utf-8"
    assert fields.header("Cache-Control") == "no-store"
    assert [v for k, v in fields.headers if k.lower() == "x-corral-test"] == ["first", "second"]
    teapot = get(server, "/headers.php?status=418%20I%27m%20a%20teapot")
    assert (teapot.status, teapot.reason, teapot.body) == (418, "I'm a teapot", b"headers\n")
    created = get(server, "/headers.php?code=201")
    assert (created.status, created.body) == (201, b"headers\n")


# -- php-cgi --------------------------------------------------------------------------------------


def test_php_cgi_gets_the_script_variables_and_the_sites_php_ini(
    site: tuple[Path, CorralServer],
) -> None:
    root, server = site
    check_script_variables(root, server)
    seen = as_json(get(server, "/env.php"))
    assert seen["ini"] == f"{root}/php.ini"  # PHP_INI -> php-cgi -c
    assert seen["memory_limit"] == "77M"
    assert seen["max_requests"] == "500"
    assert get(server, "/").body == b"hello from php 500\n"  # "/" -> index.php
    assert get(server, "/php.ini").status == 404  # PHP_INI is never served


def test_php_cgi_default_documents_and_static_files(site: tuple[Path, CorralServer]) -> None:
    check_default_documents_and_static_files(site[1])


def test_php_cgi_form_post(site: tuple[Path, CorralServer]) -> None:
    check_form_post(site[1])


def test_php_cgi_multipart_upload(site: tuple[Path, CorralServer], tmp_path: Path) -> None:
    check_upload(site[1], tmp_path)


def test_php_cgi_redirect_cookies_headers_and_status(
    site: tuple[Path, CorralServer], tmp_path: Path
) -> None:
    check_redirect_cookies_headers_status(site[1], tmp_path)


def test_an_upload_is_never_run_as_php_through_a_made_up_path(php_cgi: str, tmp_path: Path) -> None:
    """/uploads/avatar.jpg/x.php: x.php does not exist, so PHP never sees the request (php-cgi's
    cgi.fix_pathinfo would run avatar.jpg, the longest existing prefix, as a script)."""
    root = php_site(tmp_path)
    (root / "uploads").mkdir()
    (root / "uploads" / "avatar.jpg").write_bytes(b'<?php echo "pwned ", 6 * 7, "\\n";')
    with serving(root) as server:
        for path in ("/uploads/avatar.jpg/x.php", "/uploads/avatar.jpg/x.php/more"):
            response = get(server, path)
            assert response.status == 404 and b"pwned" not in response.body, path
        image = get(server, "/uploads/avatar.jpg")  # still an ordinary static file
        assert image.status == 200 and image.body.startswith(b"<?php")
        assert get(server, "/missing.php").status == 404


def test_php_errors_go_to_the_log_not_the_page(site: tuple[Path, CorralServer]) -> None:
    root, server = site
    marker = f"m{os.getpid()}x{time.monotonic_ns()}"
    response = get(server, f"/error.php?marker={marker}")
    assert (response.status, response.body) == (200, b"logged\n")
    warning = server.wait_log(f"corral-php-warning {marker}")
    logged = server.wait_log(f"corral-php-error-log {marker}")
    # Each line names the application it came from...
    assert "php.project" in warning and "php.project" in logged, server.text()
    # ... and reaches the application's own log file (ERROR_LOG_DIR=log), written off the loop.
    log_file = root / "log" / "default_php.project.log"
    deadline = time.monotonic() + WAIT
    while True:
        text = log_file.read_text() if log_file.exists() else ""
        if f"corral-php-warning {marker}" in text and f"corral-php-error-log {marker}" in text:
            break
        assert time.monotonic() < deadline, f"{log_file}:\n{text}"
        time.sleep(0.05)
    assert "PHP Warning:" in text
    assert get(server, "/log/default_php.project.log").status == 404  # never served


def test_a_php_cgi_that_dies_costs_one_request_a_502(php_cgi: str, tmp_path: Path) -> None:
    with serving(php_site(tmp_path)) as server:
        before = int(get(server, "/pid.php").body)
        crashed = get(server, "/crash.php")
        assert crashed.status == 502
        after = get(server, "/pid.php")
        assert after.status == 200 and int(after.body) != before
        with contextlib.suppress(ProcessLookupError):
            os.kill(before, 0)
            pytest.fail(f"the crashed php-cgi {before} is still running")


def test_php_fcgi_max_requests_recycles_the_worker_before_php_cgi_quits(
    php_cgi: str, tmp_path: Path
) -> None:
    with serving(php_site(tmp_path, max_requests=3), "--max", "1") as server:
        pids = []
        for _ in range(10):
            response = get(server, "/pid.php")
            assert response.status == 200, (response.status, server.text())
            pids.append(int(response.body))
    # Every php-cgi served exactly its three requests (the last one its rest), none failed.
    groups = [pids[i : i + 3] for i in range(0, 10, 3)]
    assert all(len(set(group)) == 1 for group in groups), pids
    assert len({group[0] for group in groups}) == 4, pids


def test_a_php_site_never_serves_what_is_not_a_public_asset(php_cgi: str, tmp_path: Path) -> None:
    """Issue 10, item 5: in a PHP site, another stack's source, backups and editor files, VCS
    folders, configuration, the log folders and symlinks to any of them are 404, and so is a
    file's URL with a trailing slash; the site's pages and browser assets are served."""
    root = php_site(tmp_path, error_log_dir="log")
    config = root / "web.config"
    limit = '<add name="PHP_FCGI_MAX_REQUESTS" value="500" />'
    config.write_text(
        config.read_text().replace(
            limit, limit + '<add name="DEPLOY_LOG" value="deploylogs\\deploy.txt" />'
        )
    )
    secret = b"TOP-SECRET"
    planted = [
        "settings.py",
        "index.php.bak",
        "index.php~",
        "#index.php#",
        "index.php.swp",
        "wp-config.php.orig",
        "composer.lock",
        "config.ini",
        ".env",
        ".htaccess",
        ".git/config",
        "CVS/Entries",
        "log/default_php.project.log",
        "deploylogs/deploy.txt",
        "deploylogs/deploy-earlier.txt",
    ]
    for name in planted:
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(secret)
    (root / "public.txt").symlink_to(root / ".env")
    (root / "assets").symlink_to(root / ".git")
    (root / "static-only" / "app.js").write_bytes(b"console.log(1)")
    with serving(root) as server:
        for name in [*planted, "public.txt", "assets/config", "about.html/", "docs/index.html/"]:
            response = get(server, "/" + name.replace("#", "%23"))
            assert response.status == 404, (name, response.status)
            assert secret not in response.body, name
        assert get(server, "/about.html").body == b"static page\n"
        assert get(server, "/static-only/app.js").body == b"console.log(1)"
        assert get(server, "/").body == b"hello from php 500\n"


def test_a_php_site_under_a_virtual_path(php_cgi: str, tmp_path: Path) -> None:
    """The PHP site as the application at /blog of a server TOML: the script's URL path includes
    the virtual path; its file, DOCUMENT_ROOT and PATH_TRANSLATED are in the site's folder."""
    root = php_site(tmp_path)
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(
        '[sites.main]\nbindings = ["127.0.0.1:8080:"]\n'
        f'[sites.main.apps."/blog"]\nphysical_path = "{root}"\n'
    )
    with serving(server_toml) as server:
        seen = as_json(get(server, "/blog/env.php/extra?x=1"))
        assert seen["SCRIPT_NAME"] == "/blog/env.php"
        assert seen["SCRIPT_FILENAME"] == f"{root}/env.php"
        assert seen["PATH_INFO"] == "/extra"
        assert seen["PATH_TRANSLATED"] == f"{root}/extra"
        assert seen["PHP_SELF"] == "/blog/env.php/extra"
        assert seen["REQUEST_URI"] == "/blog/env.php/extra?x=1"
        assert seen["DOCUMENT_ROOT"] == str(root)
        docs = get(server, "/blog/docs/")
        assert (docs.status, docs.body) == (200, b"docs index from php at /blog/docs/index.php\n")
        assert get(server, "/blog/").body == b"hello from php 500\n"
        assert get(server, "/blog/about.html").body == b"static page\n"
        assert get(server, "/env.php").status == 404  # no site content outside /blog


def test_the_php_example_serves(php_cgi: str, tmp_path: Path) -> None:
    example = Path(os.path.realpath(tmp_path)) / "php"
    shutil.copytree(Path(__file__).resolve().parents[3] / "examples" / "php", example)
    with serving(example) as server:
        page = get(server, "/")
        assert page.status == 200 and b"Hello from PHP" in page.body
        greeted = request(
            server.port,
            method="POST",
            path="/",
            body=b"name=%3Cb%3EAda%3C%2Fb%3E",
            headers="Content-Type: application/x-www-form-urlencoded\r\n",
        )
        assert b"Nice to meet you, &lt;b&gt;Ada&lt;/b&gt;." in greeted.body
        info = get(server, "/info.php/some/path")
        assert b"SCRIPT_NAME = /info.php\nSCRIPT_FILENAME = " + str(example).encode() in info.body
        assert b"PATH_INFO = /some/path\n" in info.body
        assert get(server, "/style.css").status == 200
        assert get(server, "/php.ini").status == 404


# -- php-fpm (tcp.service) ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port leased machine-wide for the rest of this process (see tests/ports.py)."""
    return port()


def wait_listening(address: str | tuple[str, int], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"php-fpm exited with {proc.returncode}")
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with contextlib.suppress(OSError), socket.socket(family) as probe:
            probe.settimeout(1)
            probe.connect(address)
            return
        time.sleep(0.05)
    raise AssertionError("php-fpm did not listen in time")


@contextlib.contextmanager
def running_php_fpm(folder: Path, address: str | tuple[str, int]) -> Iterator[None]:
    """A php-fpm of this test's own listening at `address`, stopped by its pid."""
    # Debian names it by version (php-fpm8.2), in /usr/sbin.
    found = [shutil.which("php-fpm")] + [str(p) for p in sorted(Path("/usr/sbin").glob("php-fpm*"))]
    binary = require_program(next((f for f in found if f), "php-fpm"))
    listen = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
    conf = folder / "php-fpm.conf"
    conf.write_text(
        "[global]\n"
        f"pid = {folder}/php-fpm.pid\n"
        "error_log = /proc/self/fd/2\n"
        "daemonize = no\n"
        "[corral-test]\n"
        f"listen = {listen}\n"
        "pm = static\n"
        "pm.max_children = 2\n"
        "catch_workers_output = yes\n"
        "clear_env = no\n"
    )
    argv = [binary, "--nodaemonize", "--fpm-config", str(conf)]
    if os.geteuid() == 0:
        argv.append("--allow-to-run-as-root")  # CI containers run as root
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_listening(address, proc)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: php-fpm stops its own children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def php_fpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A php-fpm on a free loopback port."""
    port = free_port()
    with running_php_fpm(tmp_path_factory.mktemp("fpm"), ("127.0.0.1", port)):
        yield port


def fpm_site(root: Path, port: int | None, host: str = "127.0.0.1") -> Path:
    """The PHP site with a corral.toml that sends *.php to a running php-fpm instead."""
    site = php_site(root)
    (site / "web.config").unlink()
    lines = [
        "[engines.php-fpm]",
        'display_name = "php-fpm started by the test"',
        'transport = "tcp.service"',
        'protocol = "fastcgi-php"',
        f'host = "{host}"',
        *([] if port is None else [f"port_lower = {port}"]),
        "[apps.php]",
        'engine = "php-fpm"',
        'paths = ["*.php"]',
    ]
    (site / "corral.toml").write_text("\n".join(lines) + "\n")
    return site


@pytest.fixture(scope="module")
def fpm_served(
    tmp_path_factory: pytest.TempPathFactory, php_fpm: int
) -> Iterator[tuple[Path, CorralServer]]:
    root = fpm_site(tmp_path_factory.mktemp("fpm-site"), php_fpm)
    with serving(root) as server:
        yield root, server


def test_php_fpm_serves_the_same_site(
    fpm_served: tuple[Path, CorralServer], tmp_path: Path
) -> None:
    root, server = fpm_served
    check_script_variables(root, server)
    check_default_documents_and_static_files(server)
    check_form_post(server)
    check_upload(server, tmp_path)
    check_redirect_cookies_headers_status(server, tmp_path)


def test_php_fpm_on_a_unix_socket(tmp_path: Path) -> None:
    """php-fpm's usual set-up (Debian: /run/php/php8.2-fpm.sock): host = "unix:/path"."""
    folder = Path(os.path.realpath(tmp_path))
    sock = folder / "fpm.sock"
    with running_php_fpm(folder, str(sock)):
        root = fpm_site(folder, None, host=f"unix:{sock}")
        with serving(root) as server:
            seen = as_json(get(server, "/env.php/x"))
            assert (seen["SCRIPT_FILENAME"], seen["PATH_INFO"]) == (f"{root}/env.php", "/x")
            check_form_post(server)


def big_request(path: str) -> tuple[bytes, dict[str, int]]:
    """A request whose CGI variables exceed one PARAMS record (65535 bytes), within the front's
    default limits (fields of 8000 bytes, a 7000-byte query)."""
    sizes = {f"X-Big-{n}": 7900 for n in range(7)}
    query = "q=" + "v" * 7000
    fields = "".join(f"{name}: {'h' * size}\r\n" for name, size in sizes.items())
    head = f"GET {path}?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{fields}\r\n"
    return head.encode(), {"HTTP_" + n.upper().replace("-", "_"): s for n, s in sizes.items()}


def test_php_fpm_gets_variables_larger_than_one_record(
    fpm_served: tuple[Path, CorralServer],
) -> None:
    _, server = fpm_served
    head, expected = big_request("/sizes.php")
    conn = Conn(server.port)
    try:
        conn.send(head)
        response = conn.response()
    finally:
        conn.close()
    sizes = as_json(response)
    assert sizes["QUERY_STRING"] == 7002
    assert sizes["SCRIPT_NAME"] == len("/sizes.php")
    for name, size in expected.items():
        assert sizes[name] == size, name


# -- the bytes on the wire ------------------------------------------------------------------------


class RecordingResponder:
    """A FastCGI responder of this test's own on a loopback port: records every byte a client
    sends and answers each request with a fixed page."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        data = bytearray()
        with conn:
            conn.settimeout(WAIT)
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
                buffer += chunk
                ended, buffer = self._stdin_ended(buffer)
                if ended:
                    self.received.append(bytes(data))
                    data.clear()
                    body = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nrecorded\n"
                    out = records.encode_stream(6, 1, body, end=True)
                    out += struct.pack("!BBHHBx", 1, 3, 1, 8, 0) + bytes(8)
                    conn.sendall(out)

    @staticmethod
    def _stdin_ended(buffer: bytes) -> tuple[bool, bytes]:
        pos = 0
        while len(buffer) - pos >= 8:
            _, kind, _, length, padding = struct.unpack_from("!BBHHBx", buffer, pos)
            end = pos + 8 + length + padding
            if end > len(buffer):
                break
            pos = end
            if kind == 5 and length == 0:  # the empty STDIN record ends the request
                return True, buffer[pos:]
        return False, buffer[pos:]

    def close(self) -> None:
        self.listener.close()


def parse_records(data: bytes) -> list[tuple[int, bytes, int]]:
    out = []
    pos = 0
    while pos < len(data):
        version, kind, _, length, padding = struct.unpack_from("!BBHHBx", data, pos)
        assert version == 1
        out.append((kind, data[pos + 8 : pos + 8 + length], padding))
        pos += 8 + length + padding
    assert pos == len(data)
    return out


def test_the_php_client_never_splits_a_pair_nor_pads_an_empty_record(tmp_path: Path) -> None:
    responder = RecordingResponder()
    try:
        site = fpm_site(tmp_path, responder.port)
        with serving(site) as server:
            head, expected = big_request("/env.php")
            conn = Conn(server.port)
            try:
                conn.send(head)
                response = conn.response()
            finally:
                conn.close()
            assert (response.status, response.body) == (200, b"recorded\n")
            posted = request(server.port, method="POST", path="/form.php", body=b"a=1")
            assert posted.status == 200
    finally:
        responder.close()
    assert len(responder.received) == 2
    for sent in responder.received:
        parsed = parse_records(sent)
        params = [content for kind, content, _ in parsed if kind == 4]
        assert params[-1] == b"" and all(params[:-1])
        pairs: dict[bytes, bytes] = {}
        for content in params[:-1]:
            # Each record decodes on its own: no pair is cut across two records.
            pairs.update(records.decode_pairs(content))
        assert pairs[b"SCRIPT_FILENAME"] in (
            f"{site}/env.php".encode(),
            f"{site}/form.php".encode(),
        )
        for kind, content, padding in parsed:
            if not content:
                assert padding == 0, f"empty record of type {kind} carries {padding} padding bytes"
    first = parse_records(responder.received[0])
    assert len([1 for kind, content, _ in first if kind == 4 and content]) >= 2
    seen = dict(
        pair
        for kind, content, _ in first
        if kind == 4 and content
        for pair in records.decode_pairs(content)
    )
    for name, size in expected.items():
        assert len(seen[name.encode()]) == size
