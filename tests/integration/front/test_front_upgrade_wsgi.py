"""An Upgrade request to a WSGI application: answered as plain HTTP, with an empty body.

Corral's Python routes may tunnel (an ASGI app can accept a WebSocket), so the front sends an
Upgrade request with its request stream left open until the answer shows whether it is a 101.
A WSGI app cannot switch protocols: it must see an empty body (not wait for the stream's end,
which only comes after its answer) and its answer ends the exchange.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness import Conn, serving


def test_a_wsgi_app_reading_its_body_answers_an_upgrade_request(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-access-log", "--set", "response_timeout=30") as server:
        with Conn(server.port) as conn:
            conn.send(
                b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
                b"Upgrade: websocket\r\n\r\nbytes after the head are not a body"
            )
            response = conn.response()
            assert response.status == 200
            assert response.body == b""  # /echo answers what it read of wsgi.input
            # The bytes after an Upgrade head are not HTTP, so this answer ends the connection
            # and says so (RFC 9112 9.6), even though the client asked for keep-alive.
            assert response.header("connection") == "close"
            assert conn.closed_by_peer()
        # The worker is free again at once.
        with Conn(server.port) as conn:
            conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            assert conn.response().body == b"abc"
