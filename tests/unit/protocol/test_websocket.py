"""The sans-IO WebSocket codec: handshake checks, framing both ways, limits and errors."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.websocket import (
    CLIENT,
    CLOSED,
    NEED_DATA,
    SERVER,
    BytesMessage,
    CloseCode,
    CloseReceived,
    HandshakeError,
    Ping,
    Pong,
    TextMessage,
    WebSocketConnection,
    WebSocketError,
    WebSocketProtocolError,
    accept_key,
    apply_mask,
    check_request,
    encode_frame,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"


def events(conn: WebSocketConnection) -> list[object]:
    out: list[object] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is CLOSED:
            return out
        out.append(event)


def server() -> WebSocketConnection:
    return WebSocketConnection(SERVER, max_message_size=1 << 20)


def client() -> WebSocketConnection:
    return WebSocketConnection(CLIENT, max_message_size=1 << 20)


def masked(opcode: int, payload: bytes, *, fin: bool = True, first_extra: int = 0) -> bytes:
    frame = bytearray(encode_frame(opcode, payload, fin=fin, mask=MASK))
    frame[0] |= first_extra
    return bytes(frame)


# -- handshake ---------------------------------------------------------------------------------


def test_accept_key_is_the_rfc_example() -> None:
    # RFC 6455 section 1.3.
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_check_request_accepts_a_valid_handshake() -> None:
    got = check_request("GET", "websocket", "keep-alive, Upgrade", KEY, "13")
    assert got == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("method", "upgrade", "connection", "key", "version", "status"),
    [
        ("POST", "websocket", "Upgrade", KEY, "13", 400),
        ("GET", "h2c", "Upgrade", KEY, "13", 400),
        ("GET", None, "Upgrade", KEY, "13", 400),
        ("GET", "websocket", "keep-alive", KEY, "13", 400),
        ("GET", "websocket", "Upgrade", None, "13", 400),
        ("GET", "websocket", "Upgrade", "c2hvcnQ=", "13", 400),
        ("GET", "websocket", "Upgrade", "not base64!", "13", 400),
        ("GET", "websocket", "Upgrade", KEY, "8", 426),
        ("GET", "websocket", "Upgrade", KEY, None, 426),
    ],
)
def test_check_request_rejects(
    method: str,
    upgrade: str | None,
    connection: str | None,
    key: str | None,
    version: str | None,
    status: int,
) -> None:
    with pytest.raises(HandshakeError) as info:
        check_request(method, upgrade, connection, key, version)
    assert info.value.status == status


# -- round trips -------------------------------------------------------------------------------


@given(st.text(max_size=3000))
def test_text_round_trip_client_to_server(text: str) -> None:
    srv, cli = server(), client()
    srv.receive_data(cli.send_text(text))
    assert events(srv) == [TextMessage(text)]


@given(st.binary(max_size=70000))
@settings(max_examples=50)
def test_bytes_round_trip_both_ways_at_every_length_class(data: bytes) -> None:
    srv, cli = server(), client()
    srv.receive_data(cli.send_bytes(data))
    assert events(srv) == [BytesMessage(data)]
    cli.receive_data(srv.send_bytes(data))
    assert events(cli) == [BytesMessage(data)]


@given(st.binary(min_size=1, max_size=2000), st.data())
def test_frames_split_at_any_byte_reassemble(data: bytes, draw: st.DataObject) -> None:
    srv, cli = server(), client()
    wire = cli.send_bytes(data) + cli.ping(b"p") + cli.send_text("after")
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    got: list[object] = []
    start = 0
    for cut in [*cuts, len(wire)]:
        if cut > start:  # (an empty piece would mean the end of the transport)
            srv.receive_data(wire[start:cut])
        start = cut
        got += events(srv)
    assert got == [BytesMessage(data), Ping(b"p"), TextMessage("after")]


@given(
    st.lists(st.text(max_size=40), min_size=1, max_size=6),
    st.lists(st.binary(max_size=20), max_size=3),
)
def test_fragmented_text_with_interleaved_pings(pieces: list[str], pings: list[bytes]) -> None:
    """Fragments may split a character's UTF-8 bytes; control frames may come between them."""
    srv, cli = server(), client()
    whole = "".join(pieces).encode()
    # Cut the encoded text at arbitrary byte offsets, not at character boundaries.
    step = max(1, len(whole) // len(pieces))
    parts = [whole[i : i + step] for i in range(0, len(whole), step)] or [b""]
    wire = b""
    for index, part in enumerate(parts):
        opcode = 0x1 if index == 0 else 0x0
        wire += encode_frame(opcode, part, fin=index == len(parts) - 1, mask=MASK)
        if index < min(len(pings), len(parts) - 1):
            wire += cli.ping(pings[index])
    srv.receive_data(wire)
    got = events(srv)
    assert got[-1] == TextMessage(whole.decode())
    assert got[:-1] == [Ping(p) for p in pings[: len(parts) - 1]]


def test_send_fragments_is_reassembled() -> None:
    srv, cli = server(), client()
    srv.receive_data(cli.send_fragments([b"ab", b"", b"cd"]))
    assert events(srv) == [BytesMessage(b"abcd")]


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_mask_is_an_involution(data: bytes, mask: bytes) -> None:
    assert apply_mask(apply_mask(data, mask), mask) == data
    assert apply_mask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_server_frames_are_unmasked_and_client_frames_masked() -> None:
    assert server().send_text("hi") == b"\x81\x02hi"
    frame = WebSocketConnection(CLIENT, mask_source=lambda: MASK).send_text("hi")
    assert frame[:2] == b"\x81\x82" and frame[2:6] == MASK
    assert apply_mask(frame[6:], MASK) == b"hi"


def test_length_encodings() -> None:
    srv = server()
    assert srv.send_bytes(b"x" * 125)[1] == 125
    assert srv.send_bytes(b"x" * 126)[1:4] == b"\x7e\x00\x7e"
    assert srv.send_bytes(b"x" * 65536)[1:10] == b"\x7f" + struct.pack("!Q", 65536)


# -- control frames and closing ----------------------------------------------------------------


def test_ping_pong_events_and_pong_reply() -> None:
    srv, cli = server(), client()
    srv.receive_data(cli.ping(b"hello") + cli.pong(b"x"))
    assert events(srv) == [Ping(b"hello"), Pong(b"x")]
    cli.receive_data(srv.pong(b"hello"))
    assert events(cli) == [Pong(b"hello")]


def test_close_handshake_server_initiated() -> None:
    srv, cli = server(), client()
    cli.receive_data(srv.close(1001, "bye"))
    assert events(cli) == [CloseReceived(1001, "bye")]
    assert srv.close_sent and not srv.closed
    srv.receive_data(cli.close(1001))
    assert events(srv) == [CloseReceived(1001, "")]
    assert srv.closed and cli.closed
    assert srv.close() == b""  # once only
    with pytest.raises(WebSocketError):
        srv.send_text("late")


def test_close_without_code_is_1005_and_is_echoed_without_code() -> None:
    srv, cli = server(), client()
    srv.receive_data(cli.close(CloseCode.NO_STATUS))
    assert events(srv) == [CloseReceived(1005, "")]
    assert srv.close(1005) == b"\x88\x00"


def test_end_of_transport_without_close_is_closed_not_an_error() -> None:
    srv, cli = server(), client()
    srv.receive_data(cli.send_text("a")[:3])
    srv.receive_data(b"")
    assert srv.next_event() is CLOSED
    assert not srv.closed


def test_close_reason_is_cut_to_fit_a_control_frame() -> None:
    frame = server().close(1000, "é" * 100)
    assert len(frame) <= 127
    cli = client()
    cli.receive_data(frame)
    (event,) = events(cli)
    assert isinstance(event, CloseReceived) and set(event.reason) == {"é"}


def test_invalid_local_close_codes_are_replaced() -> None:
    cli = client()
    cli.receive_data(server().close(1006))
    assert events(cli) == [CloseReceived(1001, "")]


# -- errors ------------------------------------------------------------------------------------


def error_code(wire: bytes, conn: WebSocketConnection | None = None) -> int:
    conn = conn or server()
    conn.receive_data(wire)
    with pytest.raises(WebSocketProtocolError) as info:
        events(conn)
    # The connection stays failed.
    with pytest.raises(WebSocketProtocolError):
        conn.next_event()
    return info.value.code


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(0x1, b"hi"), 1002),  # unmasked from a client
        (masked(0x1, b"hi", first_extra=0x40), 1002),  # RSV1 without an extension
        (masked(0x3, b""), 1002),  # reserved data opcode
        (masked(0xB, b""), 1002),  # reserved control opcode
        (masked(0x0, b"x"), 1002),  # continuation with no message
        (masked(0x1, b"a", fin=False) + masked(0x2, b"b"), 1002),  # data inside a message
        (masked(0x9, b"p", fin=False), 1002),  # fragmented ping
        (masked(0x9, b"p" * 126), 1002),  # control frame too long
        (masked(0x8, b"\x03"), 1002),  # 1-byte close payload
        (masked(0x8, struct.pack("!H", 1005)), 1002),  # close code not for the wire
        (masked(0x8, struct.pack("!H", 999)), 1002),
        (masked(0x8, struct.pack("!H", 5000)), 1002),
        (masked(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),  # reason not UTF-8
        (masked(0x1, b"\xc3\x28"), 1007),  # text not UTF-8
        (masked(0x8, b"") + masked(0x1, b"late"), 1002),  # data after the peer's close
    ],
)
def test_protocol_errors_carry_their_close_code(wire: bytes, code: int) -> None:
    assert error_code(wire) == code


