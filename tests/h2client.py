"""A small HTTP/2 client for the tests, with the ``h2`` library over a plain socket (prior
knowledge), that does only what a test tells it: it opens no flow-control window by itself, so
a test can starve a stream, reset streams, or write raw frames."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes, Settings

WAIT = 20.0


@dataclass
class Reply:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None


class H2Client:
    """One HTTP/2 connection to ``127.0.0.1:port``."""

    def __init__(self, port: int, *, window: int | None = None, timeout: float = WAIT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        if window is not None:
            self.conn.local_settings = Settings(
                client=True,
                initial_values={
                    SettingCodes.INITIAL_WINDOW_SIZE: window,
                    SettingCodes.ENABLE_PUSH: 0,
                },
            )
        self.conn.initiate_connection()
        self.replies: dict[int, Reply] = {}
        #: The server's GOAWAY (error code, last stream id), once one came.
        self.goaway: tuple[int, int] | None = None
        self.closed = False
        #: Whether body bytes are given back to the server's windows as they come.
        self.auto_ack = True
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
        authority: str = "localhost",
        end: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"http"),
            (b":authority", authority.encode()),
            *(extra or []),
        ]
        self.conn.send_headers(stream_id, headers, end_stream=end and body is None)
        self.replies[stream_id] = Reply()
        if body is not None:
            self.send_body(stream_id, body, end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        """Send ``body`` as the server's windows allow (reading replies meanwhile)."""
        view = memoryview(body)
        while view:
            room = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if room <= 0:
                self.flush()
                self.read_some()
                continue
            self.conn.send_data(stream_id, bytes(view[:room]))
            view = view[room:]
        if end:
            self.conn.end_stream(stream_id)
        self.flush()

    def read_some(self) -> list[Event]:
        """Read once from the socket; the events (also applied to ``replies``)."""
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            self._apply(event)
        self.flush()
        return events

    def _apply(self, event: Event) -> None:
        if isinstance(event, ResponseReceived) and event.stream_id is not None:
            reply = self.replies.setdefault(event.stream_id, Reply())
            headers = dict(event.headers or [])
            status = int(headers.get(b":status", b"0"))
            if status >= 200:
                reply.status = status
                reply.headers = headers
        elif isinstance(event, DataReceived) and event.stream_id is not None:
            reply = self.replies.setdefault(event.stream_id, Reply())
            reply.body += event.data or b""
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded) and event.stream_id is not None:
            self.replies.setdefault(event.stream_id, Reply()).ended = True
        elif isinstance(event, StreamReset) and event.stream_id is not None:
            self.replies.setdefault(event.stream_id, Reply()).reset = int(event.error_code or 0)
        elif isinstance(event, ConnectionTerminated):
            self.goaway = (int(event.error_code or 0), int(event.last_stream_id or 0))

    def wait(self, stream_id: int) -> Reply:
        """Read until the stream's response ended (or it was reset, or the connection went)."""
        reply = self.replies[stream_id]
        while not (reply.ended or reply.reset is not None or self.closed):
            self.read_some()
        return reply

    def get(self, path: str, **kwargs: object) -> Reply:
        return self.wait(self.request(path, **kwargs))  # type: ignore[arg-type]

    def read_until_closed(self) -> None:
        try:
            while not self.closed:
                self.read_some()
        except (ConnectionResetError, BrokenPipeError):
            self.closed = True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
