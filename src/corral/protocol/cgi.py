"""Sans-IO parser of a CGI/1.1 response head (RFC 3875 section 6), as found at the start
of a FastCGI STDOUT stream.

Stdlib only. ``CGIResponseParser.feed`` takes STDOUT bytes as they arrive and,
once the blank line that ends the head has been seen, returns a
``CGIResponseHead``: the status, the reason phrase, the header fields (without
``Status``) and the body bytes that followed the head in the same chunk
(``feed_parts``: the same as a plain tuple, for a client that unpacks it at once). A
client keeps one parser per connection and ``reset``s it for each response.

Rules (where CGI/1.1 leaves room, the choice is noted):

* Lines end with CRLF or a bare LF, mixed freely; a bare CR inside a line, any
  other control character but HTAB, an obsolete folded line, a line without a
  colon, a field name that is not an RFC 9110 token (so no space before the
  colon) are malformed.
* ``Status: 404 Not Found`` sets the status and is removed from the headers;
  without a reason the standard phrase is used (empty for unknown codes). The
  code must be three digits in 200..599 (a CGI script cannot send an interim
  1xx response), or 101: a backend switching protocols after an ``Upgrade``
  request (the front decides whether it may). Two Status fields are malformed.
* Without ``Status``, the status is 200, or 302 Found when a ``Location`` field
  is present (RFC 3875 6.2.3/6.2.4). Corral answers a local redirect
  (``Location: /path``) like a client redirect, as nginx does: the front
  forwards the 302 and the browser follows it.
* A head must hold at least one field (RFC 3875 6.2) and fit ``max_head_size``
  bytes; the stream ending before the blank line is malformed.

Every malformed case raises ``CGIResponseError``; the front answers 502.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass
from typing import Final, TypeAlias

from corral.errors import CorralError
from corral.protocol.memo import remember

__all__ = [
    "DEFAULT_MAX_HEAD_SIZE",
    "CGIResponseError",
    "CGIResponseHead",
    "CGIResponseParser",
    "HeadParts",
]

DEFAULT_MAX_HEAD_SIZE: Final = 64 * 1024

_TOKEN_RE: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN: Final = re.compile(_TOKEN_RE)
# A well-formed field line: token ":" OWS value OWS (CR)LF, where the value holds no control
# character but HTAB and neither starts nor ends with whitespace. The fast path validates
# each line (``_FIELD_LINE``, once per distinct line: ``_LINES``); anything else goes to the
# line-by-line path, which says precisely what is wrong.
_VALUE_RE: Final = rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
_FIELD_RE: Final = rb":[ \t]*(" + _VALUE_RE + rb")[ \t]*\r?\n"
#: One field line without its LF (the head is split at LF first): the fast path's check.
_FIELD_LINE: Final = re.compile(rb"(" + _TOKEN_RE + rb")" + _FIELD_RE[:-2])
#: What a field line is for the Status/Location rules (``_LINES``).
_PLAIN: Final = 0
_STATUS: Final = 1
_LOCATION: Final = 2
#: A well-formed field line as sent (without its LF) -> its field and kind. Applications send
#: the same lines again and again (Content-Type, Status, a Content-Length of a fixed page), so
#: the head of most responses is split and checked by dictionary look-ups: no regular
#: expression runs. Bounded, emptied when full (``corral.protocol.memo``); long lines
#: (cookies, tokens) are never remembered.
_LINES: dict[bytes, tuple[tuple[bytes, bytes], int]] = {}
_LINES_MAX: Final = 1024
_LINE_KEPT_MAX: Final = 128
#: A Status value -> (status, reason) (bounded like _LINES).
_STATUSES: dict[bytes, tuple[int, bytes]] = {}
_STATUSES_MAX: Final = 128
#: Control characters other than HTAB, CR and LF (CR is checked per line).
_BAD_CTL: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_REASONS: Final[dict[int, bytes]] = {s.value: s.phrase.encode("ascii") for s in http.HTTPStatus}
_FOUND: Final = b"Found"


class CGIResponseError(CorralError):
    """The application's CGI response head is malformed (the front answers 502)."""


@dataclass(slots=True)
class CGIResponseHead:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    #: Body bytes that arrived with the end of the head (possibly ``b""``).
    body: bytes


#: A head as ``feed_parts`` returns it: (status, reason, headers, body).
HeadParts: TypeAlias = tuple[int, bytes, list[tuple[bytes, bytes]], bytes]


