"""Which protocol a client connection speaks: HTTP/1.1 or HTTP/2.

``ProtocolChooser`` is the protocol an https listener (and, with ``http2_cleartext``, a plain
one) makes for each connection. It hands the transport to the connection class of the protocol
chosen (``transport.set_protocol``), and is done:

- over TLS, at once in ``connection_made`` (the handshake is over): ALPN's choice
  (``tls.negotiated_protocol``): "h2" is ``Http2Connection``, anything else ``HTTPConnection``;
- on a plain binding with ``http2_cleartext``, on the first bytes: the HTTP/2 connection preface
  (``PRI * HTTP/2.0``: prior knowledge, RFC 9113 3.3) is ``Http2Connection``, anything else
  ``HTTPConnection``, fed the bytes read so far. A client that sends nothing is closed after
  ``header_timeout``, as HTTP/1.1's would be.

A plain listener without ``http2_cleartext`` makes ``HTTPConnection``s directly: HTTP/1.1 pays
nothing for this.
"""

from __future__ import annotations

import asyncio
from typing import cast

from corral.front.context import FrontContext
from corral.front.http1 import HTTPConnection
from corral.front.http2 import Http2Connection
from corral.front.tls import negotiated_protocol

#: The HTTP/2 client connection preface (RFC 9113 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProtocolChooser(asyncio.Protocol):
    """Picks a connection's protocol, then hands the transport over (see the module doc)."""

    def __init__(self, server: FrontContext, sniff: bool) -> None:
        self._server = server
        self._sniff = sniff
        self._transport: asyncio.Transport | None = None
        self._seen = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._sniff:
            ssl_object = transport.get_extra_info("ssl_object")
            server = self._server
            http2 = negotiated_protocol(ssl_object) == "h2"
            self._hand_over(Http2Connection(server) if http2 else HTTPConnection(server))
            return
        self._timer = self._server.loop.call_later(
            self._server.header_timeout, self._transport.close
        )

    def data_received(self, data: bytes) -> None:
        seen = self._seen = self._seen + data
        if len(seen) < len(PREFACE) and PREFACE.startswith(seen):
            return  # (the preface may yet come: more bytes)
        server = self._server
        if seen.startswith(PREFACE):
            self._hand_over(Http2Connection(server), seen)
        else:
            self._hand_over(HTTPConnection(server), seen)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_over(self, protocol: asyncio.Protocol, data: bytes = b"") -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        assert transport is not None
        self._transport = None
        if self._server.closing:
            transport.close()
            return
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)
