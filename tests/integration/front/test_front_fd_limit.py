"""Out of file descriptors: `corral serve` under a low RLIMIT_NOFILE logs that it cannot accept
(once a second at most), keeps serving the connections it has, and accepts again once some
close."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from tests.conftest import require_program
from tests.harness import Conn, CorralServer, make_site

#: The soft limit of open files for the `corral serve` under test (its workers inherit it).
LIMIT = 96
HELLO = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"


def served(conn: Conn) -> bool:
    try:
        conn.send(HELLO)
        return conn.response().body == b"Hello, world!\n"
    except (OSError, EOFError):
        return False


def test_out_of_file_descriptors_is_logged_and_open_connections_are_served(
    tmp_path: Path,
) -> None:
    prlimit = require_program("prlimit")
    server = CorralServer(
        make_site(tmp_path),
        args=("--min", "1", "--max", "1", "--no-access-log"),
        command=(prlimit, f"--nofile={LIMIT}:", sys.executable, "-m", "corral"),
    )
    server.start()
    conns: list[Conn] = []
    try:
        refused = None
        for _ in range(LIMIT + 20):
            conn = Conn(server.port, timeout=5)
            if not served(conn):
                refused = conn
                break
            conns.append(conn)
        assert refused is not None, "every connection was accepted under the limit"
        refused.close()
        assert len(conns) > 10
        server.wait_log("cannot accept connections: .*Too many open files")
        # The connections already open are still served.
        assert served(conns[0]) and served(conns[-1])
        # Some close: new ones are accepted again.
        for conn in conns[:20]:
            conn.close()
        del conns[:20]
        time.sleep(1.5)
        with Conn(server.port, timeout=5) as fresh:
            assert served(fresh)
        # At most one such line a second.
        lines = [line for line in server.log if "cannot accept connections" in line]
        assert len(lines) <= 5, lines
    finally:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        server.stop()
