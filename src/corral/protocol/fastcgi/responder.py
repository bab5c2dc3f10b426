"""Pure helpers of a responder's hot path (``FastCGIConnection(SERVER)``): finding one whole
request without a body in received bytes, and framing a small complete response. No state,
no I/O; the connection keeps the request's state around them.
"""

from __future__ import annotations

import struct
from typing import Final

from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_VERSION_1,
    HEADER_LEN,
    RecordType,
    Role,
)
from corral.protocol.memo import remember

_BEGIN: Final = int(RecordType.BEGIN_REQUEST)
_PARAMS: Final = int(RecordType.PARAMS)
_STDIN: Final = int(RecordType.STDIN)
_STDOUT: Final = int(RecordType.STDOUT)
_ABORT: Final = int(RecordType.ABORT_REQUEST)
#: A record header's version, type and request id.
_HEADER_START: Final = struct.Struct(">BBH").pack
_RESPONDER: Final = int(Role.RESPONDER)
_HEADER_UNPACK: Final = records.HEADER.unpack_from
_HEADER_PACK: Final = records.HEADER.pack
_ZEROS: Final = tuple(bytes(n) for n in range(8))
#: The shortest whole request: BEGIN_REQUEST (16 bytes), the empty PARAMS and STDIN records.
WHOLE_MIN: Final = 32
#: The end of a complete response (the empty STDOUT record, END_REQUEST with application
#: status 0 and REQUEST_COMPLETE) per request id: the same bytes for every response on an id
#: (emptied when full, ``corral.protocol.memo``).
_END_RECORDS: dict[int, bytes] = {}
_END_RECORDS_MAX: Final = 1024


def whole_request_at(
    data: bytes, pos: int, max_params_size: int
) -> tuple[int, bool, bytes, int] | None:
    """``(request_id, keep_conn, params, end)`` when ``data[pos:end]`` is one whole request
    without a body: BEGIN_REQUEST for the Responder role, its PARAMS records, the empty PARAMS
    record and the empty STDIN record, ``params`` (the PARAMS stream's bytes) no longer than
    ``max_params_size``. Else None (the connection's general path reads it, and reports what
    is wrong)."""
    size = len(data)
    if size - pos < WHOLE_MIN or data[pos] != FCGI_VERSION_1 or data[pos + 1] != _BEGIN:
        return None
    _, _, rid, clen, plen = _HEADER_UNPACK(data, pos)
    if not rid or clen != 8 or data[pos + 8] or data[pos + 9] != _RESPONDER:
        return None
    keep_conn = bool(data[pos + 10] & FCGI_KEEP_CONN)
    pos += 16 + plen
    params = b""  # (the usual single PARAMS record's content, else a join of all of them)
    chunks: list[bytes] | None = None
    while True:
        if size - pos < HEADER_LEN:
            return None
        version, rtype, record_id, clen, plen = _HEADER_UNPACK(data, pos)
        if version != FCGI_VERSION_1 or rtype != _PARAMS or record_id != rid:
            return None
        start = pos + HEADER_LEN
        pos = start + clen + plen
        if not clen:
            break
        if not params:
            params = data[start : start + clen]
        else:
            if chunks is None:
                chunks = [params]
            chunks.append(data[start : start + clen])
    # The empty STDIN record.
    if size - pos < HEADER_LEN:
        return None
    version, rtype, record_id, clen, plen = _HEADER_UNPACK(data, pos)
    end = pos + HEADER_LEN + plen
    if version != FCGI_VERSION_1 or rtype != _STDIN or record_id != rid or clen or end > size:
        return None
    if chunks is not None:
        params = b"".join(chunks)
    if len(params) > max_params_size:
        return None
    return rid, keep_conn, params, end


def frame_small_response(request_id: int, stdout: bytes) -> bytes:
    """A complete response whose output fits one record (1 to 65535 bytes), padded to 8
    bytes: its STDOUT record, the empty STDOUT record and END_REQUEST (status 0), in one
    ``bytes``; the same as ``records.encode_response(request_id, stdout)``."""
    n = len(stdout)
    p = -n & 7
    end = _END_RECORDS.get(request_id)
    if end is None:
        end = records.encode_response(request_id, b"")
        remember(_END_RECORDS, request_id, end, _END_RECORDS_MAX)
    return b"".join(
        (_HEADER_PACK(FCGI_VERSION_1, _STDOUT, request_id, n, p), stdout, _ZEROS[p], end)
    )


def abort_in(data: bytes | bytearray, pos: int, request_id: int) -> bool:
    """Whether the whole records in ``data`` from ``pos`` on hold an ABORT_REQUEST for
    ``request_id`` (a look ahead that reads nothing: the records stay for the codec). The
    usual answer, no, costs one search of the bytes; only a match (perhaps inside a record's
    content) walks the record headers. A header that is not FastCGI's ends the walk (the codec
    reports it when it gets there)."""
    if data.find(_HEADER_START(FCGI_VERSION_1, _ABORT, request_id), pos) < 0:
        return False
    size = len(data)
    while size - pos >= HEADER_LEN:
        version, rtype, rid, clen, plen = _HEADER_UNPACK(data, pos)
        if version != FCGI_VERSION_1:
            return False
        if rtype == _ABORT and rid == request_id:
            return True
        pos += HEADER_LEN + clen + plen
    return False
