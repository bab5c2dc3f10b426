"""Pure record encoders/decoders of corral.protocol.fastcgi.records."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import pairmemo
from corral.protocol.fastcgi import (
    LocalProtocolError,
    ProtocolStatus,
    RecordType,
    RemoteProtocolError,
    Role,
    records,
)

pairs_strategy = st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=20)


def split_records(data: bytes) -> list[tuple[int, int, bytes, int]]:
    """(type, request id, content, padding length) of each record, parsed independently."""
    out = []
    pos = 0
    while pos < len(data):
        version, rtype, rid, clen, plen = struct.unpack_from(">BBHHBx", data, pos)
        assert version == 1
        content = data[pos + 8 : pos + 8 + clen]
        assert len(content) == clen
        assert data[pos + 8 + clen : pos + 8 + clen + plen] == bytes(plen)
        out.append((rtype, rid, content, plen))
        pos += 8 + clen + plen
    assert pos == len(data)
    return out


def test_header_layout_matches_the_specification() -> None:
    header = records.pack_header(RecordType.STDOUT, 0x1234, 0xABCD, 3)
    assert header == bytes([1, 6, 0x12, 0x34, 0xAB, 0xCD, 3, 0])
    assert records.unpack_header(header) == (1, 6, 0x1234, 0xABCD, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((RecordType.STDOUT, 70000, 0, 0), "request id"),
        ((RecordType.STDOUT, 1, 65536, 0), "65535"),
        ((RecordType.STDOUT, 1, 0, 256), "padding"),
        ((256, 1, 0, 0), "record type"),
    ],
)
def test_pack_header_rejects_values_that_do_not_fit(
    args: tuple[int, int, int, int], message: str
) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        records.pack_header(*args)


def test_unpack_header_of_truncated_bytes_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError):
        records.unpack_header(b"\x01\x06\x00")


def test_short_pairs_use_one_byte_lengths() -> None:
    assert records.encode_pairs([(b"AB", b"xyz")]) == b"\x02\x03ABxyz"


@pytest.mark.parametrize(("n", "v"), [(127, 128), (128, 127), (128, 128), (127, 127), (0, 300)])
def test_lengths_of_128_and_more_use_four_bytes(n: int, v: int) -> None:
    name, value = b"n" * n, b"v" * v
    encoded = records.encode_pairs([(name, value)])
    prefix = (4 if n > 127 else 1) + (4 if v > 127 else 1)
    assert len(encoded) == prefix + n + v
    if n > 127:
        assert struct.unpack_from(">I", encoded)[0] == n | 0x80000000
    else:
        assert encoded[0] == n
    assert records.decode_pairs(encoded) == [(name, value)]


@given(pairs_strategy)
def test_pairs_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    assert records.decode_pairs(records.encode_pairs(pairs)) == pairs


@given(pairs_strategy.filter(bool), st.data())
def test_every_strict_prefix_of_a_pair_stream_is_rejected_or_shorter(
    pairs: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    encoded = records.encode_pairs(pairs)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    try:
        decoded = records.decode_pairs(encoded[:cut])
    except RemoteProtocolError:
        return
    # A cut at a pair boundary decodes to the pairs before it.
    assert decoded == pairs[: len(decoded)]
    assert len(decoded) < len(pairs)


@pytest.mark.parametrize(
    "stream",
    [b"\x05", b"\x85\x00\x00", b"\x01\x85\x00", b"\x03\x03ab", b"\x80\x00\x00\x05\x00abcd"],
)
def test_truncated_pairs_are_remote_errors(stream: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        records.decode_pairs(stream)


def test_stream_content_is_padded_to_eight_bytes_and_empty_records_are_not() -> None:
    out = split_records(records.encode_stream(RecordType.STDOUT, 3, b"hello", end=True))
    assert out == [(RecordType.STDOUT, 3, b"hello", 3), (RecordType.STDOUT, 3, b"", 0)]
    assert records.encode_stream(RecordType.STDIN, 3, b"") == records.pack_header(
        RecordType.STDIN, 3, 0, 0
    )


def test_padding_can_be_turned_off_or_forced_on_empty_records() -> None:
    assert split_records(records.encode_stream(RecordType.STDOUT, 1, b"abc", pad=False)) == [
        (RecordType.STDOUT, 1, b"abc", 0)
    ]
    assert split_records(records.encode_stream(RecordType.STDOUT, 1, b"", pad_empty=True)) == [
        (RecordType.STDOUT, 1, b"", 8)
    ]


@pytest.mark.parametrize("size", [65534, 65535, 65536, 65535 * 2 + 7])
def test_streams_split_at_65535_bytes(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    out = split_records(records.encode_stream(RecordType.STDIN, 9, data))
    assert all(len(c) <= 65535 for _, _, c, _ in out)
    assert b"".join(c for _, _, c, _ in out) == data
    assert len(out) == -(-size // 65535)


def test_begin_and_end_request_bodies() -> None:
    begin = records.encode_begin_request(7, Role.FILTER, keep_conn=True)
    assert split_records(begin) == [(RecordType.BEGIN_REQUEST, 7, b"\x00\x03\x01" + bytes(5), 0)]
    assert records.decode_begin_request(begin[8:]) == (Role.FILTER, True)
    end = records.encode_end_request(7, 0xDEADBEEF, ProtocolStatus.OVERLOADED)
    assert split_records(end) == [
        (RecordType.END_REQUEST, 7, b"\xde\xad\xbe\xef\x02\x00\x00\x00", 0)
    ]
    assert records.decode_end_request(end[8:]) == (0xDEADBEEF, ProtocolStatus.OVERLOADED)
    # A negative exit status is sent as its 32-bit two's complement.
    assert records.decode_end_request(records.encode_end_request(1, -1)[8:])[0] == 0xFFFFFFFF


@pytest.mark.parametrize(
    "decode",
    [records.decode_begin_request, records.decode_end_request, records.decode_unknown_type],
)
@pytest.mark.parametrize("size", [0, 7, 9])
def test_fixed_bodies_of_the_wrong_size_are_remote_errors(decode: object, size: int) -> None:
    assert callable(decode)
    with pytest.raises(RemoteProtocolError):
        decode(bytes(size))


def test_encode_request_is_begin_params_and_optional_stdin() -> None:
    params = [(b"REQUEST_METHOD", b"POST"), (b"CONTENT_LENGTH", b"4")]
    out = split_records(records.encode_request(5, params, keep_conn=True, stdin=b"body"))
    assert [(t, rid) for t, rid, _, _ in out] == [
        (RecordType.BEGIN_REQUEST, 5),
        (RecordType.PARAMS, 5),
        (RecordType.PARAMS, 5),
        (RecordType.STDIN, 5),
        (RecordType.STDIN, 5),
    ]
    assert records.decode_begin_request(out[0][2]) == (Role.RESPONDER, True)
    assert records.decode_pairs(out[1][2]) == params
    assert out[2][2] == b"" and out[3][2] == b"body" and out[4][2] == b""
    no_body = split_records(records.encode_request(5, params, keep_conn=False))
    assert [t for t, _, _, _ in no_body] == [RecordType.BEGIN_REQUEST] + [RecordType.PARAMS] * 2
    empty_body = split_records(records.encode_request(5, [], keep_conn=False, stdin=b""))
    assert [(t, c) for t, _, c, _ in empty_body][1:] == [
        (RecordType.PARAMS, b""),
        (RecordType.STDIN, b""),
    ]


def test_encode_response_closes_stdout_and_ends_the_request() -> None:
    out = split_records(records.encode_response(2, b"Status: 200 OK\r\n\r\n", app_status=3))
    assert [(t, c) for t, _, c, _ in out] == [
        (RecordType.STDOUT, b"Status: 200 OK\r\n\r\n"),
        (RecordType.STDOUT, b""),
        (RecordType.END_REQUEST, b"\x00\x00\x00\x03" + bytes(4)),
    ]
    assert split_records(records.encode_response(2, b"x", end=False)) == [
        (RecordType.STDOUT, 2, b"x", 7)
    ]


def test_split_params_false_keeps_every_pair_whole() -> None:
    params = [(b"HTTP_X_%d" % i, b"v" * 1000) for i in range(200)]  # ~200 KB of params
    split = split_records(records.encode_params(1, params))
    whole = split_records(records.encode_params(1, params, split_params=False))
    assert len(split) >= 4 and len(whole) >= 4
    for _, _, content, _ in whole[:-1]:
        assert records.decode_pairs(content)  # each record decodes on its own
    assert whole[-1][2] == b""
    assert [p for _, _, c, _ in whole for p in records.decode_pairs(c)] == params
    # Splitting mode cuts pairs in the middle, so some record does not decode alone.
    with pytest.raises(RemoteProtocolError):
        for _, _, content, _ in split[:-1]:
            records.decode_pairs(content)


def test_split_params_false_refuses_a_pair_larger_than_a_record() -> None:
    with pytest.raises(LocalProtocolError, match="split_params=False"):
        records.encode_params(1, [(b"HTTP_COOKIE", b"c" * 70000)], split_params=False)
    # ...which the default mode sends split across records.
    out = split_records(records.encode_params(1, [(b"HTTP_COOKIE", b"c" * 70000)]))
    assert records.decode_pairs(b"".join(c for _, _, c, _ in out)) == [
        (b"HTTP_COOKIE", b"c" * 70000)
    ]


def test_management_records_use_request_id_zero() -> None:
    out = split_records(records.encode_get_values([b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS"]))
    assert out[0][:2] == (RecordType.GET_VALUES, 0)
    assert records.decode_pairs(out[0][2]) == [(b"FCGI_MAX_CONNS", b""), (b"FCGI_MPXS_CONNS", b"")]
    result = split_records(records.encode_get_values_result([(b"FCGI_MPXS_CONNS", b"0")]))
    assert result[0][:2] == (RecordType.GET_VALUES_RESULT, 0)
    unknown = split_records(records.encode_unknown_type(42))
    assert unknown == [(RecordType.UNKNOWN_TYPE, 0, b"\x2a" + bytes(7), 0)]


@pytest.mark.parametrize("request_id", [0, 65536, -1])
def test_request_records_need_a_request_id_in_1_to_65535(request_id: int) -> None:
    with pytest.raises(LocalProtocolError):
        records.encode_request(request_id, [], keep_conn=False)
    with pytest.raises(LocalProtocolError):
        records.encode_response(request_id, b"x")


_PAIR_BYTES = st.binary(max_size=200) | st.sampled_from([b"", b"GET", b"HTTP_HOST", b"x" * 127])


@given(st.lists(st.tuples(_PAIR_BYTES, _PAIR_BYTES), max_size=8))
def test_remembered_pair_encoding_is_the_plain_one(pairs: list[tuple[bytes, bytes]]) -> None:
    expected = records.encode_pairs(pairs)
    assert pairmemo.encode_pairs_remembered(pairs) == expected
    assert pairmemo.encode_pairs_remembered(pairs) == expected  # (now from the table)


def test_remembered_pairs_are_short_and_bounded() -> None:
    saved = dict(pairmemo._ENCODED)
    try:
        pairmemo._ENCODED.clear()
        long_pair = (b"HTTP_COOKIE", b"c" * 200)
        pairmemo.encode_pairs_remembered([(b"REQUEST_METHOD", b"GET"), long_pair])
        assert list(pairmemo._ENCODED) == [(b"REQUEST_METHOD", b"GET")]
        junk = {(b"N%d" % i, b"v"): b"" for i in range(pairmemo._ENCODED_MAX)}
        pairmemo._ENCODED.update(junk)
        assert pairmemo.encode_pairs_remembered([(b"A", b"b")]) == b"\x01\x01Ab"
        assert list(pairmemo._ENCODED) == [(b"A", b"b")]  # full: emptied, then this one
    finally:
        pairmemo._ENCODED.clear()
        pairmemo._ENCODED.update(saved)
