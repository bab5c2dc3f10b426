"""Pure FastCGI 1.0 record encoding and decoding: no state, no I/O.

Everything here works on whole ``bytes`` and is written for the hot path:
precompiled ``struct.Struct`` objects, one ``b"".join`` per call, no per-byte
loops. ``FastCGIConnection`` builds on these; the ``encode_request`` and
``encode_response`` helpers are also usable on their own when the caller keeps
its own state (prefer the connection's ``send_request`` / ``send_response``,
which use them and track the request's state).

Padding: with ``pad=True`` (the default) a record's content is padded to a
multiple of 8 bytes, as the specification recommends. An empty record never
needs padding under that rule, so none is added (php-fpm misreads padding on
empty stream records) unless ``pad_empty=True`` asks for 8 bytes of it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple, TypeAlias

from corral.protocol.fastcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_NULL_REQUEST_ID,
    FCGI_VERSION_1,
    HEADER_LEN,
    MAX_CONTENT_LEN,
    MAX_REQUEST_ID,
    ProtocolStatus,
    RecordType,
    Role,
)
from corral.protocol.fastcgi.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BEGIN_REQUEST_BODY",
    "END_REQUEST_BODY",
    "HEADER",
    "UNKNOWN_TYPE_BODY",
    "RecordHeader",
    "decode_begin_request",
    "decode_end_request",
    "decode_pairs",
    "decode_unknown_type",
    "encode_abort_request",
    "encode_begin_request",
    "encode_end_request",
    "encode_get_values",
    "encode_get_values_result",
    "encode_pairs",
    "encode_params",
    "encode_record",
    "encode_request",
    "encode_response",
    "encode_stream",
    "encode_unknown_type",
    "header_at",
    "pack_header",
    "padding_for",
    "unpack_header",
]

#: version, type, requestId, contentLength, paddingLength, reserved.
HEADER: Final = struct.Struct(">BBHHBx")
#: role, flags, reserved[5].
BEGIN_REQUEST_BODY: Final = struct.Struct(">HB5x")
#: appStatus, protocolStatus, reserved[3].
END_REQUEST_BODY: Final = struct.Struct(">IBxxx")
#: type, reserved[7].
UNKNOWN_TYPE_BODY: Final = struct.Struct(">B7x")

#: What ``b"".join`` accepts: record parts are bytes or views of the caller's data.
_Buffer: TypeAlias = bytes | memoryview

_U32: Final = struct.Struct(">I")
_LEN_1_1: Final = struct.Struct(">BB")
_LEN_1_4: Final = struct.Struct(">BI")
_LEN_4_1: Final = struct.Struct(">IB")
_LEN_4_4: Final = struct.Struct(">II")
_HEADER_PACK: Final = HEADER.pack
_HEADER_UNPACK: Final = HEADER.unpack_from
_ZEROS: Final = tuple(bytes(n) for n in range(256))
_MAX_PAIR_LEN: Final = 0x7FFFFFFF
_LONG: Final = 0x80000000


class RecordHeader(NamedTuple):
    version: int
    type: int
    request_id: int
    content_length: int
    padding_length: int


def padding_for(content_length: int, *, pad: bool = True, pad_empty: bool = False) -> int:
    """Padding that brings a record's content to a multiple of 8 bytes (0 when ``pad`` is off)."""
    if content_length == 0:
        return 8 if pad_empty else 0
    return -content_length & 7 if pad else 0


def pack_header(
    record_type: int, request_id: int, content_length: int, padding_length: int = 0
) -> bytes:
    """Pack one 8-byte record header (version 1)."""
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise LocalProtocolError(f"request id {request_id} is outside 0..65535")
    if not 0 <= content_length <= MAX_CONTENT_LEN:
        raise LocalProtocolError(f"record content of {content_length} bytes exceeds 65535")
    if not 0 <= padding_length <= 0xFF:
        raise LocalProtocolError(f"padding of {padding_length} bytes exceeds 255")
    if not 0 <= record_type <= 0xFF:
        raise LocalProtocolError(f"record type {record_type} is outside 0..255")
    return _HEADER_PACK(FCGI_VERSION_1, record_type, request_id, content_length, padding_length)


