"""One HTTP/2 client connection: the h2 state machine, the stream table, flow control, limits,
deadlines and GOAWAY.

``Http2Connection`` is an ``asyncio.Protocol`` (a ``ClientConnection`` for the server's sweep and
stop). The framing, HPACK and the protocol's state rules are the sans-IO ``h2`` library's; what
to send when, and how much to take in, is decided here:

- Each request stream is an ``Http2Stream`` (``front/h2stream.py``) driving its own
  ``Exchange``; streams run concurrently, at most ``http2_max_streams`` (SETTINGS_MAX_CONCURRENT_
  STREAMS: h2 makes a client that opens more a connection error).
- Receiving: each stream's window is ``http2_stream_window`` and is given back only as its
  exchange takes the body (``Http2Stream.data``); the connection's window (``CONNECTION_WINDOW``)
  is given back as DATA arrives, so that a stream held back never holds the others.
- Sending: a stream's body goes out as the client's windows allow (``room``); streams waiting for
  a window (or for the socket: ``pause_writing``) are ``_blocked`` and pumped again, in turn, when
  a WINDOW_UPDATE or SETTINGS opens room or the socket drains.
- Limits: the request head's limits of HTTP/1.1 (``h2fields``; the whole header list is also
  bounded in h2's HPACK decoder, and a header block spread over CONTINUATION frames by h2's own
  bound of ``CONTINUATION_BACKLOG`` frames: both connection errors), the body's
  ``max_body_size``, and the rapid-reset defence: more than ``http2_max_resets`` streams reset
  by the client within ``RESET_PERIOD`` seconds and the connection is closed with GOAWAY
  ENHANCE_YOUR_CALM. A client that breaks the protocol gets h2's GOAWAY and the connection
  closes; the output held for a client that does not read is capped (``OUTPUT_CAP``).
- Deadlines: per stream (``h2stream.expire``), and the connection's own while it has no
  stream: ``header_timeout`` for the first request, then ``keepalive_timeout`` between requests,
  then a GOAWAY and close.
- A graceful stop (``shutdown``) sends GOAWAY NO_ERROR naming the last stream taken; the streams
  in flight finish, later ones are refused (REFUSED_STREAM, safe to retry), and the connection
  closes once none is left. (The GOAWAY frame is written here, not by h2, whose state machine
  would refuse to send anything after it.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from corral.front.context import FrontContext
from corral.front.h2fields import Refused, request_from_fields
from corral.front.h2stream import Http2Stream, expire
from corral.front.stream import LINGER_BYTES, LINGER_SECONDS
from corral.protocol.http1.parser import Limits

logger = logging.getLogger("corral.front")

#: The connection's receive window: given back as DATA arrives (the streams' windows bound
#: what is held).
CONNECTION_WINDOW = 16 * 1024 * 1024
#: The period over which client resets are counted (``http2_max_resets``).
RESET_PERIOD = 10.0
#: Bytes of output waiting for a client that does not read past which the connection is dropped
#: (stream bodies stop well before it: only a flood of frames h2 answers by itself reaches it).
OUTPUT_CAP = 64 * 1024 * 1024
#: HPACK counts 32 bytes per field beside its name and value.
_HPACK_OVERHEAD = 32


class Http2Connection(asyncio.Protocol):
    """One client connection over HTTP/2 (see the module doc)."""

    def __init__(self, server: FrontContext) -> None:
        self._server = server
        settings = server.settings
        self._limits = Limits(
            max_request_line=settings.max_request_line,
            max_header_bytes=settings.max_header_size,
            max_header_count=settings.max_header_count,
            max_header_field=settings.max_header_field,
            max_body_size=settings.max_body_size,
        )
        self.stream_window = settings.http2_stream_window
        self._max_resets = settings.http2_max_resets
        h2 = self._h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        # The decoder's bound is HTTP/1.1's head size plus HPACK's per-field overhead; the
        # head's own limits are checked per request (h2fields: 431).
        header_list = settings.max_header_size + _HPACK_OVERHEAD * settings.max_header_count
        h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.http2_max_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: header_list,
                SettingCodes.INITIAL_WINDOW_SIZE: self.stream_window,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )
        h2.decoder.max_header_list_size = header_list
        self.streams: dict[int, Http2Stream] = {}
        self._blocked: dict[int, Http2Stream] = {}
        self._transport: asyncio.Transport | None = None
        self._write_paused = False
        self._flush_pending = False
        self.closed = False
        self._stopping = False
        #: Closed, lingering: bytes still to drop before closing, and the timer that closes.
        self._lingering = 0
        self._linger_timer: asyncio.TimerHandle | None = None
        self._conn_unacked = 0
        self._resets = 0
        self._reset_since = 0.0
        self.deadline = 0.0
        self.remote_host = "127.0.0.1"
        self.remote_port = 0
        self.server_port = 0
        self.loopback = False
        self.trusted = False
        self.tls = False
        self.conn_params = b""

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        server = self._server
        transport.set_write_buffer_limits(high=server.settings.write_buffer_high)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote_host, self.remote_port = str(peer[0]), int(peer[1])
        # What the two addresses tell, each worked out once per address (front/peers.py).
        peers = server.peers
        client = peers.client(self.remote_host)
        self.loopback = client.loopback
        self.trusted = client.trusted
        local = peers.local_of(transport)
        self.tls = local.tls
        self.server_port = local.port
        self.conn_params = peers.params(client, self.remote_port, local)
        h2 = self._h2
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()
        self.deadline = server.now + server.header_timeout
        self._reset_since = server.now
        server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._transport = None
        streams = list(self.streams.values())
        self.streams.clear()
        self._blocked.clear()
        for stream in streams:
            stream.cancel(False)
        self._server.connection_closed(self)

    def eof_received(self) -> bool | None:
        return None  # (the client is done: so is the connection)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump_blocked()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            self._lingering -= len(data)  # (read and dropped: see close)
            if self._lingering < 0 and self._transport is not None:
                self._transport.close()
            return
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as exc:
            logger.info("%s:%d: HTTP/2 protocol error: %s", self.remote_host, self.remote_port, exc)
            self._server.stats.protocol_error(400)
            self.flush()  # (h2's GOAWAY)
            self.close()
            return
        try:
            self._dispatch(events)
        except Exception:  # a bug: contain it to this connection
            logger.exception("HTTP/2 event handling failed; dropping the connection")
            self.force_close()
            return
        if self.closed:
            return
        if self._conn_unacked >= CONNECTION_WINDOW >> 1:
            self._h2.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        self.flush()
        if self._stopping and not self.streams:
            self.close()

    # -- events ----------------------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, DataReceived):
                self._on_data(event)
            elif isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, StreamEnded):
                stream = self.streams.get(event.stream_id or 0)
                if stream is not None:
                    stream.data_end()
            elif isinstance(event, StreamReset):
                self._on_reset(event)
            elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
                self._pump_blocked()
            elif isinstance(event, ConnectionTerminated):
                self._stopping = True  # the client's GOAWAY: the streams in flight finish
            if self.closed:
                return

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if self._stopping:
            # After our GOAWAY (or the client's): refused, and safe to send again elsewhere.
            self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        ended = event.stream_ended is not None
        stream = Http2Stream(self, self._server, stream_id)
        self.streams[stream_id] = stream
        request = request_from_fields(event.headers, ended, self._limits)
        if isinstance(request, Refused):
            stream.body_complete = ended
            stream.reject(request.status, request.reason)
            return
        stream.start(request, not ended)

    def _on_data(self, event: DataReceived) -> None:
        flow = event.flow_controlled_length or 0
        self._conn_unacked += flow
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.data(event.data or b"", flow)

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if not event.remote_reset:  # (h2 reset it for a stream error of the client's)
            if stream is not None:
                stream.cancel(True)
            return
        server = self._server
        if server.now - self._reset_since > RESET_PERIOD:
            self._reset_since = server.now
            self._resets = 0
        self._resets += 1
        if stream is not None:
            stream.cancel(True)
        if self._resets > self._max_resets:
            logger.warning(
                "%s:%d: HTTP/2 client reset %d streams within %g s: GOAWAY ENHANCE_YOUR_CALM",
                self.remote_host,
                self.remote_port,
                self._resets,
                RESET_PERIOD,
            )
            server.stats.protocol_error(429)
            self._h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
            self.flush()
            self.close()

    # -- for the streams -------------------------------------------------------------------------

    def room(self, stream_id: int) -> int:
        """How many body bytes the stream may send now (one frame at most)."""
        if self._write_paused:
            return 0
        h2 = self._h2
        try:
            window = h2.local_flow_control_window(stream_id)
        except H2Error:
            return 0
        frame = h2.max_outbound_frame_size
        return window if window < frame else frame

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        try:
            self._h2.send_data(stream_id, data, end_stream=end)
        except H2Error as exc:  # (the stream closed under it: a reset on its way)
            logger.debug("HTTP/2 stream %d: data not sent: %s", stream_id, exc)

    def send_head(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        try:
            self._h2.send_headers(stream_id, fields, end_stream=end)
        except H2Error as exc:
            stream = self.streams.get(stream_id)
            logger.error("HTTP/2 stream %d: response head not sent: %s", stream_id, exc)
            if stream is not None:
                stream.abort()
            return
        self.flush()

    def open_window(self, stream_id: int, size: int) -> None:
        try:
            self._h2.increment_flow_control_window(size, stream_id)
        except H2Error:
            pass  # (the stream is closed: nothing to give back)

    def reset_stream(self, stream: Http2Stream, code: int) -> None:
        try:
            self._h2.reset_stream(stream.stream_id, code)
        except H2Error:
            pass  # (already closed on h2's side)
        self.stream_done(stream)
        self.flush()

    def stream_done(self, stream: Http2Stream) -> None:
        """The stream is over (sent whole, reset either way): forget it."""
        self.streams.pop(stream.stream_id, None)
        self._blocked.pop(stream.stream_id, None)
        if not self.streams:
            server = self._server
            self.deadline = server.now + server.keepalive_timeout
            if self._stopping:
                self.flush()
                self.close()

    def schedule(self, stream: Http2Stream) -> None:
        """The stream has body (or its end) to send: now if the windows allow, else later."""
        if stream.pump():
            self._blocked.pop(stream.stream_id, None)
        else:
            self._blocked[stream.stream_id] = stream
        self.flush()

    def _pump_blocked(self) -> None:
        blocked = self._blocked
        if not blocked or self._write_paused:
            return
        if len(blocked) > 1:  # each round starts with another stream (fairness)
            first = next(iter(blocked))
            blocked[first] = blocked.pop(first)
        for stream in list(blocked.values()):
            if self._write_paused:
                break
            if stream.pump():
                blocked.pop(stream.stream_id, None)
        self.flush()

    def flush(self) -> None:
        """Write what h2 has to send, once the event loop's current round is over: what every
        stream of the connection produced in it leaves in one write (one system call)."""
        if not self._flush_pending and not self.closed:
            self._flush_pending = True
            self._server.loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self._flush_pending = False
        transport = self._transport
        data = self._h2.data_to_send()
        if data and transport is not None and not self.closed:
            transport.write(data)
            if transport.get_write_buffer_size() > OUTPUT_CAP:
                logger.info("%s: HTTP/2 client reads nothing: dropped", self.remote_host)
                self.force_close()

    # -- ClientConnection: the sweep, stopping ---------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self.streams)

    def check_deadline(self, now: float) -> None:
        if self.closed:
            return
        for stream in list(self.streams.values()):
            if now >= stream.deadline and not stream.closed:
                try:
                    expire(stream)
                except Exception:  # a bug: contain it to that one stream
                    logger.exception("HTTP/2 stream deadline handling failed; stream reset")
                    stream.abort()
        if not self.streams and now >= self.deadline:
            self._goaway(ErrorCodes.NO_ERROR)
            self.close()
            return
        self.flush()

    def shutdown(self) -> None:
        self._stopping = True
        self._goaway(ErrorCodes.NO_ERROR)
        if not self.streams:
            self.close()

    def _goaway(self, code: ErrorCodes) -> None:
        """A GOAWAY naming the last stream taken, written past h2 (see the module doc)."""
        transport = self._transport
        if transport is None or self.closed:
            return
        self._write_out()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._h2.highest_inbound_stream_id
        frame.error_code = code
        transport.write(frame.serialize())

    def close(self) -> None:
        """Close after the last frames (a GOAWAY), lingering: the client's writes are read and
        dropped for up to ``LINGER_SECONDS`` / ``LINGER_BYTES`` after our end of output, since
        closing with unread input makes the kernel send a reset, which can destroy the GOAWAY
        before the client reads it (a client being told ENHANCE_YOUR_CALM is still writing)."""
        if self.closed:
            return
        self._write_out()  # (what h2 still has: a GOAWAY, the last frames)
        self.closed = True
        transport = self._transport
        if transport is None:
            return
        if not transport.can_write_eof():  # (TLS: no half-close)
            transport.close()
            return
        transport.write_eof()
        self._lingering = LINGER_BYTES
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def force_close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
