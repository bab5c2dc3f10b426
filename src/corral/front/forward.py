"""The request head sent to an HTTP backend (pure): the client's request, re-framed by Corral.

What changes on the way (RFC 9110 section 7.6):

- the request line is HTTP/1.1 with the origin-form target (an absolute-form target becomes its
  path and query; the path is passed whole, virtual path included, as Helicon Zoo did);
- hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
  Upgrade and any field named in Connection) are dropped, and so are Expect (the front answers
  ``100-continue`` itself), Content-Length and Proxy (httpoxy);
- ``Host`` is the request's authority (the absolute-form target's, else the Host field);
- the body framing is Corral's own: ``Content-Length`` for a body of known length, chunked for
  a body the client sent chunked;
- an Upgrade request that the route may tunnel carries ``Connection: Upgrade`` and its
  ``Upgrade`` field;
- ``X-Forwarded-For`` gets the client's address, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
  are set. Incoming X-Forwarded-* and ``Forwarded`` fields are kept only from a trusted proxy
  (``FrontSettings.trusted_proxies``): then the client's address is appended to the incoming
  X-Forwarded-For, and the incoming Proto and Host win. From anyone else they are dropped, so an
  application never believes a client that claims to be a proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from corral.backends import BODY_CHUNKED, BODY_LENGTH, BODY_TUNNEL
from corral.front.cgienv import HOP_BY_HOP
from corral.protocol.http1.events import Request

#: Fields never copied from the client's request (lower-case).
_DROPPED = HOP_BY_HOP | {b"expect", b"content-length", b"proxy", b"host"}
#: Fields copied only from a trusted proxy.
_FORWARDING = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Which client addresses may speak for others (``trusted_proxies``: addresses, networks
    in CIDR notation, or ``*`` for everyone). Answers are cached per address."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self.networks: list[Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif entry:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        if not self.networks:
            return False
        known = self._cache.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self.networks)
            if len(self._cache) < 4096:
                self._cache[host] = known
        return known


def request_head(
    request: Request,
    *,
    host: bytes,
    client: bytes,
    trusted: bool,
    body: int,
    proto: bytes = b"http",
) -> bytes:
    """The head to send to an HTTP backend for ``request``.

    ``host``: the authority to send (the request's, or the server's name when it had none);
    ``client``: the client's address; ``trusted``: it is a trusted proxy; ``body``: a
    ``corral.backends.BODY_*`` value (``BODY_TUNNEL``: forward the Upgrade).
    """
    target = request.target
    if not target.startswith(b"/") and target != b"*":
        target = request.path + (b"?" + request.query if request.query else b"")
    lines = [request.method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    named: set[bytes] | None = None
    for name, value in request.headers:
        if len(name) == 10 and name.lower() == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")}
            named = tokens if named is None else named | tokens
    forwarded_for: bytes | None = None
    forwarded_proto: bytes | None = None
    forwarded_host: bytes | None = None
    for name, value in request.headers:
        lower = name.lower()
        if lower in _DROPPED or (named is not None and lower in named):
            continue
        if lower in _FORWARDING:
            if not trusted:
                continue
            if lower == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
                continue
            if lower == b"x-forwarded-proto":
                forwarded_proto = forwarded_proto or value
                continue
            if lower == b"x-forwarded-host":
                forwarded_host = forwarded_host or value
                continue
        lines += (name, b": ", value, b"\r\n")
    lines += (
        b"X-Forwarded-For: ",
        client if forwarded_for is None else forwarded_for + b", " + client,
        b"\r\nX-Forwarded-Proto: ",
        forwarded_proto or proto,
        b"\r\nX-Forwarded-Host: ",
        forwarded_host or host,
        b"\r\n",
    )
    if body == BODY_LENGTH:
        lines += (b"Content-Length: %d\r\n" % (request.content_length or 0),)
    elif body == BODY_CHUNKED:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif body == BODY_TUNNEL:
        lines += (b"Connection: Upgrade\r\nUpgrade: ", request.upgrade or b"", b"\r\n")
    elif request.content_length == 0 and request.method not in (b"GET", b"HEAD"):
        lines.append(b"Content-Length: 0\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
