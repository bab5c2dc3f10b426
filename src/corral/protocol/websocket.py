"""Sans-IO WebSocket (RFC 6455): the opening handshake's checks and the framing, both roles.

Stdlib only (the worker imports it inside the application's interpreter). Bytes in, events out;
calls in, bytes out; no sockets, no clock.

Handshake: :func:`check_request` validates an Upgrade request's fields (method, ``Upgrade``,
``Connection``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``) and returns the
``Sec-WebSocket-Accept`` value, or raises :class:`HandshakeError` with the HTTP status to answer
(400, or 426 with ``Sec-WebSocket-Version: 13`` for another version).

Framing: :class:`WebSocketConnection` (``SERVER`` or ``CLIENT``).

- ``receive_data(bytes)`` (``b""`` = the transport ended), then ``next_event()`` until it returns
  ``NEED_DATA`` (or ``CLOSED`` once the transport ended). Events: :class:`TextMessage`,
  :class:`BytesMessage` (whole messages: fragments are reassembled), :class:`Ping`,
  :class:`Pong`, :class:`CloseReceived`.
- Bad input raises :class:`WebSocketProtocolError` whose ``code`` is the close code to send
  (1002 protocol error, 1007 invalid UTF-8, 1009 message too big); the caller sends
  ``fail(exc)``'s bytes and closes. Every later ``next_event`` raises the same error.
- ``send_text``, ``send_bytes``, ``ping``, ``pong``, ``close`` return the bytes to write.
  A server's frames are unmasked, a client's masked (RFC 6455 5.1).

Rules enforced on what the peer sends: the mask bit (set from a client, clear from a server), no
RSV bits (no extension is negotiated), known opcodes only, control frames unfragmented and at
most 125 bytes, continuation frames only inside a fragmented message and data frames never
inside one, the 64-bit length's top bit clear, text (whole messages and close reasons) valid
UTF-8 (checked incrementally, so a bad fragment fails before the message ends), close codes
that may appear on the wire, and ``max_message_size`` checked from each frame's header before
its payload is buffered. After a close frame from the peer, anything else it sends is an error.

Close handshake: ``close()`` sends our close frame once; a :class:`CloseReceived` event tells
the caller to answer with ``close(event.code)`` (unless it already sent one). ``closed`` is true
once both close frames have passed.
"""

from __future__ import annotations

import base64
import codecs
import enum
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLIENT",
    "CLOSED",
    "NEED_DATA",
    "SERVER",
    "BytesMessage",
    "CloseCode",
    "CloseReceived",
    "HandshakeError",
    "Ping",
    "Pong",
    "Role",
    "TextMessage",
    "WebSocketConnection",
    "WebSocketError",
    "WebSocketProtocolError",
    "accept_key",
    "check_request",
]

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The one protocol version RFC 6455 defines.
VERSION: Final = "13"
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: a close frame without a code
    ABNORMAL = 1006  # never on the wire: the connection ended without a close frame
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


#: Codes below 3000 that a close frame may carry (IANA registry); 3000-4999 are always allowed.
_WIRE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


class WebSocketError(Exception):
    """Root of this module's errors."""


class HandshakeError(WebSocketError):
    """The Upgrade request is not a valid WebSocket opening handshake."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WebSocketProtocolError(WebSocketError):
    """The peer broke RFC 6455 (or a limit): send a close frame with ``code`` and end."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


# ------------------------------------------------------------------------------------ handshake


def accept_key(key: str | bytes) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw.strip() + GUID).digest()).decode("ascii")


