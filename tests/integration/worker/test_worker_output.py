"""The worker's zero-copy output path, against a socket that accepts only part of each write
(a blocking socket does that when a signal interrupts it)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.backends.readbuffer import READ_SIZE
from corral.protocol.fastcgi import CLIENT, NEED_DATA, FastCGIConnection
from corral.protocol.fastcgi.events import BeginRequest, Stdout
from corral.worker import server, wsgi
from corral.worker.server import FILE_BLOCK, ZERO_COPY_MIN, Connection, ServeState


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


def _started(sock: StingySocket) -> tuple[Connection, FastCGIConnection]:
    conn = Connection(sock, ServeState(lambda e, s: [], 1, False))  # type: ignore[arg-type]
    client = FastCGIConnection(CLIENT)
    conn.fcgi.receive_data(client.send(BeginRequest(1, keep_conn=True)))
    conn.fcgi.next_event()
    conn.rid = 1
    return conn, client


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(
        st.one_of(
            st.integers(0, 3 * FILE_BLOCK + 9),
            st.sampled_from([FILE_BLOCK, 2 * FILE_BLOCK, FILE_BLOCK - 1, FILE_BLOCK + 1]),
        ),
        min_size=1,
        max_size=5,
    ).filter(lambda sizes: sum(sizes) >= ZERO_COPY_MIN),
    limit=st.one_of(st.just(1 << 22), st.integers(1, 200_000)),
)
def test_large_output_of_any_pieces_arrives_whole_and_in_order(
    sizes: list[int], limit: int
) -> None:
    """Large output (full records sharing one header, a shorter last record per piece, padded
    to 8) decodes to exactly the pieces sent, whatever each sendmsg takes."""
    stingy = StingySocket(limit=limit)
    conn, client = _started(stingy)
    pieces = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
    conn.send_stdout(pieces)
    if limit == 1 << 22:
        assert stingy.calls == 1  # (a socket that takes it all: one system call)
    client.receive_data(bytes(stingy.out))
    received = bytearray()
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Stdout)
        assert 0 < len(event.data) <= FILE_BLOCK
        received += event.data
    assert bytes(received) == b"".join(pieces)


def test_a_1mib_answer_fits_the_fronts_four_reads() -> None:
    """A 1 MiB body with its Content-Length, as the worker frames it (the head's record, the
    body's records, END_REQUEST), fits in four of the front's reads (``READ_SIZE``): no fifth
    read and client write of a few hundred bytes per response."""
    stingy = StingySocket(limit=1 << 22)
    conn, _ = _started(stingy)
    body = bytes(1 << 20)

    def app(environ: object, start_response: Any) -> list[bytes]:
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/1mib", "SCRIPT_NAME": ""}
    status, tail = wsgi.run(app, environ, conn)
    stingy.out += conn.fcgi.send_response(1, tail, app_status=status)
    assert len(body) < len(stingy.out) <= 4 * READ_SIZE


@pytest.mark.parametrize("limit", [1 << 22, 50_001])
def test_more_buffers_than_one_sendmsg_takes_go_out_in_batches(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "IOV_BATCH", 3)
    stingy = StingySocket(limit=limit)
    conn, client = _started(stingy)
    body = os.urandom(5 * FILE_BLOCK + 3)  # 6 records: 13 buffers with the last one's padding
    conn.send_stdout([body])
    assert stingy.calls >= 5
    client.receive_data(bytes(stingy.out))
    received = bytearray()
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Stdout)
        received += event.data
    assert bytes(received) == body
