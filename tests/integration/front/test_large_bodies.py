"""Large response bodies through a real `corral serve`: the front reads its workers' answers into
a shared read buffer and passes body pieces on as views of it (``backends.readbuffer``). A
client that reads nothing leaves views of that buffer in its transport (and, past
write_buffer_high, the rest on disk or its worker paused); meanwhile other clients' answers
are read: never into a buffer the stalled client's pieces still point into. Every byte of
every answer must be its own."""

from __future__ import annotations

import hashlib
import select
import socket
import threading
import time
from pathlib import Path

import pytest
from tests.harness import Conn, request, serving

SIZE = 4 * 1024 * 1024
APP = f"""
SIZE = {SIZE}
# Two bodies that differ at every byte, so that a piece of one in the other shows.
BODIES = {{
    "/a": bytes(range(256)) * (SIZE // 256),
    "/b": bytes(range(255, -1, -1)) * (SIZE // 256),
}}

def application(environ, start_response):
    body = BODIES.get(environ["PATH_INFO"], b"?")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    # In pieces, as an app streaming a file would: many records per read.
    return [body[i : i + 100_000] for i in range(0, len(body), 100_000)]
"""
DIGEST = {
    "/a": hashlib.sha256(bytes(range(256)) * (SIZE // 256)).hexdigest(),
    "/b": hashlib.sha256(bytes(range(255, -1, -1)) * (SIZE // 256)).hexdigest(),
}


def stalled_read(
    port: int, stuck: threading.Event, go: threading.Event, results: list[object]
) -> None:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        sock.connect(("127.0.0.1", port))
        conn = Conn.__new__(Conn)
        conn.sock, conn.buf = sock, b""
        with conn:
            conn.send(b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
            # The answer has begun to arrive (and fills this socket): it is stuck in the front.
            select.select([sock], [], [], 60)
            stuck.set()
            go.wait(60)  # reads nothing meanwhile
            answer = conn.response()
            results.append((answer.status, hashlib.sha256(answer.body).hexdigest()))
    except Exception as exc:  # reported by the test
        results.append(exc)
    finally:
        stuck.set()


@pytest.mark.parametrize(
    "settings",
    [(), ("--set", "response_spill_max=0")],
    ids=["spilled", "worker-paused"],
)
def test_a_stalled_reader_and_fast_readers_each_get_their_own_bytes(
    tmp_path: Path, settings: tuple[str, ...]
) -> None:
    with serving(tmp_path, "--min", "2", "--max", "2", *settings, app=APP) as server:
        results: list[object] = []
        stuck, go = threading.Event(), threading.Event()
        stalled = threading.Thread(target=stalled_read, args=(server.port, stuck, go, results))
        stalled.start()
        assert stuck.wait(60)
        time.sleep(0.3)  # the front has read on and holds what the client does not take
        with Conn(server.port, timeout=30) as conn:
            for _ in range(4):  # kept alive: the same connection to a worker, read after read
                conn.send(b"GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n")
                answer = conn.response()
                assert answer.status == 200
                assert hashlib.sha256(answer.body).hexdigest() == DIGEST["/b"]
        assert not results  # the stalled client is still stalled
        go.set()
        stalled.join(60)
        assert results == [(200, DIGEST["/a"])], results
        assert request(server.port, path="/a").status == 200
