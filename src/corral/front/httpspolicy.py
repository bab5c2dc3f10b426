"""A site's https policies on the request path: its plain HTTP requests redirected to https
(``https_redirect``), and its Strict-Transport-Security value on TLS responses (``hsts``).

The redirect is a 308 the front answers itself, driven like a backend (an ``Upstream``) so that
the exchange frames, logs and counts it as any response. Its Location is the same URL over
https: the request's host name (its Host; for a request without one, the server's name), the
port of the site's first https binding (left out when it is 443), and the request's target. 308
keeps the method and the body (RFC 9110 15.4.9); the request body, if any, is read and dropped.

HSTS (RFC 6797) goes on the responses of a TLS connection only (a browser ignores it over plain
HTTP, and it must not be sent there); an application's own Strict-Transport-Security wins.
"""

from __future__ import annotations

import re

from corral.front.fixed import FixedResponse
from corral.front.target import split_host
from corral.protocol.http1.events import Request

#: A host a redirect may name: a name or an IP literal, with an optional port.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


def https_redirect(request: Request, port: int, host: bytes) -> FixedResponse | None:
    """The 308 for a plain request to a site that wants https on ``port`` (None: ``host`` is
    not one to redirect to, a 400)."""
    target = request.target
    if not target.startswith(b"/"):  # (an absolute-form target: its path and query)
        target = request.path + (b"?" + request.query if request.query else b"")
    location = https_location(host, port, target)
    if location is None:
        return None
    body = b"Moved to " + location + b"\n"
    headers = [
        (b"Location", location),
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
    ]
    return FixedResponse(308, b"", headers, body)


def add_hsts(headers: list[tuple[bytes, bytes]], value: bytes) -> None:
    """A TLS response's head gets the site's HSTS, unless the application sent its own."""
    for name, _ in headers:
        if len(name) == 25 and name.lower() == b"strict-transport-security":
            return
    headers.append((b"Strict-Transport-Security", value))


def https_location(host: bytes, port: int, target: bytes) -> bytes | None:
    """The https URL for ``target`` on ``host`` (a Host value: its port is replaced by
    ``port``); None when ``host`` is not a plain host name or address."""
    if _HOST.fullmatch(host) is None:
        return None
    name, _ = split_host(host, b"")
    authority = name if port == 443 else b"%s:%d" % (name, port)
    if not target.startswith(b"/"):
        target = b"/"
    return b"https://" + authority + target