class CGIResponseParser:
    """Accumulates STDOUT bytes until the head is complete; one response at a time
    (``reset`` between two)."""

    __slots__ = ("_buf", "_done", "_scanned", "max_head_size")

    def __init__(self, max_head_size: int = DEFAULT_MAX_HEAD_SIZE) -> None:
        self.max_head_size = max_head_size
        self._buf = bytearray()
        self._scanned = 0
        self._done = False

    def reset(self) -> None:
        """Ready for the next response (whatever state the last one left)."""
        if self._buf:
            self._buf = bytearray()
        self._scanned = 0
        self._done = False

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def started(self) -> bool:
        """Some of the response has been fed."""
        return self._done or bool(self._buf)

    def feed(self, data: bytes) -> CGIResponseHead | None:
        """Feed STDOUT bytes; ``b""`` means the stream ended. Returns the head once complete,
        else ``None``. Raises ``CGIResponseError`` when the head is malformed or the stream
        ends before it; ``RuntimeError`` when called again after the head was returned."""
        parts = self.feed_parts(data)
        return None if parts is None else CGIResponseHead(*parts)

    def feed_parts(self, data: bytes) -> HeadParts | None:
        """``feed``, the head as a plain tuple (status, reason, headers, body)."""
        if self._done:
            raise RuntimeError("the CGI response head is already complete; the rest is body")
        if not data:
            raise CGIResponseError(
                "the response ended before the end of its header block"
                if self._buf
                else "the response is empty (no CGI header block)"
            )
        if self._buf:
            buf: bytes | bytearray = self._buf
            buf += data
            start = max(self._scanned - 2, 0)
        else:
            buf = data
            start = 0
        if buf[0] == 0x0A or buf[:2] == b"\r\n":
            raise CGIResponseError("the CGI response has no header fields (RFC 3875 6.2)")
        # The first blank line: LF CR LF, or a bare LF LF before it (two finds, no regex).
        cut = buf.find(b"\n\r\n", start)
        bare = buf.find(b"\n\n", start, len(buf) if cut < 0 else cut + 2)
        if bare >= 0:
            cut, after = bare, bare + 2
        else:
            after = cut + 3
        if cut < 0:
            if len(buf) > self.max_head_size:
                raise CGIResponseError(
                    f"CGI response head exceeds {self.max_head_size} bytes without ending"
                )
            if buf is data:
                self._buf += data
            self._scanned = len(buf)
            return None
        if cut > self.max_head_size:
            raise CGIResponseError(f"CGI response head exceeds {self.max_head_size} bytes")
        self._done = True
        if buf is data:
            head = data[:cut]  # (without the last field's LF)
            body = data[after:]
        else:
            head = bytes(buf[:cut])
            body = bytes(buf[after:])
            self._buf = bytearray()
        result = _fields(head.split(b"\n"), body)
        return _parse_head_slowly(head, body) if result is None else result


def _fields(lines: list[bytes], body: bytes) -> HeadParts | None:
    """The fast path: every line a well-formed field (else None: the slow path says what is
    wrong), the Status/Location rules applied."""
    headers: list[tuple[bytes, bytes]] = []
    status_value: bytes | None = None
    location = False
    known = _LINES
    for line in lines:
        entry = known.get(line)
        if entry is None:
            entry = _field_line(line)
            if entry is None:
                return None
        field, kind = entry
        if kind == _PLAIN:
            headers.append(field)
        elif kind == _STATUS:
            if status_value is not None:
                raise CGIResponseError("two Status fields in the CGI response")
            status_value = field[1]
        else:
            location = True
            headers.append(field)
    return _with_status(status_value, location, headers, body)


def _field_line(line: bytes) -> tuple[tuple[bytes, bytes], int] | None:
    """A field line not seen before: checked, split, and remembered when short."""
    match = _FIELD_LINE.fullmatch(line)
    if match is None:
        return None
    name: bytes = match.group(1)
    field = (name, match.group(2))
    size = len(name)
    kind = _PLAIN
    if size == 6 and name.lower() == b"status":
        kind = _STATUS
    elif size == 8 and name.lower() == b"location":
        kind = _LOCATION
    entry = (field, kind)
    if len(line) <= _LINE_KEPT_MAX:
        remember(_LINES, line, entry, _LINES_MAX)
    return entry


def _parse_head_slowly(head: bytes, body: bytes) -> HeadParts:
    if _BAD_CTL.search(head) is not None:
        raise CGIResponseError("control character in the CGI response head")
    headers: list[tuple[bytes, bytes]] = []
    status_value: bytes | None = None
    location = False
    token = _TOKEN.fullmatch
    for line in head.split(b"\n"):
        if line[-1:] == b"\r":
            line = line[:-1]
        if b"\r" in line:
            raise CGIResponseError(f"bare CR in CGI response header line {line[:80]!r}")
        name, colon, value = line.partition(b":")
        if not colon:
            if line[:1] in (b" ", b"\t"):
                raise CGIResponseError(f"folded CGI response header line {line[:80]!r}")
            raise CGIResponseError(f"CGI response header line without a colon: {line[:80]!r}")
        if token(name) is None:
            raise CGIResponseError(f"invalid CGI response header name {name[:80]!r}")
        value = value.strip(b" \t")
        if len(name) == 6 and name.lower() == b"status":
            if status_value is not None:
                raise CGIResponseError("two Status fields in the CGI response")
            status_value = value
            continue
        if len(name) == 8 and name.lower() == b"location":
            location = True
        headers.append((name, value))
    return _with_status(status_value, location, headers, body)


def _with_status(
    status_value: bytes | None, location: bool, headers: list[tuple[bytes, bytes]], body: bytes
) -> HeadParts:
    if status_value is None:
        if location:
            return 302, _FOUND, headers, body
        return 200, b"OK", headers, body
    status = _STATUSES.get(status_value)
    if status is None:
        status = remember(_STATUSES, status_value, _status(status_value), _STATUSES_MAX)
    return status[0], status[1], headers, body


def _status(status_value: bytes) -> tuple[int, bytes]:
    """A Status field's value -> (status, reason); raises ``CGIResponseError``."""
    code = status_value[:3]
    if len(code) != 3 or not code.isdigit() or status_value[3:4] not in (b"", b" ", b"\t"):
        raise CGIResponseError(f"invalid CGI Status {status_value[:80]!r}")
    status = int(code)
    if not 200 <= status <= 599 and status != 101:
        raise CGIResponseError(f"CGI Status {status} is outside 200..599 (and not 101)")
    reason = status_value[4:].strip(b" \t") or _REASONS.get(status, b"")
    return status, reason
