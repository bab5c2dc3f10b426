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

from typing import Final

from corral.front.cgienv import HOP_BY_HOP
from corral.protocol.memo import remember


class BadBackendHead(ValueError):
    """The backend's head cannot be relayed (for instance conflicting Content-Length values)."""


#: What a backend's field is to ``filter_headers``: a line passed on, the Content-Length, the
#: Date (passed on), a hop-by-hop field (dropped).
_PLAIN, _LENGTH, _DATE, _HOP = range(4)
#: A backend's field -> (kind, its line for the client, its length for a Content-Length).
#: Backends send the same fields with every response (the CGI parser hands out the same tuples
#: for lines it has seen: ``corral.protocol.cgi``), so one look-up replaces the lower-casing,
#: the comparisons and the line's concatenation. Short fields only; emptied when full
#: (``corral.protocol.memo``), so that it follows what is sent lately.
_FIELDS: dict[tuple[bytes, bytes], tuple[int, bytes, int]] = {}
_FIELDS_MAX: Final = 1024
_FIELD_KEPT_MAX: Final = 128


def filter_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[bytes], int | None, bool]:
    """Return ``(encoded field lines, content_length or None, has_date)``.

    Raises ``BadBackendHead`` for an invalid or conflicting Content-Length.
    """
    lines: list[bytes] = []
    length: int | None = None
    has_date = False
    known = _FIELDS
    for field in headers:
        entry = known.get(field)
        if entry is None:
            entry = _field(field)
        kind, line, number = entry
        if kind == _PLAIN:
            lines.append(line)
        elif kind == _LENGTH:
            if length is None:
                lines.append(line)
                length = number
            else:
                same_length(number, length)
        elif kind == _DATE:
            has_date = True
            lines.append(line)
    return lines, length, has_date


def _field(field: tuple[bytes, bytes]) -> tuple[int, bytes, int]:
    """``_FIELDS``'s entry for a field (raises ``BadBackendHead`` for an invalid
    Content-Length, which is never remembered)."""
    name, value = field
    lower = name.lower()
    number = 0
    if lower == b"content-length":
        value, number = content_length(value, None)
        entry = (_LENGTH, b"Content-Length: " + value + b"\r\n", number)
    elif lower in HOP_BY_HOP:
        entry = (_HOP, b"", 0)
    else:
        line = name + b": " + value + b"\r\n"
        entry = (_DATE if lower == b"date" else _PLAIN, line, 0)
    if len(name) + len(value) <= _FIELD_KEPT_MAX:
        remember(_FIELDS, field, entry, _FIELDS_MAX)
    return entry


def content_length(value: bytes, known: int | None) -> tuple[bytes, int]:
    """A backend's Content-Length value, stripped, and its number; ``known``: the one an
    earlier field gave (None). Raises ``BadBackendHead`` if invalid or conflicting."""
    value = value.strip()
    if not value.isdigit():
        raise BadBackendHead(f"invalid Content-Length {value[:40]!r}")
    return value, same_length(int(value), known)


def same_length(number: int, known: int | None) -> int:
    """``number``, a Content-Length field's; raises ``BadBackendHead`` if an earlier field gave
    another (``known``; None: none did)."""
    if known is not None and known != number:
        raise BadBackendHead("conflicting Content-Length values")
    return number


def body_allowed(status: int, method: bytes) -> bool:
    return not (method == b"HEAD" or status < 200 or status == 204 or status == 304)
