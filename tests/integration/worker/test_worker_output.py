"""The worker's zero-copy output path, against a socket that accepts only part of each write
(a blocking socket does that when a signal interrupts it)."""

from __future__ import annotations

import os
import socket

from corral.protocol.fastcgi import CLIENT, NEED_DATA, FastCGIConnection
from corral.protocol.fastcgi.events import BeginRequest, Stdout
from corral.worker import wsgi
from corral.worker.server import Connection, ServeState


class StingySocket:
    """Takes at most ``limit`` bytes per sendmsg/sendall call."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self.calls = 0

    def sendmsg(self, buffers: list[bytes | memoryview]) -> int:
        self.calls += 1
        room = self.limit
        for buf in buffers:
            chunk = bytes(buf[:room])
            self.out += chunk
            room -= len(chunk)
            if not room:
                break
        return self.limit - room

    def sendall(self, data: bytes) -> None:
        self.out += data


def test_large_blocks_survive_partial_sends() -> None:
    stingy = StingySocket(limit=10_007)
    conn = Connection(stingy, ServeState(lambda e, s: [], 1, False))  # type: ignore[arg-type]
    # Start a request on both ends so that the codec lets STDOUT through.
    client = FastCGIConnection(CLIENT)
    conn.fcgi.receive_data(client.send(BeginRequest(1, keep_conn=True)))
    conn.fcgi.next_event()
    conn.rid = 1
    body = os.urandom(300_001)
    conn.send_stdout([body])
    assert stingy.calls > 20
    client.receive_data(bytes(stingy.out))
    received = bytearray()
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Stdout)
        received += event.data
    assert bytes(received) == body


def test_a_broken_connection_is_a_client_disconnect() -> None:
    left, right = socket.socketpair()
    right.close()
    conn = Connection(left, ServeState(lambda e, s: [], 1, False))
    conn.fcgi.receive_data(FastCGIConnection(CLIENT).send(BeginRequest(1)))
    conn.fcgi.next_event()
    conn.rid = 1
    try:
        conn.send_stdout([b"x" * 300_000])
    except wsgi.ClientDisconnected:
        pass
    else:
        raise AssertionError("sending to a closed peer must raise ClientDisconnected")
    assert conn.gone and conn.aborted
    left.close()


def test_a_head_and_a_large_body_leave_as_separate_records_in_order() -> None:
    """Large output is framed piece by piece (the body is never joined to the head): the head
    is a record of its own, the body follows whole, through partial sends."""
    stingy = StingySocket(limit=70_001)
    conn = Connection(stingy, ServeState(lambda e, s: [], 1, False))  # type: ignore[arg-type]
    client = FastCGIConnection(CLIENT)
    conn.fcgi.receive_data(client.send(BeginRequest(1, keep_conn=True)))
    conn.fcgi.next_event()
    conn.rid = 1
    head = b"Status: 200 OK\r\nContent-Length: 300003\r\n\r\n"
    body = os.urandom(300_003)
    conn.send_stdout([head, body, b"tail"])
    client.receive_data(bytes(stingy.out))
    records: list[bytes] = []
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Stdout)
        records.append(event.data)
    assert records[0] == head
    assert b"".join(records) == head + body + b"tail"
    assert records[-1] == b"tail"


def test_small_output_is_one_record() -> None:
    stingy = StingySocket(limit=1 << 20)
    conn = Connection(stingy, ServeState(lambda e, s: [], 1, False))  # type: ignore[arg-type]
    client = FastCGIConnection(CLIENT)
    conn.fcgi.receive_data(client.send(BeginRequest(1, keep_conn=True)))
    conn.fcgi.next_event()
    conn.rid = 1
    conn.send_stdout([b"Status: 200 OK\r\n\r\n", b"hello"])
    client.receive_data(bytes(stingy.out))
    event = client.next_event()
    assert isinstance(event, Stdout) and event.data == b"Status: 200 OK\r\n\r\nhello"
    assert client.next_event() is NEED_DATA
