"""Node.js through `corral serve`: the built-in `nodejs.http` engine runs examples/nodejs
(`node server.js`, Node's standard library only) on a port Corral picks; HTTP requests, an
upload, X-Forwarded-* and WebSocket round trips (the front's tunnel) reach it; Debian's nodejs.
Also a generic engine declared in a server TOML (any command speaking HTTP on %PORT%), and the
example on a private Unix socket (transport "unix").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.conftest import require_program
from tests.harness import WAIT, Conn, CorralServer, request
from tests.wsclient import TEXT, WebSocket

from ports import Lease, engine_ports_toml, lease, ports

__all__ = ["ports"]  # the port-lease fixture

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "nodejs"
BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"


def get(port: int, path: str, host: str = "localhost") -> tuple[int, bytes]:
    response = request(port, path=path, host=host)
    return response.status, response.body


@pytest.fixture(scope="module")
def node_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    """The example site (its web.config as is), mounted by a server TOML that gives the
    nodejs.http engine a port range leased for this module (no other test's backend shares it)."""
    require_program("node", "nodejs")
    folder = tmp_path_factory.mktemp("node")
    shutil.copytree(EXAMPLE, folder / "site")
    with lease() as taken:
        server_toml = folder / "server.toml"
        server_toml.write_text(
            engine_ports_toml(["nodejs.http"], taken)
            + '[sites.main]\nbindings = ["127.0.0.1:0"]\n'
            + '[sites.main.apps."/"]\nphysical_path = "site"\n'
        )
        server = CorralServer(server_toml, args=("--no-access-log",))
        try:
            yield server.start(wait_ready=False)
        finally:
            server.stop()


def test_node_serves_http_with_x_forwarded_fields(node_site: CorralServer) -> None:
    status, body = get(node_site.port, "/")
    assert status == 200
    assert body.startswith(b"Hello from Node.js v")
    status, body = get(node_site.port, "/headers", host="node.example:8443")
    headers = json.loads(body)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == "node.example:8443"
    assert headers["x-forwarded-proto"] == "http"
    assert "connection" not in headers or headers["connection"] == "keep-alive"


def test_an_upload_is_streamed_to_node_whole(node_site: CorralServer) -> None:
    payload = os.urandom(5 * 1024 * 1024 + 7)
    conn = Conn(node_site.port)
    try:
        conn.send(
            b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % len(payload)
        )
        assert conn.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        conn.send(payload)
        response = conn.response()
        assert response.status == 200
        assert json.loads(response.body) == {
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
    finally:
        conn.sock.close()


def test_websocket_round_trips_through_the_front(node_site: CorralServer) -> None:
    ws = WebSocket(node_site.port, "/ws")
    try:
        for n in range(20):
            assert ws.echo(f"message {n} ✓") == f"message {n} ✓"
        big = os.urandom(300_000)
        assert ws.echo(big) == big
    finally:
        closing = ws.close()
    assert closing is not None and closing[0] == 0x8
    # The HTTP side still works next to (and after) the tunnel.
    assert get(node_site.port, "/")[0] == 200


def test_several_websockets_at_once(node_site: CorralServer) -> None:
    sockets = [WebSocket(node_site.port, "/ws") for _ in range(5)]
    try:
        for round_trip in range(3):
            for index, ws in enumerate(sockets):
                ws.send(f"{index}:{round_trip}")
            for index, ws in enumerate(sockets):
                assert ws.receive() == (TEXT, f"{index}:{round_trip}".encode())
    finally:
        for ws in sockets:
            ws.close()


def test_a_killed_node_process_is_started_again(node_site: CorralServer) -> None:
    first = int(get(node_site.port, "/pid")[1])
    os.killpg(first, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while True:
        status, body = get(node_site.port, "/pid")
        if status == 200 and int(body) != first:
            break
        assert time.monotonic() < deadline, node_site.text()
        time.sleep(0.2)


def test_a_generic_http_engine_from_a_server_toml(tmp_path: Path, ports: Lease) -> None:
    """Any command speaking HTTP on %PORT%, declared as an engine in the server file, with a
    port range of its own; mounted at a virtual path."""
    site = tmp_path / "app"
    site.mkdir()
    (site / "corral.toml").write_text('[apps.api]\nengine = "stdlib.http"\n')
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(
        textwrap.dedent(
            f"""\
            [engines."stdlib.http"]
            full_path = {json.dumps(sys.executable)}
            arguments = '{BACKEND} %HOST% %PORT%'
            transport = "tcp"
            protocol = "http"
            port_lower = {ports.low}
            port_upper = {ports.high}
            [engines."stdlib.http".env]
            GREETING = "hello from %APPL_VIRTUAL_PATH%"

            [sites.main]
            bindings = ["127.0.0.1:0"]
            [sites.main.apps."/api"]
            physical_path = "app"
            """
        )
    )
    server = CorralServer(server_toml, args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        status, body = get(server.port, "/api/env/PORT")
        assert status == 200, server.text()
        assert int(body) in ports.ports
        assert get(server.port, "/api/env/GREETING")[1] == b"hello from /api"
        status, body = get(server.port, "/api/some/where")
        assert body.endswith(b" GET /api/some/where")  # the whole path reaches the backend
        assert get(server.port, "/elsewhere")[0] == 404
    finally:
        server.stop()


def test_a_fastcgi_engine_on_a_tcp_port_from_a_server_toml(tmp_path: Path, ports: Lease) -> None:
    """transport tcp with protocol fastcgi: the command listens on %PORT% itself; Corral waits
    for the port, asks FCGI_GET_VALUES, and speaks FastCGI to it."""
    responder = BACKEND.parent / "fcgi_responder.py"
    site = tmp_path / "app"
    site.mkdir()
    (site / "corral.toml").write_text('[apps.legacy]\nengine = "fcgi.tcp"\n')
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(
        textwrap.dedent(
            f"""\
            [engines."fcgi.tcp"]
            full_path = {json.dumps(sys.executable)}
            arguments = '{responder}'
            transport = "tcp"
            protocol = "fastcgi"
            port_lower = {ports.low}
            port_upper = {ports.high}
            [engines."fcgi.tcp".env]
            RESPONDER_LISTEN_ON_PORT = "1"

            [sites.main]
            bindings = ["127.0.0.1:0"]
            [sites.main.apps."/"]
            physical_path = "app"
            """
        )
    )
    server = CorralServer(server_toml, args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        status, body = get(server.port, "/pid")
        assert status == 200, server.text()
        assert body.strip().isdigit()
        line = server.wait_log(r"started worker pid \d+ on 127\.0\.0\.1:\d+")
        assert int(line.rsplit(":", 1)[1].split()[0]) in ports.ports, line
    finally:
        server.stop()


def test_a_browser_websocket_through_corral(node_site: CorralServer) -> None:
    """Headless Chromium loads a page from Node through Corral; its script opens a WebSocket
    (through the front's tunnel) and shows Node's echo in the page."""
    from tests.chromium import Page, run

    url = f"http://127.0.0.1:{node_site.port}/chat.html"
    # The virtual-time budget lets the page's WebSocket exchange finish before the DOM is dumped.
    dom = run(url, "--virtual-time-budget=10000", "--dump-dom").stdout.decode()
    page = Page(dom)
    assert page.title == "WebSocket echo", dom[:500]
    assert "Echoed: hello from the browser" in page.text, dom[:2000]


def test_node_on_a_private_unix_socket(tmp_path: Path) -> None:
    """The example with the nodejs.http engine's transport set to "unix" (issue 10, item 1):
    Node listens on the socket path Corral gives it (SOCKET), in a folder only this user may
    enter; HTTP and WebSocket pass through it, and nothing of Node's listens on TCP."""
    require_program("node", "nodejs")
    shutil.copytree(EXAMPLE, tmp_path / "site")
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(
        '[engines."nodejs.http"]\ntransport = "unix"\n'
        '[sites.main]\nbindings = ["127.0.0.1:0"]\n'
        '[sites.main.apps."/"]\nphysical_path = "site"\n'
    )
    server = CorralServer(server_toml, args=("--no-access-log",))
    server.start(wait_ready=False)
    try:
        status, body = get(server.port, "/")
        assert status == 200, server.text()
        assert body.startswith(b"Hello from Node.js v")
        pid = int(get(server.port, "/pid")[1])
        line = server.wait_log(rf"started worker pid {pid} on /")
        path = line.split(f"started worker pid {pid} on ", 1)[1].split()[0]
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        node = psutil.Process(pid)
        assert path in {c.laddr for c in node.net_connections(kind="unix")}
        assert [c for c in node.net_connections(kind="inet") if c.status == "LISTEN"] == []
        ws = WebSocket(server.port, "/ws")
        try:
            assert ws.echo("over a unix socket") == "over a unix socket"
        finally:
            ws.close()
    finally:
        server.stop()
