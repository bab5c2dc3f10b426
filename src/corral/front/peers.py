"""What a client connection's two addresses tell the front, worked out once per address rather
than once per connection (issue 14, "the cost of a connection").

A connection needs, from its client's address: whether it is a loopback address (error
details), whether it is a trusted proxy's (``trusted_proxies``: forwarding fields), and
REMOTE_ADDR encoded for the backend; from its local address: the port its requests are routed
by, and SERVER_ADDR encoded (with HTTPS and REQUEST_SCHEME over TLS). The first depend on the
client's address alone, the second on the listener alone. ``Peers`` keeps both (each table
bounded, emptied when full: hostile clients may come from endless addresses), so that a
connection from a known client costs a dictionary look-up and a join: REMOTE_PORT is the only
variable new with each connection. A listener bound to one concrete address knows its local
facts before any connection (``listener_local``): its connections need no ``getsockname`` nor
TLS look-up of their own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from corral.backends import encode_params
from corral.front.cgienv import connection_params
from corral.front.forward import TrustedProxies
from corral.protocol.memo import remember

#: How many client (or local) addresses are remembered before the table is emptied.
TABLE_MAX = 4096
#: The CGI variables of a connection over TLS.
TLS_PARAMS = [(b"HTTPS", b"on"), (b"REQUEST_SCHEME", b"https")]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Client:
    """What the front knows of a client address."""

    host: str
    loopback: bool
    #: A trusted proxy's (as ``trusted_proxies`` stood when the address was first seen
    #: since the last change of the setting).
    trusted: bool
    #: The REMOTE_ADDR variable, encoded (``backends.encode_params``).
    remote_addr: bytes


@dataclass(frozen=True, slots=True)
class Local:
    """What the front knows of a local address (the listener's side of a connection)."""

    addr: str
    port: int
    tls: bool
    #: SERVER_ADDR, and over TLS HTTPS=on and REQUEST_SCHEME=https, encoded.
    params: bytes


def _port_heads() -> tuple[bytes, ...]:
    # REMOTE_PORT's name and lengths for a value of N digits (N = 1..5; index 0 unused).
    heads = [b""]
    for digits in range(1, 6):
        pair = encode_params([(b"REMOTE_PORT", b"0" * digits)])
        heads.append(pair[:-digits])
    return tuple(heads)


_PORT_HEADS = _port_heads()


def remote_port_param(port: int) -> bytes:
    """The REMOTE_PORT variable, encoded, for a port (0 to 65535)."""
    digits = b"%d" % port
    if len(digits) < len(_PORT_HEADS):
        return _PORT_HEADS[len(digits)] + digits
    return encode_params([(b"REMOTE_PORT", digits)])  # (not a TCP port: the general way)


class Peers:
    """The front's tables of client and local addresses (see the module doc)."""

    def __init__(self, trusted: TrustedProxies) -> None:
        self._trusted = trusted
        self._clients: dict[str, Client] = {}
        self._locals: dict[tuple[str, int, bool], Local] = {}

    def retrust(self, trusted: TrustedProxies) -> None:
        """``trusted_proxies`` changed: connections from now on are judged by ``trusted``."""
        self._trusted = trusted
        self._clients = {}

    def client(self, host: str) -> Client:
        known = self._clients.get(host)
        if known is None:
            known = Client(
                host,
                is_loopback(host),
                host in self._trusted,
                encode_params([(b"REMOTE_ADDR", host.encode("ascii", "replace"))]),
            )
            remember(self._clients, host, known, TABLE_MAX)
        return known

    def local(self, addr: str, port: int, tls: bool) -> Local:
        key = (addr, port, tls)
        known = self._locals.get(key)
        if known is None:
            params = connection_params(b"", b"", addr.encode("ascii", "replace"))[2:]
            if tls:
                params += TLS_PARAMS
            known = Local(addr, port, tls, encode_params(params))
            remember(self._locals, key, known, TABLE_MAX)
        return known

    def local_of(self, transport: asyncio.BaseTransport) -> Local:
        """A connection's local facts from its transport (a listener whose local address is
        not known in advance, or a connection handed over after TLS or sniffing)."""
        sockname = transport.get_extra_info("sockname")
        tls = transport.get_extra_info("sslcontext") is not None
        if isinstance(sockname, tuple):
            return self.local(str(sockname[0]), int(sockname[1]), tls)
        return self.local("127.0.0.1", 0, tls)  # a Unix socket listener

    def listener_local(self, sockets: Sequence[socket.socket]) -> Local | None:
        """A plain listener's local facts, when every connection it accepts shares them: one
        socket bound to one concrete address (not a wildcard, not a Unix socket)."""
        if len(sockets) != 1:
            return None
        name = sockets[0].getsockname()
        if not isinstance(name, tuple):
            return None
        addr = str(name[0])
        try:
            if ipaddress.ip_address(addr.split("%", 1)[0]).is_unspecified:
                return None
        except ValueError:
            return None
        return self.local(addr, int(name[1]), False)

    @staticmethod
    def params(client: Client, port: int, local: Local) -> bytes:
        """The CGI variables fixed for one connection, encoded: REMOTE_ADDR, REMOTE_PORT,
        SERVER_ADDR (and the TLS ones). From a trusted proxy without REMOTE_ADDR and
        REMOTE_PORT: each of its requests names its own client."""
        if client.trusted:
            return local.params
        return client.remote_addr + remote_port_param(port) + local.params
