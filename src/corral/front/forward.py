"""The request head sent to an HTTP backend (pure): the client's request, re-framed by Corral.

What changes on the way (RFC 9110 section 7.6):

- the request line is HTTP/1.1 with the origin-form target (an absolute-form target becomes its
  path and query; the path is passed whole, virtual path included, as Helicon Zoo did);
- hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
  Upgrade and any field named in Connection) are dropped, and so are Expect (the front answers
  ``100-continue`` itself), Content-Length and Proxy (httpoxy);
- ``Host`` is the request's authority (the absolute-form target's, else the Host field);
- after URL Rewrite rules (``front/rewriting.py``) the target is the rewritten path and query,
  and ``X-Original-URL`` the client's target (a client's own X-Original-URL is dropped);
- the body framing is Corral's own: ``Content-Length`` for a body of known length, chunked for
  a body the client sent chunked;
- an Upgrade request that the route may tunnel carries ``Connection: Upgrade`` and its
  ``Upgrade`` field;
- ``X-Forwarded-For`` gets the client's address, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
  are set. Incoming X-Forwarded-* and ``Forwarded`` fields are kept only from a trusted proxy
  (``FrontSettings.trusted_proxies``): then the client's address is appended to the incoming
  X-Forwarded-For, and the incoming Proto and Host win. From anyone else they are dropped, so an
  application never believes a client that claims to be a proxy.

A FastCGI backend (Corral's Python worker, php-cgi...) gets the same policy as CGI variables:
``from_proxy`` reads what a trusted proxy says (the client's address, the scheme, the host), and
the exchange makes them REMOTE_ADDR, HTTPS and HTTP_HOST/SERVER_NAME/SERVER_PORT (see
``front/exchange.py``); ``cgienv`` drops the fields from everyone else.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import NamedTuple

from corral.backends import BODY_CHUNKED, BODY_LENGTH, BODY_TUNNEL
from corral.front.cgienv import ADMIN_COOKIE, FORWARDING, HOP_BY_HOP, without_admin_cookie
from corral.front.target import split_host
from corral.protocol.http1.events import Request

#: Fields never copied from the client's request (lower-case).
_DROPPED = HOP_BY_HOP | {b"expect", b"content-length", b"proxy", b"host"}
#: Fields copied only from a trusted proxy.
_FORWARDING = FORWARDING
#: Fields that show a request came through a proxy (trusted or not).
_PROXIED = FORWARDING | {b"x-real-ip"}
#: A host a proxy may name (a name or an address, an optional port): anything else is ignored.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")

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
    target: bytes | None = None,
    backend_host: bytes | None = None,
) -> bytes:
    """The head to send to an HTTP backend for ``request``.

    ``host``: the authority to send (the request's, or the server's name when it had none);
    ``client``: the client's address; ``trusted``: it is a trusted proxy; ``body``: a
    ``corral.backends.BODY_*`` value (``BODY_TUNNEL``: forward the Upgrade); ``target``: the
    request target after URL Rewrite rules (``front/rewriting.py``): sent instead, with the
    client's own as ``X-Original-URL`` (a client's X-Original-URL field is then dropped);
    ``backend_host``: the Host to send instead (ZOO_SUBSTITUTE_HOST), ``host`` then going in
    X-Forwarded-Host.
    """
    lines: list[bytes]
    rewritten = target is not None
    sent_host = backend_host or host
    if target is not None:
        lines = [request.method, b" ", target, b" HTTP/1.1\r\nHost: ", sent_host, b"\r\n"]
        lines += (b"X-Original-URL: ", request.target, b"\r\n")
    else:
        target = request.target
        if not target.startswith(b"/") and target != b"*":
            target = request.path + (b"?" + request.query if request.query else b"")
        lines = [request.method, b" ", target, b" HTTP/1.1\r\nHost: ", sent_host, b"\r\n"]
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
        if rewritten and lower == b"x-original-url":
            continue  # (set above)
        if lower == b"cookie" and ADMIN_COOKIE in value:
            value = without_admin_cookie(value)
            if not value:
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


class ProxyView(NamedTuple):
    """What a trusted proxy says about a request (``from_proxy``); None where it says nothing
    usable."""

    #: The client's address: the nearest one in the chain that is not a trusted proxy.
    client: str | None
    #: ``https`` or ``http``.
    scheme: bytes | None
    #: The host the client asked for (``name[:port]``).
    host: bytes | None
    #: The incoming X-Forwarded-For (repeated fields joined), to pass on with the peer appended.
    chain: bytes | None


def _address(text: str) -> str | None:
    """An address as a proxy writes it (``1.2.3.4``, ``1.2.3.4:80``, ``[v6]:port``, quoted
    or not), or None when it is not one (``unknown``, an obfuscated ``_name``)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


