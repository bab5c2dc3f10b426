"""The admin listener's HTTP/1.1 server: asyncio streams over Corral's sans-IO request parser
(``protocol.http1.parser``) and response-head writer (``protocol.http1.writer``).

Low traffic, but exposed to whatever reaches its address, so every wait is bounded and nothing
it does can hold the event loop or the front: at most ``MAX_CONNECTIONS`` connections (more are
closed at once); small limits on the request head and body (``LIMITS``: 413, 414, 431); a
request must arrive whole within ``REQUEST_TIMEOUT`` of its first byte, and a kept-alive
connection may idle ``IDLE_TIMEOUT`` (then it is closed); a response must be taken by the client
within ``WRITE_TIMEOUT`` (else the connection is dropped); a bad request is answered with its
status and the connection closed. An event stream (``Reply.stream``) is written while the client
reads it: one whose client lets ``STREAM_BACKLOG`` bytes pile up is dropped.

What to answer is the ``Handler``'s business (``ops.adminapp``); this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from corral.protocol.http1.errors import HTTPProtocolError
from corral.protocol.http1.events import (
    NEED_DATA,
    PAUSED,
    Body,
    ConnectionClosed,
    EndOfMessage,
    Request,
)
from corral.protocol.http1.parser import Limits, RequestParser
from corral.protocol.http1.writer import CONTINUE, DateCache, response_head

_log = logging.getLogger("corral.ops.admin")

MAX_CONNECTIONS: Final = 32
LIMITS: Final = Limits(
    max_request_line=4096,
    max_header_bytes=16384,
    max_header_count=64,
    max_header_field=8192,
    max_body_size=16384,
)
REQUEST_TIMEOUT: Final = 10.0
IDLE_TIMEOUT: Final = 30.0
WRITE_TIMEOUT: Final = 10.0
STREAM_BACKLOG: Final = 256 * 1024
_READ: Final = 16384

#: Sent with every response: nothing here may be cached, framed, or sniffed.
_COMMON: Final = (
    (b"Cache-Control", b"no-store"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
)


@dataclass(frozen=True, slots=True)
class AdminRequest:
    head: Request
    body: bytes
    #: The client's address.
    peer: str


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: An endless body (server-sent events): written piece by piece after the head; the
    #: connection closes when it ends.
    stream: AsyncGenerator[bytes, None] | None = None


Handler = Callable[[AdminRequest], Awaitable[Reply]]


class AdminServer:
    """Listens on one address and answers with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._date = DateCache()
        #: Requests answered and connections refused (too many), for tests and the log.
        self.answered = 0
        self.refused = 0

    async def listen(self, host: str, port: int) -> list[tuple[str, int]]:
        self._server = await asyncio.start_server(
            self._connection, host, port, reuse_address=True, limit=_READ
        )
        bound = []
        for sock in self._server.sockets:
            name = sock.getsockname()
            bound.append((str(name[0]), int(name[1])))
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= MAX_CONNECTIONS or task is None:
            self.refused += 1
            writer.transport.abort()
            return
        self._tasks.add(task)
        clean = False
        try:
            await self._serve(reader, writer)
            clean = True
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            _log.exception("admin listener: unexpected error on a connection")
        finally:
            self._tasks.discard(task)
            if clean:  # what was written goes out, then the FIN
                writer.close()
            else:
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = RequestParser(LIMITS)
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if isinstance(peer_info, tuple) else ""
        while True:
            try:
                request = await self._read(reader, writer, parser, peer)
            except HTTPProtocolError as exc:
                await self._send(writer, _error(exc.status_hint, exc.reason), head_only=False)
                return
            if request is None:
                return
            try:
                reply = await self._handler(request)
            except Exception:
                _log.exception("admin listener: %s failed", request.head.path.decode("latin-1"))
                reply = Reply(500, b"internal error\n")
            self.answered += 1
            keep = request.head.keep_alive and reply.stream is None
            await self._send(writer, reply, request.head.method == b"HEAD", keep)
            if reply.stream is not None:
                if request.head.method == b"HEAD":
                    await reply.stream.aclose()
                else:
                    await self._stream(writer, reply.stream)
                return
            if not keep:
                return
            parser.start_next()

    async def _read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: RequestParser,
        peer: str,
    ) -> AdminRequest | None:
        """The next request whole, or None (the client closed, or idled too long)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IDLE_TIMEOUT
        started = False
        head: Request | None = None
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.read(_READ)
                except TimeoutError:
                    if started:
                        raise HTTPProtocolError(408, "request not received in time") from None
                    return None
                if data and not started:
                    started = True
                    deadline = loop.time() + REQUEST_TIMEOUT
                parser.receive_data(data)
            elif isinstance(event, Request):
                head = event
                started = True
                if event.expect_continue:
                    writer.write(CONTINUE)
            elif isinstance(event, Body):
                body += event.data
            elif isinstance(event, EndOfMessage):
                assert head is not None
                return AdminRequest(head, bytes(body), peer)
            elif isinstance(event, ConnectionClosed) or event is PAUSED:
                return None

    async def _send(
        self, writer: asyncio.StreamWriter, reply: Reply, head_only: bool, keep: bool = False
    ) -> None:
        headers = [
            (b"Date", self._date.get(time.time())),
            (b"Content-Type", reply.content_type),
            *_COMMON,
            *reply.headers,
        ]
        if reply.stream is None:
            headers.append((b"Content-Length", b"%d" % len(reply.body)))
        headers.append((b"Connection", b"keep-alive" if keep else b"close"))
        writer.write(response_head(reply.status, None, headers))
        if not head_only and reply.stream is None:
            writer.write(reply.body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _stream(
        self, writer: asyncio.StreamWriter, pieces: AsyncGenerator[bytes, None]
    ) -> None:
        transport = writer.transport
        try:
            async for piece in pieces:
                if transport.is_closing() or transport.get_write_buffer_size() > STREAM_BACKLOG:
                    return
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        finally:
            await pieces.aclose()


def _error(status: int, reason: str) -> Reply:
    return Reply(status, f"{status} {reason}\n".encode())