def header_at(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int, int]:
    """The fast path of record parsing, for every reader of records (the codec's
    ``FastCGIConnection`` and the front's client, ``backends.fastcgi``): the header at ``pos``
    (the caller has checked that ``HEADER_LEN`` bytes are there) as ``(type, request id,
    content length, padding length)``; the record's content is ``data[pos + HEADER_LEN:][:
    content length]``. Raises ``RemoteProtocolError`` when the version is not 1 (the peer
    does not speak FastCGI)."""
    version, record_type, request_id, content_length, padding_length = _HEADER_UNPACK(data, pos)
    if version != FCGI_VERSION_1:
        raise RemoteProtocolError(
            f"record with FastCGI version {version} (only version 1 exists); "
            "the peer does not speak FastCGI"
        )
    return record_type, request_id, content_length, padding_length


def unpack_header(data: bytes | bytearray | memoryview, offset: int = 0) -> RecordHeader:
    """Unpack the 8-byte header at ``offset``; the version is returned, not checked."""
    if len(data) - offset < HEADER_LEN:
        raise RemoteProtocolError("truncated FastCGI record header")
    return RecordHeader._make(HEADER.unpack_from(data, offset))


def encode_record(
    record_type: int,
    request_id: int,
    content: bytes = b"",
    *,
    pad: bool = True,
    pad_empty: bool = False,
) -> bytes:
    """One record; ``content`` must fit (at most 65535 bytes)."""
    n = len(content)
    p = padding_for(n, pad=pad, pad_empty=pad_empty)
    header = pack_header(record_type, request_id, n, p)
    if p:
        return b"".join((header, content, _ZEROS[p]))
    return header + content if n else header


def _stream_parts(
    parts: list[_Buffer], record_type: int, request_id: int, data: bytes, pad: bool
) -> None:
    """Append the records carrying non-empty ``data`` (split at 65535 bytes) to ``parts``."""
    n = len(data)
    if n <= MAX_CONTENT_LEN:
        p = -n & 7 if pad else 0
        parts.append(_HEADER_PACK(FCGI_VERSION_1, record_type, request_id, n, p))
        parts.append(data)
        if p:
            parts.append(_ZEROS[p])
        return
    view = memoryview(data)
    for start in range(0, n, MAX_CONTENT_LEN):
        chunk = view[start : start + MAX_CONTENT_LEN]
        size = len(chunk)
        p = -size & 7 if pad else 0
        parts.append(_HEADER_PACK(FCGI_VERSION_1, record_type, request_id, size, p))
        parts.append(chunk)  # joined straight from the view: one copy in all
        if p:
            parts.append(_ZEROS[p])


def _check_request_id(request_id: int) -> None:
    if not 1 <= request_id <= MAX_REQUEST_ID:
        raise LocalProtocolError(f"request id {request_id} is outside 1..65535")


def _end_marker(record_type: int, request_id: int, pad_empty: bool) -> bytes:
    if pad_empty:
        return _HEADER_PACK(FCGI_VERSION_1, record_type, request_id, 0, 8) + _ZEROS[8]
    return _HEADER_PACK(FCGI_VERSION_1, record_type, request_id, 0, 0)


