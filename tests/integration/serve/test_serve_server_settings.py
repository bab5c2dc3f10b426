"""The front server's limits and timeouts set in the configuration, end to end: a real `corral
serve` process reading them from a server TOML's `[server]`, a site's corral.toml, or
applicationHost.config's `<heliconZooServer>`; `--set` winning over them; a reload applying a
change; a broken value refused by `corral check` and `corral serve` (file:line: setting); and an
engine's health timing (`probe_interval`...) reaching its pool.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.harness import APP, Conn, CorralServer, make_site, request, run_corral

from ports import port as leased_port

#: A 5000-byte POST, declared: the front answers before any of the body is sent.
BIG_POST = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"


#: The harness's test application (wsgi.py) under Corral's Python engine.
APP_TOML = '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'


def _server_toml(root: Path, server_table: str, *, extra: str = "") -> Path:
    """A server TOML with one site (the harness's test application at "/") and `server_table`
    as its `[server]` table's lines."""
    site = make_site(root)
    (site / "corral.toml").write_text(APP_TOML)
    path = root / "server.toml"
    path.write_text(
        "[server]\n"
        + textwrap.dedent(server_table)
        + extra
        + textwrap.dedent(
            """
            [sites.main]
            bindings = ["127.0.0.1:8080:"]
            [sites.main.apps."/"]
            physical_path = "site"
            """
        )
    )
    return path


def _start(path: Path, *args: str) -> CorralServer:
    return CorralServer(path, args=("--no-access-log", *args)).start()


@pytest.fixture
def servers() -> Iterator[list[CorralServer]]:
    started: list[CorralServer] = []
    yield started
    for server in started:
        server.stop()


def _status_of_big_post(port: int) -> int:
    with Conn(port) as conn:
        conn.send(BIG_POST)
        response = conn.response()
        if response.status == 413:
            assert conn.closed_by_peer()
        return response.status


def _post(port: int, size: int) -> bytes:
    return request(port, "POST", "/echo", b"a" * size).body


def test_server_toml_limits_and_timeouts_reach_the_front(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    path = _server_toml(tmp_path, "max_body_size = 1000\nkeepalive_timeout = 1\n")
    server = _start(path)
    servers.append(server)
    assert _status_of_big_post(server.port) == 413
    # A chunked body is cut as soon as it passes the limit.
    with Conn(server.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.send(b"400\r\n" + b"a" * 1024 + b"\r\n")
        assert conn.response().status == 413
    assert _post(server.port, 1000) == b"a" * 1000
    # keepalive_timeout = 1 (the default is 5): an idle kept-alive connection is closed well
    # before the default would close it.
    with Conn(server.port) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
        assert conn.closed_by_peer(timeout=4.0)
        assert conn.buf == b""


def test_the_command_line_wins_over_the_server_toml(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    path = _server_toml(tmp_path, "max_body_size = 1000\n")
    server = _start(path, "--set", "max_body_size=10000")
    servers.append(server)
    assert _post(server.port, 5000) == b"a" * 5000


def test_a_site_folder_served_alone_reads_server_settings_from_its_corral_toml(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    site = make_site(tmp_path)
    (site / "corral.toml").write_text("[server]\nmax_body_size = 1000\n\n" + APP_TOML)
    server = _start(site)
    servers.append(server)
    assert _status_of_big_post(server.port) == 413
    assert _post(server.port, 1000) == b"a" * 1000


def test_application_host_config_sets_them_and_the_server_toml_wins(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    (tmp_path / "applicationHost.config").write_text(
        textwrap.dedent(
            """\
            <?xml version="1.0" encoding="UTF-8"?>
            <configuration>
              <system.webServer>
                <heliconZooServer maxBodySize="100" maxHeaderCount="5">
                </heliconZooServer>
              </system.webServer>
            </configuration>
            """
        )
    )
    path = _server_toml(
        tmp_path, 'application_host = "applicationHost.config"\nmax_body_size = 1000\n'
    )
    server = _start(path)
    servers.append(server)
    # maxHeaderCount="5" from the XML: six fields are too many.
    fields = "".join(f"X-F{i}: {i}\r\n" for i in range(5))
    with Conn(server.port) as conn:
        conn.send(f"GET /hello HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
        assert conn.response().status == 431
    # maxBodySize="100" from the XML, max_body_size = 1000 from the TOML: the TOML wins.
    assert _post(server.port, 500) == b"a" * 500
    assert _status_of_big_post(server.port) == 413


def test_a_reload_applies_changed_server_settings(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    path = _server_toml(tmp_path, "max_body_size = 1000\n")
    server = _start(path)
    servers.append(server)
    assert _status_of_big_post(server.port) == 413
    path.write_text(path.read_text().replace("max_body_size = 1000", "max_body_size = 100000"))
    server.signal(signal.SIGHUP)
    line = server.wait_log("server settings changed")
    assert "max_body_size 1000 -> 100000" in line
    # A new connection gets the new limit; the application was not restarted for it.
    assert _post(server.port, 5000) == b"a" * 5000
    assert server.wait_log("configuration reloaded")
    assert "1 unchanged" in server.wait_log("configuration reloaded")


def test_a_reload_keeps_what_the_command_line_holds_and_refuses_a_bad_value(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    path = _server_toml(tmp_path, "max_body_size = 1000\nretry_after = 2\n")
    server = _start(path, "--set", "max_body_size=10000")
    servers.append(server)
    path.write_text(
        path.read_text()
        .replace("max_body_size = 1000", "max_body_size = 10")
        .replace("retry_after = 2", "retry_after = 3")
    )
    server.signal(signal.SIGHUP)
    held = server.wait_log("the command line holds them")
    assert "max_body_size (--set max_body_size=10000)" in held
    assert "retry_after 2 -> 3" in server.wait_log("in effect now")
    assert _post(server.port, 5000) == b"a" * 5000  # --set still wins
    # A bad value on reload: every error logged, the running settings stay.
    path.write_text(path.read_text().replace("retry_after = 3", 'retry_after = "soon"'))
    server.signal(signal.SIGHUP)
    error = server.wait_log("the configuration has errors")
    assert error  # the errors follow on the next lines
    assert server.wait_log(f"{path}:3: retry_after: expected a whole number")
    assert _post(server.port, 5000) == b"a" * 5000


@pytest.mark.parametrize(
    ("server_table", "line", "expected"),
    [
        ("header_timeout = -1\n", 3, "header_timeout: must be more than 0, got -1"),
        ('max_body_size = "big"\n', 3, "max_body_size: expected a whole number, got 'big'"),
        ("show_errors_to_loopback = 3\n", 3, "show_errors_to_loopback: expected true/false"),
        ("keepalive = 5\n", 3, "keepalive: unknown server setting"),
    ],
    ids=["negative-timeout", "size-not-a-number", "not-a-boolean", "unknown-key"],
)
def test_a_broken_value_is_refused_by_check_and_by_serve(
    tmp_path: Path, server_table: str, line: int, expected: str
) -> None:
    path = _server_toml(tmp_path, "# the front's limits\n" + server_table)
    check = run_corral("check", str(path))
    assert check.returncode == 1, check.stdout
    assert f"{path}:{line}: {expected}" in check.stderr, check.stderr
    port = leased_port()
    serve = run_corral("serve", str(path), "--listen", f"127.0.0.1:{port}")
    assert serve.returncode == 1, serve.stderr
    assert "nothing started" in serve.stderr.splitlines()[0]
    assert f"{path}:{line}: {expected}" in serve.stderr
    assert "serving" not in serve.stderr + serve.stdout
    with socket.socket() as again:  # nothing listened
        again.bind(("127.0.0.1", port))


def test_a_broken_application_host_attribute_names_its_file_line_and_spelling(
    tmp_path: Path,
) -> None:
    (tmp_path / "applicationHost.config").write_text(
        '<configuration>\n  <system.webServer>\n    <heliconZooServer headerTimeout="soon"/>\n'
        "  </system.webServer>\n</configuration>\n"
    )
    path = _server_toml(tmp_path, 'application_host = "applicationHost.config"\n')
    check = run_corral("check", str(path))
    assert check.returncode == 1
    host = tmp_path / "applicationHost.config"
    assert f"{host}:3: headerTimeout: expected a number, got 'soon'" in check.stderr


def test_check_shows_the_server_settings_that_are_set(tmp_path: Path) -> None:
    path = _server_toml(tmp_path, "max_body_size = 1000\nheader_timeout = 2.5\n")
    check = run_corral("check", str(path))
    assert check.returncode == 0, check.stderr
    assert "  max_body_size = 1000\n" in check.stdout
    assert "  header_timeout = 2.5\n" in check.stdout


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_engines_health_timing_reaches_its_pool(tmp_path: Path) -> None:
    """probe_interval/probe_timeout/health_interval from the engine's TOML: a frozen idle worker
    is found and replaced within seconds (with the defaults it would take 35 s or more)."""
    site = make_site(tmp_path, APP)
    (site / "corral.toml").write_text(
        textwrap.dedent(
            """
            [engines.python]
            min_instances = 1
            max_instances = 1
            health_interval = 0.2
            probe_interval = 0.3
            probe_timeout = 1

            [apps.main]
            engine = "python"
            wsgi_app = "wsgi:application"
            """
        )
    )
    server = CorralServer(site, args=("--no-access-log",)).start()
    try:
        frozen = int(request(server.port, path="/pid").body)
        os.kill(frozen, signal.SIGSTOP)  # alive, but answers nothing any more
        try:
            # Found within 15 s: with the default timing (probe_interval 30 s) it could not be.
            deadline = time.monotonic() + 15.0
            while not _gone(frozen) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _gone(frozen), server.text()
            assert "did not answer the health probe" in server.wait_log("health probe", 1.0)
        finally:
            # Only while it is still the server's own worker (never a reused pid).
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if psutil.Process(frozen).ppid() == server.proc.pid:  # type: ignore[union-attr]
                    os.kill(frozen, signal.SIGKILL)
        assert int(request(server.port, path="/pid").body) != frozen
    finally:
        server.stop()
