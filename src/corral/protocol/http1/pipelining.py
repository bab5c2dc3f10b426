"""Finding the request lines llhttp parses ahead, for ``RequestParser._check_pipelined``.

httptools gives no byte positions, and llhttp parses every request in the bytes it is fed,
so a request line that follows another request in one read never goes through the check in
``RequestParser._feed``. llhttp has already checked the framing of the request before it, so
that request's end can be found from where it began: its head ends at the first CRLF CRLF
(llhttp takes no bare LF in a head), then come Content-Length bytes or chunks. A chunked
body that goes on over several reads is followed with ``next_chunk``.
"""

from __future__ import annotations


def foreign_protocol(line: bytes) -> bool:
    """The request line ends in a protocol name other than HTTP that llhttp would take."""
    protocol = line.rstrip(b"\r").rpartition(b" ")[2]
    name, slash, _ = protocol.partition(b"/")
    return bool(slash) and name != b"HTTP" and name.isalpha()


def head_end(data: bytes, start: int) -> int:
    """The end of the request head that begins (possibly after blank lines) at ``start``."""
    size = len(data)
    while start < size and data[start] in b"\r\n":
        start += 1
    end = data.find(b"\r\n\r\n", start)
    return end + 4 if end >= 0 else -1


def chunks_end(data: bytes, pos: int) -> int:
    """The end of a chunked body (llhttp has checked it) whose next size line is at ``pos``."""
    try:
        while True:
            eol = data.index(b"\r\n", pos)
            size = int(data[pos:eol].partition(b";")[0], 16)
            pos = eol + 2
            if not size:
                break
            pos += size + 2
    except ValueError:
        return -1
    if data.startswith(b"\r\n", pos):  # no trailer fields
        return pos + 2
    end = data.find(b"\r\n\r\n", pos)
    return end + 4 if end >= 0 else -1


def body_end(data: bytes, head_end: int, chunked: bool, length: int | None) -> int:
    """Where a request whose head ends at ``head_end`` in ``data`` (-1: not in it) ends there:
    after ``length`` bytes (its Content-Length, None: no body), or after its chunks."""
    if head_end < 0:
        return -1
    if not chunked:
        return head_end + (length or 0)
    return chunks_end(data, head_end)


def next_chunk(chunks: bytes, pos: int, data: bytes) -> tuple[bytes, int]:
    """A chunked body goes on with ``data``; ``chunks[pos:]`` is what was fed before it, from
    a chunk-size line. Returns the bytes and position of the next size line after them:
    ``data`` and an offset into it, or the framing not ended yet (a size line, the trailer
    section) followed by ``data``, and 0."""
    size = len(chunks)
    try:
        while pos < size:
            eol = chunks.index(b"\r\n", pos)
            chunk = int(chunks[pos:eol].partition(b";")[0], 16)
            if not chunk:
                break  # the last chunk: trailer fields follow
            pos = eol + 4 + chunk
        else:
            return data, pos - size
    except ValueError:  # a chunk-size line not ended yet
        pass
    return chunks[pos:] + data, 0
