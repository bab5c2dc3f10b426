"""From a backend's CGI response head to the client's HTTP/1.1 response head (pure).

Framing rules (RFC 9112 section 6.3):

- no body for HEAD, 1xx, 204 and 304: the head alone (a HEAD response keeps the backend's
  Content-Length, or gets the length of the body the backend produced when it sent one);
- else a valid Content-Length from the backend is passed through;
- else, when the whole body is already in hand, a Content-Length is computed (one write);
- else chunked for HTTP/1.1 clients, or close-delimited for HTTP/1.0 clients.

Hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
Upgrade) from the backend are dropped. A Date field is added unless the backend sent one.
The bytes themselves are written by ``corral.protocol.http1.writer``.
"""

from __future__ import annotations

from corral.front.cgienv import HOP_BY_HOP


class BadBackendHead(ValueError):
    """The backend's head cannot be relayed (for instance conflicting Content-Length values)."""


def filter_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[bytes], int | None, bool]:
    """Return ``(encoded field lines, content_length or None, has_date)``.

    Raises ``BadBackendHead`` for an invalid or conflicting Content-Length.
    """
    lines: list[bytes] = []
    length: int | None = None
    has_date = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            value, number = content_length(value, length)
            if length is None:
                lines.append(b"Content-Length: " + value + b"\r\n")
            length = number
            continue
        if lower in HOP_BY_HOP:
            continue
        if lower == b"date":
            has_date = True
        lines.append(name + b": " + value + b"\r\n")
    return lines, length, has_date


def content_length(value: bytes, known: int | None) -> tuple[bytes, int]:
    """A backend's Content-Length value, stripped, and its number; ``known``: the one an
    earlier field gave (None). Raises ``BadBackendHead`` if invalid or conflicting."""
    value = value.strip()
    if not value.isdigit():
        raise BadBackendHead(f"invalid Content-Length {value[:40]!r}")
    number = int(value)
    if known is not None and known != number:
        raise BadBackendHead("conflicting Content-Length values")
    return value, number


def body_allowed(status: int, method: bytes) -> bool:
    return not (method == b"HEAD" or status < 200 or status == 204 or status == 304)
