"""A minimal blocking WebSocket client (RFC 6455) for the end-to-end tests: the opening
handshake (checking Sec-WebSocket-Accept), masked text/binary frames out, frames in, close.

Independent of Corral's code and of any WebSocket library, so that it tests the front's tunnel
and the backends' WebSocket code rather than sharing their mistakes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeFailed(AssertionError):
    """The server did not switch protocols (its status line and head are in the message)."""


class WebSocket:
    def __init__(
        self, port: int, path: str, *, host: str = "localhost", timeout: float = 20.0
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        head = self._read_until(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        if not head.startswith(b"HTTP/1.1 101 "):
            self.sock.close()
            raise HandshakeFailed(self.head)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        fields = {
            line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")[1:]
            if b":" in line
        }
        if fields.get(b"sec-websocket-accept") != accept:
            self.sock.close()
            raise HandshakeFailed(f"bad Sec-WebSocket-Accept in {self.head!r}")

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        index = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:index], self.buf[index:]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, payload: bytes | str, opcode: int | None = None) -> None:
        if isinstance(payload, str):
            payload, kind = payload.encode(), TEXT
        else:
            kind = BINARY
        kind = opcode if opcode is not None else kind
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | kind, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | kind, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | kind, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """The next whole message: (opcode, payload). Fragments are joined."""
        parts: list[bytes] = []
        opcode = 0
        while True:
            first, second = self._read_exact(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(8))
            if second & 0x80:
                raise AssertionError("a server frame must not be masked")
            payload = self._read_exact(length)
            kind = first & 0x0F
            if kind >= CLOSE:
                return kind, payload
            if kind:
                opcode = kind
            parts.append(payload)
            if first & 0x80:
                return opcode, b"".join(parts)

    def echo(self, payload: bytes | str) -> bytes | str:
        """Send a message and return the server's answer (of the same type)."""
        self.send(payload)
        opcode, data = self.receive()
        return data.decode() if opcode == TEXT else data

    def close(self, code: int = 1000) -> tuple[int, bytes] | None:
        """Send a close frame and read the server's (None if it just closed)."""
        try:
            self.send(struct.pack("!H", code), CLOSE)
            return self.receive()
        except (EOFError, OSError):
            return None
        finally:
            self.sock.close()
