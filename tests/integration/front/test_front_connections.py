"""A connection's own facts, end to end through a real `corral serve`, its workers and loopback
sockets (issue 14, "the cost of a connection"): what the front works out once per client
address and once per listener (``front.peers``) still names each connection's own client port,
its listener's address, and follows a reload of ``trusted_proxies`` for an address already
seen.
"""

from __future__ import annotations

import json
import signal
import socket
import textwrap
import time
from pathlib import Path

import pytest
from tests.harness import APP, WAIT, Conn, CorralServer, make_site

#: The harness's test application (wsgi.py) under Corral's Python engine.
APP_TOML = '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'


def _env_over_new_connection(
    port: int, address: str = "127.0.0.1", extra: str = ""
) -> tuple[dict[str, str], int]:
    """GET /env over a connection of its own (``Connection: close``): the environment the app
    saw, and the client's own port."""
    with Conn(port, address=address) as conn:
        client_port = conn.sock.getsockname()[1]
        conn.send(
            f"GET /env HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode("latin-1")
        )
        response = conn.response()
        assert response.status == 200
        assert conn.closed_by_peer()
    return json.loads(response.body), client_port


def _serve(tmp_path: Path, listen: str, address: str = "127.0.0.1") -> CorralServer:
    server = CorralServer(make_site(tmp_path, APP), args=("--no-access-log",), listen=listen)
    server.start(wait_ready=False)
    deadline = time.monotonic() + WAIT
    while True:  # (the harness's own readiness check asks 127.0.0.1)
        with Conn(server.port, address=address) as conn:
            conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            if conn.response().status == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(server.text())
        time.sleep(0.1)


def test_each_connection_has_its_own_remote_port_and_the_listeners_address(
    tmp_path: Path,
) -> None:
    server = _serve(tmp_path, "127.0.0.1:0")
    try:
        seen = set()
        for _ in range(6):
            env, client_port = _env_over_new_connection(server.port)
            assert env["REMOTE_ADDR"] == "127.0.0.1"
            assert env["REMOTE_PORT"] == str(client_port)
            assert env["SERVER_ADDR"] == "127.0.0.1"
            assert "HTTPS" not in env and env.get("REQUEST_SCHEME", "http") == "http"
            seen.add(client_port)
        assert len(seen) == 6
    finally:
        server.stop()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback address on this machine")
def test_an_ipv6_listener_names_ipv6_addresses(tmp_path: Path) -> None:
    server = _serve(tmp_path, "[::1]:0", "::1")
    try:
        for _ in range(3):
            env, client_port = _env_over_new_connection(server.port, "::1")
            assert env["REMOTE_ADDR"] == "::1"
            assert env["REMOTE_PORT"] == str(client_port)
            assert env["SERVER_ADDR"] == "::1"
    finally:
        server.stop()


def _wait_reloads(server: CorralServer, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while server.text().count("configuration reloaded") < count:
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.05)


def test_a_reload_of_trusted_proxies_applies_to_a_client_address_already_seen(
    tmp_path: Path,
) -> None:
    site = make_site(tmp_path, APP)
    (site / "corral.toml").write_text(APP_TOML)
    path = tmp_path / "server.toml"

    def write(server_table: str) -> None:
        path.write_text(
            "[server]\n"
            + server_table
            + textwrap.dedent(
                """
                [sites.main]
                bindings = ["127.0.0.1:8080:"]
                [sites.main.apps."/"]
                physical_path = "site"
                """
            )
        )

    forwarded = "X-Forwarded-For: 203.0.113.9\r\n"
    write("")
    server = CorralServer(path, args=("--no-access-log",)).start()
    try:
        env, client_port = _env_over_new_connection(server.port, extra=forwarded)
        assert env["REMOTE_ADDR"] == "127.0.0.1"  # (not a trusted proxy: the field is dropped)
        assert env["REMOTE_PORT"] == str(client_port)
        write('trusted_proxies = ["127.0.0.1"]\n')
        server.signal(signal.SIGHUP)
        assert "trusted_proxies" in server.wait_log("server settings changed")
        _wait_reloads(server, 1)
        env, _ = _env_over_new_connection(server.port, extra=forwarded)
        assert env["REMOTE_ADDR"] == "203.0.113.9"
        # ... and back: the client is no proxy of trust any more.
        write("")
        server.signal(signal.SIGHUP)
        _wait_reloads(server, 2)
        env, client_port = _env_over_new_connection(server.port, extra=forwarded)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["REMOTE_PORT"] == str(client_port)
    finally:
        server.stop()
