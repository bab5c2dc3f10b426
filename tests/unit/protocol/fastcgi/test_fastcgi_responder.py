"""The responder's hot-path helpers (``protocol/fastcgi/responder.py``) and what the codec
builds on them: a small complete response framed in one piece, and the look ahead for an
ABORT_REQUEST among records received and not yet read (which reads none of them)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.protocol.fastcgi import SERVER, FastCGIConnection, records, responder
from corral.protocol.fastcgi.constants import RecordType
from corral.protocol.fastcgi.events import NEED_DATA, AbortRequest, BeginRequest, Params
from corral.protocol.fastcgi.responder import abort_in, frame_small_response

PAIRS = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")]


def whole(rid: int, pairs: list[tuple[bytes, bytes]] = PAIRS) -> bytes:
    return records.encode_request(rid, pairs, keep_conn=True, stdin=b"")


@given(st.integers(1, 65535), st.binary(min_size=1, max_size=65535))
def test_a_small_response_is_framed_as_the_records_module_frames_it(
    rid: int, stdout: bytes
) -> None:
    assert frame_small_response(rid, stdout) == records.encode_response(rid, stdout)


def test_the_end_records_table_is_emptied_when_full_and_follows_the_ids_in_use() -> None:
    """(``corral.protocol.memo``'s policy: a front that used more ids than the table holds
    still gets the shortcut for the ids it uses now.)"""
    saved = dict(responder._END_RECORDS)
    responder._END_RECORDS.clear()
    try:
        for rid in range(1, responder._END_RECORDS_MAX + 1):
            frame_small_response(rid, b"x")
        assert len(responder._END_RECORDS) == responder._END_RECORDS_MAX
        last = responder._END_RECORDS_MAX + 1
        assert frame_small_response(last, b"x") == records.encode_response(last, b"x")
        remembered = dict(responder._END_RECORDS)
        assert remembered == {last: records.encode_response(last, b"")}
    finally:
        responder._END_RECORDS.clear()
        responder._END_RECORDS.update(saved)


@given(st.integers(1, 300), st.binary(min_size=1, max_size=2000))
def test_send_response_of_a_small_answer_ends_the_request_as_before(
    rid: int, stdout: bytes
) -> None:
    server = FastCGIConnection(SERVER)
    server.receive_data(records.encode_request(rid, PAIRS, keep_conn=False, stdin=b""))
    assert server.next_whole_request() is not None
    assert server.send_response(rid, stdout) == records.encode_response(rid, stdout)
    assert not server.is_active(rid)
    assert server.must_close


def test_an_abort_ahead_is_found_and_nothing_is_read() -> None:
    server = FastCGIConnection(SERVER)
    server.receive_data(whole(1) + whole(2) + whole(3) + records.encode_abort_request(2))
    taken = server.next_whole_request()
    assert taken is not None and taken[0] == 1
    before = server.buffered
    assert not server.abort_ahead(1)
    assert server.abort_ahead(2)
    assert not server.abort_ahead(3)
    assert server.buffered == before  # nothing consumed
    server.send_response(1, b"Status: 200 OK\r\n\r\n")
    # The next requests are still taken whole.
    taken = server.next_whole_request()
    assert taken is not None and taken[0] == 2


def test_the_bytes_of_an_abort_inside_a_value_are_not_an_abort() -> None:
    # A header value holding what an ABORT_REQUEST header for request 2 looks like.
    lookalike = records.encode_abort_request(2)
    data = whole(1, [*PAIRS, (b"HTTP_X", lookalike)]) + whole(3)
    assert lookalike in data
    server = FastCGIConnection(SERVER)
    server.receive_data(data)
    assert not server.abort_ahead(2)
    assert not abort_in(data, 0, 2)
    assert abort_in(data + records.encode_abort_request(2), 0, 2)


def test_an_abort_ahead_is_found_in_a_lent_view_too() -> None:
    # receive_view: the codec parses the caller's buffer in place (a record cut by the end of
    # a read is completed from the next one).
    data = whole(1) + records.encode_abort_request(1)
    server = FastCGIConnection(SERVER)
    server.receive_view(memoryview(data[:20]))
    assert isinstance(server.next_event(), BeginRequest)
    assert server.next_event() is NEED_DATA
    server.receive_view(memoryview(bytearray(data[20:])))
    assert server.buffered == len(data) - 16
    assert server.abort_ahead(1)
    assert not server.abort_ahead(2)
    events = []
    while (event := server.next_event()) is not NEED_DATA:
        events.append(event)
    assert isinstance(events[0], Params) and events[-1] == AbortRequest(1)


def test_a_header_that_is_not_fastcgi_ends_the_look() -> None:
    data = whole(1) + b"\x07" + bytes(7) + records.encode_abort_request(1)
    assert not abort_in(data, 0, 1)
    assert abort_in(records.encode_stream(RecordType.STDIN, 1, b"x") + data[-8:], 0, 1)
