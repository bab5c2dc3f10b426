"""HTTP/1.1 responses from a backend, sans-IO: the head, the body framing, chunked decoding.

Pure functions and small state machines, stdlib only; ``corral.backends.http`` drives them from
the bytes it reads. Framing follows RFC 9112 section 6.3 from the client's side:

1. a response to HEAD, a 1xx, 204 or 304 has no body;
2. ``Transfer-Encoding`` ending in ``chunked``: chunked (Content-Length is then ignored);
   any other transfer coding: the body runs to the end of the connection;
3. a valid ``Content-Length``: that many bytes (conflicting values are an error);
4. otherwise: the body runs to the end of the connection.
"""

from __future__ import annotations

import re

#: Largest response head accepted from a backend.
MAX_HEAD = 64 * 1024
#: Largest chunk-size line or trailer section accepted.
MAX_CHUNK_LINE = 4096

NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: ([^\r\n]*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class ResponseError(ValueError):
    """The backend's bytes are not a valid HTTP/1.1 response."""


class ResponseHead:
    """A parsed response head. ``headers`` keep the backend's names and order."""

    __slots__ = (
        "close",
        "content_length",
        "framing_kind",
        "headers",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self, version: int, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        self.framing_kind = UNTIL_CLOSE
        #: The backend will close the connection after this response.
        self.close = version == 0

    def framing(self, head_request: bool) -> int:
        """``NO_BODY``, ``LENGTH``, ``CHUNKED`` or ``UNTIL_CLOSE`` (see the module docstring)."""
        status = self.status
        if head_request or status < 200 or status == 204 or status == 304:
            return NO_BODY
        return self.framing_kind


def parse_head(data: bytes) -> ResponseHead:
    """Parse a head (status line and fields, without the blank line). Lines may end in LF."""
    lines = data.split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
    if match is None:
        raise ResponseError(f"invalid status line {lines[0][:80]!r}")
    version = int(match.group(1))
    status = int(match.group(2))
    if status < 100:
        raise ResponseError(f"invalid status code {status}")
    headers: list[tuple[bytes, bytes]] = []
    head = ResponseHead(version, status, match.group(3) or b"", headers)
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            continue
        if line[0] in b" \t":
            raise ResponseError("obsolete line folding in the response head")
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ResponseError(f"invalid header line {line[:80]!r}")
        value = value.strip(b" \t")
        if b"\r" in value or b"\0" in value:
            raise ResponseError("control character in a header value")
        lower = name.lower()
        if lower == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lower == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
        elif lower == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if b"close" in tokens:
                head.close = True
            elif b"keep-alive" in tokens and version == 0:
                head.close = False
        headers.append((name, value))
    if codings:
        head.framing_kind = CHUNKED if codings[-1] == b"chunked" else UNTIL_CLOSE
        if head.framing_kind == UNTIL_CLOSE:
            head.close = True
        # Content-Length is meaningless next to Transfer-Encoding: never relay it.
        head.headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    elif lengths:
        if len(lengths) != 1:
            raise ResponseError("conflicting Content-Length values")
        (text,) = lengths
        if not text.isdigit():
            raise ResponseError(f"invalid Content-Length {text[:40]!r}")
        head.content_length = int(text)
        head.framing_kind = LENGTH
    else:
        head.close = True
    return head


# Chunked decoder states.
_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4


class ChunkedDecoder:
    """Decodes a chunked body incrementally. ``feed(view, out)`` appends the body's pieces (views
    of ``view``, no copy) to ``out`` and returns how many bytes of ``view`` it used; ``done`` is
    set once the last chunk and the trailer section have been read (bytes past that are not
    used). Chunk extensions and trailer fields are dropped."""

    __slots__ = ("_left", "_line", "_state", "done")

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0
        self._line = b""
        self.done = False

    def feed(self, view: memoryview, out: list[memoryview]) -> int:
        pos = 0
        size = len(view)
        while pos < size:
            state = self._state
            if state == _DATA:
                take = min(self._left, size - pos)
                out.append(view[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
                continue
            # A line: the chunk size, the CRLF after a chunk's data, or a trailer line.
            end = bytes(view[pos : min(size, pos + MAX_CHUNK_LINE)]).find(b"\n")
            if end < 0:
                self._line += bytes(view[pos:])
                if len(self._line) > MAX_CHUNK_LINE:
                    raise ResponseError("chunk-size line or trailer too long")
                return size
            line = (self._line + bytes(view[pos : pos + end])).rstrip(b"\r")
            self._line = b""
            pos += end + 1
            if state == _SIZE:
                text = line.split(b";", 1)[0].strip(b" \t")
                if not text or len(text) > 16:
                    raise ResponseError(f"invalid chunk size {line[:40]!r}")
                try:
                    self._left = int(text, 16)
                except ValueError:
                    raise ResponseError(f"invalid chunk size {line[:40]!r}") from None
                self._state = _DATA if self._left else _TRAILER
            elif state == _DATA_END:
                if line:
                    raise ResponseError("chunk data longer than its size")
                self._state = _SIZE
            else:  # _TRAILER
                if not line:
                    self._state = _DONE
                    self.done = True
                    return pos
        return pos
