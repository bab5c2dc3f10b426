"""A minimal FastCGI client over Corral's codec, for the pool's tests: the ``connect`` a test
hands to ``Pool`` (the front has its own, ``corral.backends.fastcgi``)."""

from __future__ import annotations

import asyncio

from corral.protocol.fastcgi import (
    CLIENT,
    NEED_DATA,
    EndRequest,
    FastCGIConnection,
    Stdout,
)
from corral.supervision.launch import Address
from corral.supervision.probe import open_stream


class TestConnection:
    """One kept-alive FastCGI connection; one request at a time."""

    __test__ = False  # not a pytest class

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed or self.writer.is_closing()

    def close(self) -> None:
        self._closed = True
        self.writer.close()

    async def get(self, path: str, *, keep_conn: bool = True) -> bytes:
        """Send a GET for ``path``; return the response body. Raises ConnectionError on EOF."""
        conn = FastCGIConnection(CLIENT)
        params = [
            (b"REQUEST_METHOD", b"GET"),
            (b"PATH_INFO", path.encode()),
            (b"SCRIPT_NAME", b""),
            (b"QUERY_STRING", b""),
            (b"SERVER_NAME", b"localhost"),
            (b"SERVER_PORT", b"80"),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"REMOTE_ADDR", b"127.0.0.1"),
            (b"REMOTE_PORT", b"40000"),
        ]
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
        _head, _, body = stdout.partition(b"\r\n\r\n")
        if not keep_conn:
            self.close()
        return body


async def connect(address: Address) -> TestConnection:
    reader, writer = await open_stream(address)
    return TestConnection(reader, writer)
