"""Requests that wait for a worker (the ACQUIRE deadline) through `corral serve`: a client that
half-closes after its request, or pipelines another one behind it, is still answered."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.harness import Conn, serving

#: One worker, no requests queued on its busy connection: a second request waits in the pool.
ONE_WORKER = ("--min", "1", "--max", "1", "--no-access-log", "--set", "pipeline_depth=1")


def test_a_queued_request_is_answered_after_the_client_half_closes(tmp_path: Path) -> None:
    gate = tmp_path / "open"
    with serving(tmp_path, *ONE_WORKER) as server, Conn(server.port) as holder:
        holder.send(f"GET /gate?{gate} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        time.sleep(0.3)  # the only worker is held
        with Conn(server.port) as queued:
            queued.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            time.sleep(0.3)  # it waits for the worker...
            queued.sock.shutdown(socket.SHUT_WR)  # ...and the client has nothing more to send
            time.sleep(0.3)
            gate.touch()
            assert holder.response().status == 200
            response = queued.response()
            assert response.status == 200 and response.body == b"Hello, world!\n"


def test_a_request_pipelined_behind_a_queued_one_is_answered(tmp_path: Path) -> None:
    gate = tmp_path / "open"
    with serving(tmp_path, *ONE_WORKER) as server, Conn(server.port) as holder:
        holder.send(f"GET /gate?{gate} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        time.sleep(0.3)
        with Conn(server.port) as queued:
            queued.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            time.sleep(0.3)  # the first request waits for the worker when the second comes
            queued.send(b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
            time.sleep(0.3)
            gate.touch()
            assert holder.response().status == 200
            first = queued.response()
            assert first.status == 200 and first.body == b"Hello, world!\n"
            second = queued.response()
            assert second.status == 200 and second.body.isdigit()