def _tokens(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def check_request(
    method: str, upgrade: str | None, connection: str | None, key: str | None, version: str | None
) -> str:
    """Validate an opening handshake (RFC 6455 4.2.1); return ``Sec-WebSocket-Accept``.

    Raises HandshakeError: 400 for a malformed request, 426 for an unsupported version (the
    answer must then carry ``Sec-WebSocket-Version: 13``).
    """
    if method != "GET":
        raise HandshakeError(400, f"a WebSocket handshake must be a GET, not {method}")
    if upgrade is None or "websocket" not in _tokens(upgrade):
        raise HandshakeError(400, "the Upgrade header does not name websocket")
    if connection is None or "upgrade" not in _tokens(connection):
        raise HandshakeError(400, "the Connection header does not hold 'upgrade'")
    if version is None or version.strip() != VERSION:
        raise HandshakeError(426, f"unsupported Sec-WebSocket-Version {version!r} (need 13)")
    if key is None:
        raise HandshakeError(400, "no Sec-WebSocket-Key")
    try:
        decoded = base64.b64decode(key.strip().encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    return accept_key(key)


# ------------------------------------------------------------------------------------ events


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``next_event()``: feed more bytes.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: ``next_event()``: the transport ended (``receive_data(b"")``) and every event was delivered.
CLOSED: Final = _Sentinel("CLOSED")


@dataclass(frozen=True, slots=True)
class TextMessage:
    data: str


@dataclass(frozen=True, slots=True)
class BytesMessage:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame: ``code`` is 1005 when it carried none."""

    code: int
    reason: str


Event = TextMessage | BytesMessage | Ping | Pong | CloseReceived


# ------------------------------------------------------------------------------------ framing


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


SERVER: Final = Role.SERVER
CLIENT: Final = Role.CLIENT

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPS: Final = frozenset({OP_TEXT, OP_BINARY})
_CONTROL_OPS: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})

_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (masking and unmasking are the same)."""
    size = len(data)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(size, "little")


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame. ``mask``: the 4-byte masking key (a client's frames), None for a server's."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        head = bytes((first, mask_bit | 126)) + _U16.pack(size)
    else:
        head = bytes((first, mask_bit | 127)) + _U64.pack(size)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def _random_mask() -> bytes:
    return os.urandom(4)


class WebSocketConnection:
    """One side of a WebSocket after the opening handshake (see the module docstring)."""

    def __init__(
        self,
        role: Role = SERVER,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        mask_source: Callable[[], bytes] | None = None,
    ) -> None:
        """``mask_source``: a callable returning 4 bytes (a client's masking keys; default
        ``os.urandom``), for tests that want fixed keys."""
        if max_message_size < 125:
            raise ValueError("max_message_size must be at least 125 bytes")
        self.role = role
        self.max_message_size = max_message_size
        self._mask_source: Callable[[], bytes] = mask_source or _random_mask
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._error: WebSocketProtocolError | None = None
        # The fragmented message being assembled: its opcode (None: none), parts, size.
        self._msg_op: int | None = None
        self._parts: list[bytes] = []
        self._msg_size = 0
        self._text: codecs.IncrementalDecoder | None = None
        self._text_parts: list[str] = []
        self.close_sent = False
        self.close_received = False

    @property
    def closed(self) -> bool:
        """Both close frames have passed: the closing handshake is complete."""
        return self.close_sent and self.close_received

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; ``b""`` means the transport ended."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise WebSocketError("data received after the end of the transport")
        self._buf += data

    def next_event(self) -> Event | _Sentinel:
        if self._error is not None:
            raise self._error
        try:
            while True:
                event = self._next_frame()
                if event is not None:
                    return event
        except WebSocketProtocolError as exc:
            self._error = exc
            raise

    def _next_frame(self) -> Event | _Sentinel | None:
        """The next event, a sentinel, or None when a frame was consumed without one."""
        buf = self._buf
        base = self._pos
        size = len(buf) - base
        if size < 2:
            return self._more()
        first, second = buf[base], buf[base + 1]
        fin = first & 0x80
        if first & 0x70:
            raise WebSocketProtocolError(
                CloseCode.PROTOCOL_ERROR, "reserved bits set (no extension agreed)"
            )
        opcode = first & 0x0F
        masked = second & 0x80
        if bool(masked) != (self.role is SERVER):
            raise WebSocketProtocolError(
                CloseCode.PROTOCOL_ERROR,
                "unmasked frame from a client"
                if self.role is SERVER
                else "masked frame from a server",
            )
        length = second & 0x7F
        pos = 2
        if length == 126:
            if size < 4:
                return self._more()
            length = _U16.unpack_from(buf, base + 2)[0]
            pos = 4
        elif length == 127:
            if size < 10:
                return self._more()
            length = _U64.unpack_from(buf, base + 2)[0]
            if length >> 63:
                raise WebSocketProtocolError(
                    CloseCode.PROTOCOL_ERROR, "frame length with its top bit set"
                )
            pos = 10
        if opcode in _CONTROL_OPS:
            if not fin:
                raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise WebSocketProtocolError(
                    CloseCode.PROTOCOL_ERROR, "control frame longer than 125 bytes"
                )
        elif opcode in _DATA_OPS:
            if self._msg_op is not None:
                raise WebSocketProtocolError(
                    CloseCode.PROTOCOL_ERROR, "new data frame inside a fragmented message"
                )
        elif opcode == OP_CONTINUATION:
            if self._msg_op is None:
                raise WebSocketProtocolError(
                    CloseCode.PROTOCOL_ERROR, "continuation frame with no message"
                )
        else:
            raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if self.close_received:
            raise WebSocketProtocolError(
                CloseCode.PROTOCOL_ERROR, "frame after the peer's close frame"
            )
        if opcode not in _CONTROL_OPS and self._msg_size + length > self.max_message_size:
            raise WebSocketProtocolError(
                CloseCode.MESSAGE_TOO_BIG, f"message longer than {self.max_message_size} bytes"
            )
        mask = b""
        if masked:
            if size < pos + 4:
                return self._more()
            mask = bytes(buf[base + pos : base + pos + 4])
            pos += 4
        end = pos + length
        if size < end:
            return self._more()
        view = memoryview(buf)[base + pos : base + end]
        payload = apply_mask(view, mask) if masked else bytes(view)
        view.release()
        self._consume(base + end)
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            return self._on_close(payload)
        return self._on_data(opcode, bool(fin), payload)

    def _consume(self, upto: int) -> None:
        buf = self._buf
        if upto >= len(buf):
            buf.clear()
            self._pos = 0
        elif upto > 65536 and upto * 2 > len(buf):
            del buf[:upto]
            self._pos = 0
        else:
            self._pos = upto

    def _more(self) -> _Sentinel:
        """Not a whole frame yet: NEED_DATA, or CLOSED when the transport has ended (an end
        inside a frame is an abnormal closure, 1006, like an end between frames without a
        close handshake: the caller tells them apart with ``closed``)."""
        if not self._eof:
            return NEED_DATA
        self._buf.clear()
        self._pos = 0
        return CLOSED

    def _on_close(self, payload: bytes) -> CloseReceived:
        if len(payload) == 1:
            raise WebSocketProtocolError(
                CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload"
            )
        code = int(CloseCode.NO_STATUS)
        reason = ""
        if payload:
            code = _U16.unpack_from(payload)[0]
            if not valid_close_code(code):
                raise WebSocketProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketProtocolError(
                    CloseCode.INVALID_DATA, "close reason is not UTF-8"
                ) from None
        self.close_received = True
        return CloseReceived(code, reason)

    def _on_data(self, opcode: int, fin: bool, payload: bytes) -> Event | None:
        if opcode != OP_CONTINUATION:
            self._msg_op = opcode
            if opcode == OP_TEXT:
                self._text = codecs.getincrementaldecoder("utf-8")()
        op = self._msg_op
        self._msg_size += len(payload)
        if op == OP_TEXT:
            decoder = self._text
            assert decoder is not None
            try:
                self._text_parts.append(decoder.decode(payload, final=fin))
            except UnicodeDecodeError:
                raise WebSocketProtocolError(
                    CloseCode.INVALID_DATA, "text message is not UTF-8"
                ) from None
        else:
            self._parts.append(payload)
        if not fin:
            return None
        self._msg_op = None
        self._msg_size = 0
        if op == OP_TEXT:
            text = "".join(self._text_parts)
            self._text_parts = []
            self._text = None
            return TextMessage(text)
        parts = self._parts
        self._parts = []
        return BytesMessage(parts[0] if len(parts) == 1 else b"".join(parts))

    # -- sending ---------------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes, fin: bool = True) -> bytes:
        mask = self._mask_source() if self.role is CLIENT else None
        return encode_frame(opcode, payload, fin=fin, mask=mask)

    def _check_open(self) -> None:
        if self.close_sent:
            raise WebSocketError("cannot send after our close frame")

    def send_text(self, text: str) -> bytes:
        self._check_open()
        return self._frame(OP_TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        self._check_open()
        return self._frame(OP_BINARY, bytes(data))

    def send_fragments(self, parts: list[bytes], *, text: bool = False) -> bytes:
        """One message in several frames (a first frame, continuations, the last with FIN)."""
        self._check_open()
        if not parts:
            parts = [b""]
        out = []
        for index, part in enumerate(parts):
            opcode = (OP_TEXT if text else OP_BINARY) if index == 0 else OP_CONTINUATION
            out.append(self._frame(opcode, part, fin=index == len(parts) - 1))
        return b"".join(out)

    def ping(self, payload: bytes = b"") -> bytes:
        self._check_open()
        if len(payload) > 125:
            raise ValueError("a ping payload holds at most 125 bytes")
        return self._frame(OP_PING, payload)

    def pong(self, payload: bytes = b"") -> bytes:
        """The answer to a Ping (same payload). Empty after our close frame."""
        if self.close_sent:
            return b""
        return self._frame(OP_PONG, payload[:125])

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Our close frame (once; ``b""`` if already sent). 1005 sends a frame without a code."""
        if self.close_sent:
            return b""
        self.close_sent = True
        if code == CloseCode.NO_STATUS:
            return self._frame(OP_CLOSE, b"")
        if not valid_close_code(code):
            code = CloseCode.INTERNAL_ERROR if code != CloseCode.ABNORMAL else CloseCode.GOING_AWAY
        data = reason.encode("utf-8")
        if len(data) > 123:  # cut at a character boundary
            data = data[:123].decode("utf-8", "ignore").encode("utf-8")
        return self._frame(OP_CLOSE, _U16.pack(code) + data)

    def fail(self, error: WebSocketProtocolError) -> bytes:
        """The close frame answering a protocol error (``b""`` if ours was already sent)."""
        return self.close(error.code, error.reason[:100])
