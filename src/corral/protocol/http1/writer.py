"""The front's HTTP/1.1 response writer (sans-IO): status lines, header blocks, the framing
pieces (chunks, ``Connection``, ``Transfer-Encoding``), ``100 Continue``, the 101 head of a
tunnel and the Date field. Every byte of a response head the front sends is made here.

The hot path (``corral.front.http1``) joins the constant pieces itself rather than calling a
function per field: they are defined once, here.
"""

from __future__ import annotations

import http
from email.utils import formatdate
from typing import Final

from corral.protocol.memo import remember

#: Terminates a chunked body (no trailers).
LAST_CHUNK: Final = b"0\r\n\r\n"
CRLF: Final = b"\r\n"
#: The interim response that asks for a request body (``Expect: 100-continue``).
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED: Final = b"Transfer-Encoding: chunked\r\n"
CONN_CLOSE: Final = b"Connection: close\r\n"
CONN_KEEP: Final = b"Connection: keep-alive\r\n"

_REASONS: Final[dict[int, bytes]] = {s.value: s.phrase.encode("ascii") for s in http.HTTPStatus}


def _status_lines(version: bytes) -> dict[int, bytes]:
    return {
        code: b"HTTP/%s %d %s\r\n" % (version, code, _REASONS.get(code, b""))
        for code in range(100, 600)
    }


#: Precomputed status lines, keyed by the response's HTTP version then status code.
_STATUS_LINES: Final[dict[str, dict[int, bytes]]] = {
    "1.1": _status_lines(b"1.1"),
    "1.0": _status_lines(b"1.0"),
}


def response_head(
    status: int,
    reason: bytes | None,
    headers: list[tuple[bytes, bytes]],
    http_version: str = "1.1",
) -> bytes:
    """Serialise a response head: status line, ``name: value`` lines, blank line.

    ``reason=None`` uses the standard phrase (an unknown code gets an empty one).
    ``http_version`` is the version of the *response* ("1.1" unless talking to a peer
    that must see "1.0"). Raises ``ValueError`` on a status outside 100-999 or a CR, LF
    or NUL in the reason or in any header (response splitting).
    """
    if reason is None:
        try:
            line = _STATUS_LINES[http_version][status]
        except KeyError:
            line = _build_status_line(status, _REASONS.get(status, b""), http_version)
    else:
        line = _build_status_line(status, reason, http_version)
    parts = [line]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    # One C-speed pass per byte class instead of a check per field: the only CR, LF
    # allowed are the line ends we wrote (status line + one per field + the blank line).
    lines = len(headers) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        raise ValueError("CR, LF or NUL inside a response header")
    return head


def _build_status_line(status: int, reason: bytes, http_version: str) -> bytes:
    if not 100 <= status <= 999:
        raise ValueError(f"invalid status code {status!r}")
    if http_version not in ("1.0", "1.1"):
        raise ValueError(f"unsupported response version {http_version!r}")
    return b"HTTP/%s %d %s\r\n" % (http_version.encode("ascii"), status, reason)


_STATUS_CACHE: dict[tuple[int, bytes], bytes] = {}
_STATUS_CACHE_MAX: Final = 512


def status_line(status: int, reason: bytes) -> bytes:
    """``HTTP/1.1 <status> <reason>`` and CRLF, for a backend's status and reason (an empty
    reason gets the standard phrase, or ``Unknown``). Remembered (emptied when full:
    ``corral.protocol.memo``): backends repeat themselves."""
    key = (status, reason)
    line = _STATUS_CACHE.get(key)
    if line is None:
        if not reason:
            try:
                reason = http.HTTPStatus(status).phrase.encode("ascii")
            except ValueError:
                reason = b"Unknown"
        line = remember(
            _STATUS_CACHE, key, b"HTTP/1.1 %d %s\r\n" % (status, reason), _STATUS_CACHE_MAX
        )
    return line


def chunk_size(size: int) -> bytes:
    """The size line that opens a chunk of ``size`` bytes (``size`` > 0)."""
    return b"%x\r\n" % size


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one chunk; empty data gives ``b""`` (it must not end the body)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


def format_date(seconds: float) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7) for a POSIX time, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(seconds, usegmt=True).encode("ascii")


class DateCache:
    """The ``Date`` header value, recomputed at most once per second.

    Pure: the caller passes the time (``time.time()`` in the front, anything in tests).
    """

    __slots__ = ("_field", "_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""
        self._field = b""

    def get(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = format_date(second)
            self._field = b"Date: " + self._value + b"\r\n"
        return self._value

    def field(self, now: float) -> bytes:
        """The whole ``Date: ...`` field line (CRLF included), as a response head takes it."""
        self.get(now)
        return self._field


def switching_head(
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    upgrade: bytes,
    date: bytes,
    hop_by_hop: frozenset[bytes],
) -> bytes:
    """The client's ``101 Switching Protocols`` head from the backend's 101.

    The backend's fields pass (Sec-WebSocket-Accept...), except ``hop_by_hop`` ones and
    Content-Length; ``Connection: Upgrade`` and the ``Upgrade`` field (the backend's, else
    ``upgrade``, the request's) are set here. ``date`` is a whole Date field line, added unless
    the backend sent one.
    """
    lines = [b"HTTP/1.1 101 ", reason or b"Switching Protocols", b"\r\n"]
    chosen = upgrade
    has_date = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"upgrade":
            chosen = value
            continue
        if lower in hop_by_hop or lower == b"content-length":
            continue
        if lower == b"date":
            has_date = True
        lines += (name, b": ", value, b"\r\n")
    if not has_date:
        lines.append(date)
    lines += (b"Connection: Upgrade\r\nUpgrade: ", chosen, b"\r\n\r\n")
    return b"".join(lines)