def test_invalid_utf8_fails_on_the_first_bad_fragment() -> None:
    srv = server()
    srv.receive_data(masked(0x1, b"ok \xff", fin=False))
    with pytest.raises(WebSocketProtocolError) as info:
        events(srv)
    assert info.value.code == 1007


def test_truncated_utf8_at_the_end_of_a_message_is_invalid() -> None:
    assert error_code(masked(0x1, "é".encode()[:1])) == 1007


def test_64_bit_length_with_top_bit_is_an_error() -> None:
    wire = bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 63) + MASK
    assert error_code(wire) == 1002


def test_message_size_is_checked_from_the_header_before_buffering() -> None:
    srv = WebSocketConnection(SERVER, max_message_size=1000)
    # Only the header of a 2000-byte frame: refused before its payload arrives.
    header = bytes((0x82, 0xFE)) + struct.pack("!H", 2000) + MASK
    assert error_code(header, srv) == 1009


def test_message_size_counts_every_fragment() -> None:
    srv = WebSocketConnection(SERVER, max_message_size=1000)
    wire = masked(0x2, b"x" * 600, fin=False) + masked(0x0, b"x" * 600)
    assert error_code(wire, srv) == 1009


def test_fail_answers_with_the_error_code() -> None:
    srv, cli = server(), client()
    srv.receive_data(masked(0x1, b"\xff"))
    with pytest.raises(WebSocketProtocolError) as info:
        events(srv)
    cli.receive_data(srv.fail(info.value))
    (event,) = events(cli)
    assert isinstance(event, CloseReceived) and event.code == 1007


def test_client_rejects_masked_frames_from_a_server() -> None:
    assert error_code(masked(0x1, b"hi"), client()) == 1002


def test_many_small_frames_in_one_buffer() -> None:
    srv, cli = server(), client()
    srv.receive_data(b"".join(cli.send_bytes(b"%d" % i) for i in range(5000)))
    got = events(srv)
    assert len(got) == 5000 and got[-1] == BytesMessage(b"4999")


def test_key_helper_matches_base64_of_16_bytes() -> None:
    key = base64.b64encode(bytes(range(16))).decode()
    assert len(check_request("GET", "WebSocket", "Upgrade", key, "13")) == 28
