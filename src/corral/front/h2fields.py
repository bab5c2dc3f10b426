"""HTTP/2 header fields to and from what the rest of the front speaks (pure).

``request_from_fields``: a stream's decoded header list (h2 has already checked the pseudo-header
rules, lower-case names and the connection-specific fields of RFC 9113 8.2.2) becomes the same
``Request`` an HTTP/1.1 head does, so that an ``Exchange`` cannot tell them apart:

- ``:authority`` becomes the Host field (first, when the client sent no Host of its own) and the
  request's ``host``, syntax-checked as HTTP/1.1's Host is;
- several ``cookie`` fields are joined with "; " (RFC 9113 8.2.3);
- ``http_version`` is "2.0": SERVER_PROTOCOL=HTTP/2.0 and "HTTP/2.0" in the access log (what
  Apache and nginx say), the ASGI scope's ``http_version`` "2";
- the body's length is the ``content-length`` field when there is one, else unknown (handled as
  HTTP/1.1's chunked: no CONTENT_LENGTH, an HTTP backend gets it chunked);
- HTTP/1.1's own limits apply: field count, single field size and the head's size (the last is
  also bounded by h2's HPACK decoder, with a connection error, before this sees it).

``response_fields``: a backend's response head as HTTP/2 fields: names lower-cased, hop-by-hop
fields dropped, Content-Length checked as for HTTP/1.1 (``proxy.BadBackendHead``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral.front.cgienv import HOP_BY_HOP
from corral.front.proxy import content_length
from corral.protocol.http1.events import Request
from corral.protocol.http1.parser import Limits

_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?\Z",
)


#: Fields that make an HTTP/2 request malformed (RFC 9113 8.2.2): Upgrade stays on HTTP/1.1.
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"upgrade", b"keep-alive", b"proxy-connection", b"transfer-encoding")
)


@dataclass(frozen=True, slots=True)
class Refused:
    """A request that cannot be served: the status to answer and why (for the log)."""

    status: int
    reason: str


def request_from_fields(
    fields: list[tuple[bytes, bytes]], end_stream: bool, limits: Limits
) -> Request | Refused:
    """The ``Request`` of a stream's header list, or why it is refused."""
    method = target = authority = None
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    has_host = False
    length: int | None = None
    size = 0
    for name, value in fields:
        field_size = len(name) + len(value) + 4
        size += field_size
        if field_size > limits.max_header_field:
            return Refused(431, "a header field too large")
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
            continue
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return Refused(400, "a connection-specific field (RFC 9113 8.2.2)")
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if has_host:
                return Refused(400, "more than one Host field")
            has_host = True
            if authority is None:
                authority = value
        elif name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                return Refused(400, "an invalid Content-Length")
            length = int(value)
        headers.append((name, value))
    if size > limits.max_header_bytes:
        return Refused(431, "request header fields too large")
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if len(headers) > limits.max_header_count:
        return Refused(431, "too many header fields")
    if method is None:
        return Refused(400, "no :method")
    if method == b"CONNECT":
        # (A CONNECT request has no :path; Corral is no forward proxy: the stream answers 501.)
        return Request(method, b"", b"", b"", "2.0", headers, True, False, None, False, None)
    if target is None or not (target[:1] == b"/" or (target == b"*" and method == b"OPTIONS")):
        return Refused(400, "an invalid :path")
    if len(target) > limits.max_request_line:
        return Refused(414, "request target too long")
    if authority is not None:
        if not _HOST.match(authority):
            return Refused(400, "an invalid :authority")
        if not has_host:
            headers.insert(0, (b"host", authority))
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    expect = False
    for name, value in headers:
        if name == b"expect" and value.lower() == b"100-continue":
            expect = True
    return Request(
        method=method,
        target=target,
        path=path,
        query=query,
        http_version="2.0",
        headers=headers,
        keep_alive=True,
        expect_continue=expect and not end_stream,
        content_length=length,
        chunked=not end_stream and length is None,
        upgrade=None,
        host=authority,
    )


def response_fields(
    status: int, headers: list[tuple[bytes, bytes]], date: bytes
) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """``(fields, content_length or None)`` for a backend's response head. ``date``: the
    Date value added when the backend sent none. Raises ``BadBackendHead``."""
    out: list[tuple[bytes, bytes]] = [(b":status", b"%d" % status)]
    length: int | None = None
    has_date = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            value, number = content_length(value, length)
            if length is None:
                out.append((lower, value))
            length = number
            continue
        if lower in HOP_BY_HOP:
            continue
        if lower == b"date":
            has_date = True
        out.append((lower, value))
    if not has_date:
        out.append((b"date", date))
    return out, length