def _client(chain: list[str], trusted: TrustedProxies) -> str | None:
    """The client in a chain of addresses (nearest last): walk back over trusted proxies."""
    client = None
    for entry in reversed(chain):
        client = _address(entry)
        if client is None:
            return None
        if client not in trusted:
            return client
    return client  # all of them trusted: the farthest one


def _last(value: bytes | None) -> bytes | None:
    """The nearest proxy's element of a comma-separated field."""
    if value is None:
        return None
    return value.rsplit(b",", 1)[-1].strip() or None


def from_proxy(headers: Iterable[tuple[bytes, bytes]], trusted: TrustedProxies) -> ProxyView:
    """What the forwarding fields of a request from a trusted proxy say. X-Forwarded-* win over
    RFC 7239's ``Forwarded`` (nginx and most proxies send the former)."""
    xff: bytes | None = None
    proto: bytes | None = None
    xhost: bytes | None = None
    forwarded: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower not in FORWARDING:
            continue
        if lower == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
        elif lower == b"x-forwarded-proto":
            proto = value if proto is None else proto + b", " + value
        elif lower == b"x-forwarded-host":
            xhost = value if xhost is None else xhost + b", " + value
        else:
            forwarded = value if forwarded is None else forwarded + b", " + value
    client = None
    scheme = _last(proto)
    host = _last(xhost)
    if xff is not None:
        client = _client(xff.decode("latin-1").split(","), trusted)
    if forwarded is not None:
        fors: list[str] = []
        f_proto = f_host = None
        for element in forwarded.decode("latin-1").split(","):
            for pair in element.split(";"):
                key, _, item = pair.partition("=")
                key = key.strip().lower()
                item = item.strip().strip('"')
                if key == "for":
                    fors.append(item)
                elif key == "proto":
                    f_proto = item.encode("latin-1")
                elif key == "host":
                    f_host = item.encode("latin-1")
        if xff is None and fors:
            client = _client(fors, trusted)
        scheme = scheme or f_proto
        host = host or f_host
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in (b"http", b"https"):
            scheme = None
    if host is not None and _HOST.fullmatch(host) is None:
        host = None
    return ProxyView(client, scheme, host, xff)


def proxy_params(
    view: ProxyView,
    params: list[tuple[bytes, bytes]],
    peer: str,
    peer_port: bytes,
    server_name: bytes,
    server_port: bytes,
) -> tuple[bytes, bytes]:
    """The CGI variables of a request from a trusted proxy (the connection's variables have no
    REMOTE_ADDR then), appended to ``params``: REMOTE_ADDR (the client it names, else the peer
    and its REMOTE_PORT), HTTPS and REQUEST_SCHEME from the scheme it names, HTTP_HOST from the
    host it names, and the forwarding fields as an HTTP backend gets them (X-Forwarded-For with
    the proxy appended). Returns SERVER_NAME and SERVER_PORT: the named host's (the scheme's
    default port when it names none), else the request's."""
    if view.client is not None:
        params.append((b"REMOTE_ADDR", view.client.encode("ascii")))
    else:
        params.append((b"REMOTE_ADDR", peer.encode("ascii", "replace")))
        params.append((b"REMOTE_PORT", peer_port))
    scheme = view.scheme
    if scheme is not None:
        params.append((b"HTTPS", b"on" if scheme == b"https" else b"off"))
        params.append((b"REQUEST_SCHEME", scheme))
        params.append((b"HTTP_X_FORWARDED_PROTO", scheme))
    chain = peer.encode("ascii", "replace")
    params.append(
        (b"HTTP_X_FORWARDED_FOR", chain if view.chain is None else view.chain + b", " + chain)
    )
    if view.host is None:
        return server_name, server_port
    for index, (key, _) in enumerate(params):
        if key == b"HTTP_HOST":
            params[index] = (key, view.host)
            break
    else:
        params.append((b"HTTP_HOST", view.host))
    params.append((b"HTTP_X_FORWARDED_HOST", view.host))
    default = b"443" if scheme == b"https" else b"80" if scheme else server_port
    return split_host(view.host, default)


def proxied(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request carries a field that shows it came through a proxy (X-Forwarded-*,
    Forwarded, X-Real-IP): its TCP peer is then not its client."""
    return any(name.lower() in _PROXIED for name, _ in headers)


def origin(view: ProxyView | None, tls: bool, host: bytes | None) -> bytes:
    """The request's own origin as its client sees it (``scheme://host[:port]``): what a
    trusted proxy says, else this connection's scheme and the request's host (b"" for none)."""
    scheme = view.scheme if view is not None and view.scheme else b"https" if tls else b"http"
    where = view.host if view is not None and view.host else host
    return scheme + b"://" + where if where else b""