def encode_stream(
    record_type: int,
    request_id: int,
    data: bytes,
    *,
    pad: bool = True,
    end: bool = False,
    pad_empty: bool = False,
) -> bytes:
    """Records carrying ``data`` on a stream, split at 65535 bytes.

    ``data == b""`` yields the stream's empty end record; ``end=True`` appends
    that end record after non-empty data too.
    """
    _check_request_id(request_id)
    parts: list[_Buffer] = []
    if data:
        _stream_parts(parts, record_type, request_id, data, pad)
    if end or not data:
        parts.append(_end_marker(record_type, request_id, pad_empty))
    return b"".join(parts)


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Encode name-value pairs with 1-byte (<128) or 4-byte lengths."""
    parts: list[bytes] = []
    append = parts.append
    for name, value in pairs:
        n = len(name)
        v = len(value)
        if n < 128:
            if v < 128:
                append(_LEN_1_1.pack(n, v))
            elif v <= _MAX_PAIR_LEN:
                append(_LEN_1_4.pack(n, v | _LONG))
            else:
                raise LocalProtocolError(f"parameter value of {v} bytes is too long")
        elif n <= _MAX_PAIR_LEN:
            if v < 128:
                append(_LEN_4_1.pack(n | _LONG, v))
            elif v <= _MAX_PAIR_LEN:
                append(_LEN_4_4.pack(n | _LONG, v | _LONG))
            else:
                raise LocalProtocolError(f"parameter value of {v} bytes is too long")
        else:
            raise LocalProtocolError(f"parameter name of {n} bytes is too long")
        append(name)
        append(value)
    return b"".join(parts)


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """Decode a complete name-value pair stream; truncation raises ``RemoteProtocolError``."""
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    unpack_u32 = _U32.unpack_from
    pos = 0
    end = len(data)
    while pos < end:
        n = data[pos]
        if n < 128:
            pos += 1
        elif pos + 4 <= end:
            n = unpack_u32(data, pos)[0] & _MAX_PAIR_LEN
            pos += 4
        else:
            raise RemoteProtocolError("truncated name length in a name-value pair")
        if pos >= end:
            raise RemoteProtocolError("truncated name-value pair: value length missing")
        v = data[pos]
        if v < 128:
            pos += 1
        elif pos + 4 <= end:
            v = unpack_u32(data, pos)[0] & _MAX_PAIR_LEN
            pos += 4
        else:
            raise RemoteProtocolError("truncated value length in a name-value pair")
        mid = pos + n
        stop = mid + v
        if stop > end:
            raise RemoteProtocolError(
                f"name-value pair of {n}+{v} bytes overruns its stream ({end - pos} bytes left)"
            )
        append((data[pos:mid], data[mid:stop]))
        pos = stop
    return out


def _params_whole_pairs(
    parts: list[_Buffer], request_id: int, pairs: Iterable[tuple[bytes, bytes]], pad: bool
) -> None:
    """PARAMS records that each hold whole pairs (for php-fpm, which decodes per record)."""
    batch: list[bytes] = []
    size = 0
    for pair in pairs:
        encoded = encode_pairs((pair,))
        if len(encoded) > MAX_CONTENT_LEN:
            raise LocalProtocolError(
                f"parameter {pair[0][:40]!r} needs {len(encoded)} bytes, more than one record "
                "holds, and split_params=False forbids splitting it"
            )
        if size + len(encoded) > MAX_CONTENT_LEN:
            _stream_parts(parts, RecordType.PARAMS, request_id, b"".join(batch), pad)
            batch = []
            size = 0
        batch.append(encoded)
        size += len(encoded)
    if batch:
        _stream_parts(parts, RecordType.PARAMS, request_id, b"".join(batch), pad)


def _params_parts(
    parts: list[_Buffer],
    request_id: int,
    params: Sequence[tuple[bytes, bytes]],
    *,
    split_params: bool,
    pad: bool,
    pad_empty: bool,
) -> None:
    body = encode_pairs(params)
    if body:
        if split_params or len(body) <= MAX_CONTENT_LEN:
            _stream_parts(parts, RecordType.PARAMS, request_id, body, pad)
        else:
            _params_whole_pairs(parts, request_id, params, pad)
    parts.append(_end_marker(RecordType.PARAMS, request_id, pad_empty))


def encode_params(
    request_id: int,
    params: Sequence[tuple[bytes, bytes]],
    *,
    split_params: bool = True,
    pad: bool = True,
    pad_empty: bool = False,
) -> bytes:
    """The whole PARAMS stream, including its empty end record.

    With ``split_params=False`` no pair is ever split across records (a pair
    too long for one record raises ``LocalProtocolError``).
    """
    _check_request_id(request_id)
    parts: list[_Buffer] = []
    _params_parts(
        parts, request_id, params, split_params=split_params, pad=pad, pad_empty=pad_empty
    )
    return b"".join(parts)


def encode_begin_request(
    request_id: int, role: int = Role.RESPONDER, *, keep_conn: bool = False
) -> bytes:
    _check_request_id(request_id)
    if not 0 <= role <= 0xFFFF:
        raise LocalProtocolError(f"role {role} is outside 0..65535")
    body = BEGIN_REQUEST_BODY.pack(role, FCGI_KEEP_CONN if keep_conn else 0)
    return _HEADER_PACK(FCGI_VERSION_1, RecordType.BEGIN_REQUEST, request_id, 8, 0) + body


def decode_begin_request(content: bytes) -> tuple[int, bool]:
    """(role, keep_conn) from a BEGIN_REQUEST body; the role is a ``Role`` when known."""
    if len(content) != BEGIN_REQUEST_BODY.size:
        raise RemoteProtocolError(f"BEGIN_REQUEST body is {len(content)} bytes, not 8")
    role, flags = BEGIN_REQUEST_BODY.unpack(content)
    return _ROLES.get(role, role), bool(flags & FCGI_KEEP_CONN)


def encode_end_request(
    request_id: int,
    app_status: int = 0,
    protocol_status: int = ProtocolStatus.REQUEST_COMPLETE,
) -> bytes:
    _check_request_id(request_id)
    if not -0x80000000 <= app_status <= 0xFFFFFFFF:
        raise LocalProtocolError(f"app status {app_status} does not fit 32 bits")
    if not 0 <= protocol_status <= 0xFF:
        raise LocalProtocolError(f"protocol status {protocol_status} is outside 0..255")
    body = END_REQUEST_BODY.pack(app_status & 0xFFFFFFFF, protocol_status)
    return _HEADER_PACK(FCGI_VERSION_1, RecordType.END_REQUEST, request_id, 8, 0) + body


def decode_end_request(content: bytes) -> tuple[int, int]:
    """(app_status, protocol_status) from an END_REQUEST body (status a ``ProtocolStatus``
    when known)."""
    if len(content) != END_REQUEST_BODY.size:
        raise RemoteProtocolError(f"END_REQUEST body is {len(content)} bytes, not 8")
    app_status, protocol_status = END_REQUEST_BODY.unpack(content)
    return app_status, _STATUSES.get(protocol_status, protocol_status)


def encode_abort_request(request_id: int) -> bytes:
    _check_request_id(request_id)
    return _HEADER_PACK(FCGI_VERSION_1, RecordType.ABORT_REQUEST, request_id, 0, 0)


def encode_get_values(names: Iterable[bytes], *, pad: bool = True) -> bytes:
    return _management(RecordType.GET_VALUES, encode_pairs((n, b"") for n in names), pad)


def encode_get_values_result(values: Iterable[tuple[bytes, bytes]], *, pad: bool = True) -> bytes:
    return _management(RecordType.GET_VALUES_RESULT, encode_pairs(values), pad)


def encode_unknown_type(record_type: int) -> bytes:
    if not 0 <= record_type <= 0xFF:
        raise LocalProtocolError(f"record type {record_type} is outside 0..255")
    body = UNKNOWN_TYPE_BODY.pack(record_type)
    return _HEADER_PACK(FCGI_VERSION_1, RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, 8, 0) + body


def decode_unknown_type(content: bytes) -> int:
    if len(content) != UNKNOWN_TYPE_BODY.size:
        raise RemoteProtocolError(f"UNKNOWN_TYPE body is {len(content)} bytes, not 8")
    record_type: int = UNKNOWN_TYPE_BODY.unpack(content)[0]
    return record_type


def _management(record_type: int, content: bytes, pad: bool) -> bytes:
    if len(content) > MAX_CONTENT_LEN:
        raise LocalProtocolError(
            f"{RecordType(record_type).name} content of {len(content)} bytes exceeds one record"
        )
    return encode_record(record_type, FCGI_NULL_REQUEST_ID, content, pad=pad)


def encode_request(
    request_id: int,
    params: Sequence[tuple[bytes, bytes]],
    *,
    keep_conn: bool,
    role: int = Role.RESPONDER,
    stdin: bytes | None = None,
    split_params: bool = True,
    pad: bool = True,
    pad_empty: bool = False,
) -> bytes:
    """BEGIN_REQUEST + PARAMS records + the empty PARAMS record, in one buffer.

    With ``stdin`` given, its records and the empty STDIN record follow (a
    request whose whole body is known; ``stdin=b""`` for a request without
    body). With ``stdin=None`` the caller streams the body afterwards.
    """
    parts: list[_Buffer] = [encode_begin_request(request_id, role, keep_conn=keep_conn)]
    _params_parts(
        parts, request_id, params, split_params=split_params, pad=pad, pad_empty=pad_empty
    )
    if stdin is not None:
        if stdin:
            _stream_parts(parts, RecordType.STDIN, request_id, stdin, pad)
        parts.append(_end_marker(RecordType.STDIN, request_id, pad_empty))
    return b"".join(parts)


def encode_response(
    request_id: int,
    stdout: bytes,
    *,
    end: bool = True,
    app_status: int = 0,
    pad: bool = True,
    pad_empty: bool = False,
) -> bytes:
    """STDOUT records carrying ``stdout``; with ``end`` (the default) also the empty STDOUT
    record and END_REQUEST(app_status, REQUEST_COMPLETE)."""
    _check_request_id(request_id)
    parts: list[_Buffer] = []
    if stdout:
        _stream_parts(parts, RecordType.STDOUT, request_id, stdout, pad)
    if end:
        parts.append(_end_marker(RecordType.STDOUT, request_id, pad_empty))
        parts.append(encode_end_request(request_id, app_status))
    return b"".join(parts)


_ROLES: Final[dict[int, int]] = {int(r): r for r in Role}
_STATUSES: Final[dict[int, int]] = {int(s): s for s in ProtocolStatus}
