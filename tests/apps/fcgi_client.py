"""A minimal FastCGI client over Corral's codec, for the pool's tests: the ``connect`` a test
hands to ``Pool`` (the front has its own, ``corral.backends.fastcgi``)."""

from __future__ import annotations

import asyncio
from typing import Self

from corral.protocol.fastcgi import (
    CLIENT,
    NEED_DATA,
    EndRequest,
    FastCGIConnection,
    Stdout,
)
from corral.supervision.launch import Address
from corral.supervision.probe import open_stream

Params = list[tuple[bytes, bytes]]


def cgi_params(path_info: bytes, *, script_name: bytes = b"", server_port: bytes = b"80") -> Params:
    """The CGI variables of a plain GET, as the front would send them."""
    return [
        (b"REQUEST_METHOD", b"GET"),
        (b"SCRIPT_NAME", script_name),
        (b"PATH_INFO", path_info),
        (b"QUERY_STRING", b""),
        (b"SERVER_NAME", b"localhost"),
        (b"SERVER_PORT", server_port),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"40000"),
    ]


class TestConnection:
    """One kept-alive FastCGI connection; one request at a time."""

    __test__ = False  # not a pytest class

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._closed = False

    @classmethod
    async def open(cls, address: Address) -> Self:
        reader, writer = await open_stream(address)
        return cls(reader, writer)

    @property
    def is_closed(self) -> bool:
        return self._closed or self.writer.is_closing()

    def close(self) -> None:
        self._closed = True
        self.writer.close()

    # What the pool asks of a connection between requests (``PooledUpstream``): this client
    # takes no requests queued behind another.
    closed_by_peer = False
    in_flight = 0

    def follower(self, depth: int, max_running: float) -> None:
        return None

    def withdraw_stuck(self, limit: float) -> int:
        return 0

    def when_drained(self, callback: object) -> None:
        return None

    async def request(self, params: Params, *, keep_conn: bool = True) -> tuple[bytes, bytes]:
        """Send one request without a body; return the CGI response head and body. Raises
        ConnectionError when the worker closes the connection before END_REQUEST."""
        conn = FastCGIConnection(CLIENT)
        self.writer.write(conn.send_request(1, params, keep_conn=keep_conn, stdin=b""))
        stdout = b""
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                data = await self.reader.read(65536)
                if not data:
                    self._closed = True
                    raise ConnectionError("the worker closed the connection mid-request")
                conn.receive_data(data)
            elif isinstance(event, Stdout):
                stdout += event.data
            elif isinstance(event, EndRequest):
                break
        head, _, body = stdout.partition(b"\r\n\r\n")
        if not keep_conn:
            self.close()
        return head, body

    async def get(self, path: str, *, keep_conn: bool = True) -> bytes:
        """Send a GET for ``path``; return the response body. Raises ConnectionError on EOF."""
        _head, body = await self.request(cgi_params(path.encode()), keep_conn=keep_conn)
        return body


async def connect(address: Address) -> TestConnection:
    return await TestConnection.open(address)
