"""A spilled response goes back out with sendfile, from the file straight to the client's
socket, whenever the transport holds nothing; in order with what the transport writes."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from tests.unit.front.prefix_router import PrefixRouter

from corral.front.http1response import Http1Response
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.front.spool import Spill
from corral.protocol.http1.events import Request

pytestmark = pytest.mark.skipif(not hasattr(os, "sendfile"), reason="no os.sendfile here")


class Conn:
    deadline = 0.0
    closed = False
    writing_paused = False
    body_complete = True

    def abort(self) -> None:
        self.closed = True


class Transport:
    """Holds what is written (as a transport whose socket is full), pauses its protocol past
    its high-water mark, and hands out a real socket, as uvloop's do."""

    def __init__(self, conn: Conn, sock: socket.socket, tls: bool = False) -> None:
        self.conn = conn
        self.sock = sock
        self.tls = tls
        self.held: list[bytes] = []
        self.high = 256 * 1024
        self.limits: list[int] = []

    def write(self, data: Any) -> None:
        self.held.append(bytes(data))
        if self.get_write_buffer_size() > self.high:
            self.conn.writing_paused = True

    def writelines(self, pieces: Any) -> None:
        for piece in pieces:
            self.write(piece)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.held))

    def set_write_buffer_limits(self, high: int) -> None:
        self.high = high
        self.limits.append(high)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sslcontext":
            return object() if self.tls else None
        return default

    def is_closing(self) -> bool:
        return False

    def sent(self) -> bytes:
        """What the client gets of what the transport holds, once it has sent it."""
        data = b"".join(self.held)
        self.held.clear()
        self.conn.writing_paused = False
        return data


class Backend:
    paused = False

    def pause_reading(self) -> None:
        self.paused = True


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        out += data


def spilled_response(tls: bool) -> tuple[Http1Response, Conn, Transport, socket.socket, bytes]:
    loop = asyncio.new_event_loop()
    server = FrontServer(PrefixRouter([]), FrontSettings(), loop=loop)
    loop.close()  # (not run: the response does not use it)
    conn = Conn()
    mine, client = socket.socketpair()
    mine.setblocking(False)
    client.setblocking(False)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    transport = Transport(conn, mine, tls)
    response = Http1Response(conn, server)
    response.transport = transport  # type: ignore[assignment]
    response.request = Request(
        b"GET", b"/", b"/", b"", "1.1", [], True, False, None, False, None, b"x"
    )
    response.method = b"GET"
    body = os.urandom(3 * 1024 * 1024 + 17)
    response.head(200, b"OK", [(b"Content-Length", str(len(body)).encode())])
    response.body(body[:300_000])
    response.flush()  # the head and a first piece: the transport is now past its mark
    assert conn.writing_paused
    assert response.spill(Backend())  # type: ignore[arg-type]
    response.body(body[300_000:])
    response.flush()  # the rest waits on disk
    assert isinstance(response.spill_file, Spill)
    return response, conn, transport, client, body


def drain(response: Http1Response, transport: Transport, client: socket.socket) -> bytes:
    """Let the client take everything, turn by turn, as the event loop would."""
    out = bytearray(transport.sent())
    for _ in range(10_000):
        done = response.drain_spill()
        out += read_all(client)  # what sendfile sent comes before what the transport holds
        out += transport.sent()
        if done:
            return bytes(out)
    raise AssertionError("the spill never drained")


def test_a_spill_goes_out_with_sendfile_in_order() -> None:
    response, _conn, transport, client, body = spilled_response(tls=False)
    assert transport.limits == [0]  # the transport says when it holds nothing
    out = drain(response, transport, client)
    assert out.endswith(body) and out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.spill_file is None
    assert transport.limits == [0, response._server.settings.write_buffer_high]
    client.close()
    transport.sock.close()


def test_most_of_a_spill_skips_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the transport is handed is only the pieces that say when the socket has room."""
    response, _conn, transport, client, body = spilled_response(tls=False)
    handed: list[int] = []
    write = transport.write

    def counting(data: Any) -> None:
        handed.append(len(data))
        write(data)

    monkeypatch.setattr(transport, "write", counting)
    out = drain(response, transport, client)
    assert out.endswith(body)
    assert sum(handed) < len(body) // 4
    client.close()
    transport.sock.close()


def test_over_tls_the_spill_is_read_and_written() -> None:
    response, _conn, transport, client, body = spilled_response(tls=True)
    assert transport.limits == []
    out = drain(response, transport, client)
    assert out.endswith(body)
    assert read_all(client) == b""
    client.close()
    transport.sock.close()
