"""Engines with transport ``unix`` through ``corral serve`` (issue 10, item 1): the command
listens itself on a Unix socket at a path Corral gives each worker (SOCKET, ``%SOCKET%``) in the
pool's private runtime directory, so no other local user can reach the backend, and no TCP port
is opened for it. The command is ``tests/apps/http_backend.py`` (stdlib ``http.server``); Node.js
(the bundled example) is in test_nodejs.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import psutil
from tests.harness import CorralServer, request

BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"


def get(port: int, path: str) -> tuple[int, bytes]:
    response = request(port, path=path, host="localhost")
    return response.status, response.body


def listening_tcp(pid: int) -> list[psutil._common.pconn]:
    """The TCP sockets that the process ``pid`` and its descendants listen on."""
    tree = psutil.Process(pid)
    return [
        conn
        for proc in (tree, *tree.children(recursive=True))
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]


def test_an_http_command_on_a_private_unix_socket(tmp_path: Path) -> None:
    site = tmp_path / "app"
    site.mkdir()
    (site / "corral.toml").write_text('[apps.api]\nengine = "stdlib.unix"\n')
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(
        textwrap.dedent(
            f"""\
            [engines."stdlib.unix"]
            full_path = {json.dumps(sys.executable)}
            arguments = '{BACKEND}'
            transport = "unix"
            protocol = "http"
            [engines."stdlib.unix".env]
            SOCKET_AS_ARGUMENT = "%SOCKET%"

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
        status, body = get(server.port, "/api/env/SOCKET")
        assert status == 200, server.text()
        path = body.decode()
        assert get(server.port, "/api/env/SOCKET_AS_ARGUMENT")[1] == body  # %SOCKET% too
        assert get(server.port, "/api/env/PORT")[1] == b""  # no port is given
        status, body = get(server.port, "/api/some/where")
        assert body.endswith(b" GET /api/some/where")
        pid = int(get(server.port, "/api/pid")[1])
        # The socket is a file in a folder only this user may enter, held by the worker.
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        folder = os.stat(os.path.dirname(path))
        assert stat.S_IMODE(folder.st_mode) == 0o700
        assert folder.st_uid == os.getuid()
        unix = psutil.Process(pid).net_connections(kind="unix")
        assert any(conn.laddr == path for conn in unix), unix
        # Nothing of the worker listens on TCP: Corral's only TCP listener is its front.
        assert listening_tcp(pid) == []
        assert server.proc is not None
        assert {conn.laddr.port for conn in listening_tcp(server.proc.pid)} == {server.port}
        server.wait_log(rf"started worker pid {pid} on {path}")
        # A killed worker's socket goes, and its successor gets a socket of its own.
        os.kill(pid, 9)
        for _ in range(100):
            status, body = get(server.port, "/api/pid")
            if status == 200 and int(body) != pid:
                break
        assert status == 200 and int(body) != pid, server.text()
        assert not os.path.exists(path)
        successor = get(server.port, "/api/env/SOCKET")[1].decode()
        assert successor != path and os.path.dirname(successor) == os.path.dirname(path)
    finally:
        server.stop()
