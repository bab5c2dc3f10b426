"""FastCGIConnection: round trips in both roles, the state table, and hostile input."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.protocol.fastcgi import (
    CLIENT,
    CLOSED,
    NEED_DATA,
    SERVER,
    AbortRequest,
    BeginRequest,
    Data,
    EndRequest,
    Event,
    FastCGIConnection,
    GetValues,
    GetValuesResult,
    LocalProtocolError,
    NextEvent,
    Params,
    ProtocolStatus,
    RecordType,
    RemoteProtocolError,
    Role,
    Stderr,
    Stdin,
    Stdout,
    UnknownManagementRecord,
    UnknownType,
    records,
)

PARAMS = [
    (b"REQUEST_METHOD", b"POST"),
    (b"SCRIPT_NAME", b""),
    (b"PATH_INFO", b"/caf\xc3\xa9"),
    (b"HTTP_COOKIE", b"k=" + b"v" * 300),  # 4-byte value length
    (b"HTTP_X_" + b"N" * 200, b"short"),  # 4-byte name length
    (b"EMPTY", b""),
]


def drain(conn: FastCGIConnection) -> list[NextEvent]:
    """Events until NEED_DATA or CLOSED (included)."""
    out: list[NextEvent] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if event is NEED_DATA or event is CLOSED:
            return out


def events_only(items: Sequence[NextEvent]) -> list[NextEvent]:
    return [e for e in items if e is not NEED_DATA and e is not CLOSED]


def feed_whole(conn: FastCGIConnection, data: bytes) -> list[NextEvent]:
    conn.receive_data(data)
    return events_only(drain(conn))


def feed_bytewise(conn: FastCGIConnection, data: bytes) -> list[NextEvent]:
    out: list[NextEvent] = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        out += events_only(drain(conn))
    return out


def feed_with_trailing(conn: FastCGIConnection, data: bytes) -> list[NextEvent]:
    # The bytes arrive together with the first 5 bytes of a following record.
    conn.receive_data(data + records.pack_header(RecordType.STDIN, 1, 3, 5)[:5])
    got = drain(conn)
    assert got[-1] is NEED_DATA
    return events_only(got)


def feed_in_thirds(conn: FastCGIConnection, data: bytes) -> list[NextEvent]:
    out: list[NextEvent] = []
    third = max(len(data) // 3, 1)
    for i in range(0, len(data), third):
        conn.receive_data(data[i : i + third])
        out += events_only(drain(conn))
    return out


def lend(
    conn: FastCGIConnection, pieces: Sequence[bytes], use_view: Sequence[bool] = ()
) -> list[NextEvent]:
    """Each piece read into one reused buffer and fed with ``receive_view`` (or, where
    ``use_view`` says False, ``receive_data``), drained to NEED_DATA, then the buffer is
    scribbled over: the events must not depend on what the buffer held before."""
    size = max((len(p) for p in pieces), default=1)
    buffer = bytearray(size)
    view = memoryview(buffer)
    out: list[NextEvent] = []
    for index, piece in enumerate(pieces):
        if index < len(use_view) and not use_view[index]:
            conn.receive_data(piece)
        else:
            buffer[: len(piece)] = piece
            conn.receive_view(view[: len(piece)])
        out += events_only(drain(conn))
        buffer[:] = b"\xa5" * size
    return out


def feed_lent_bytewise(conn: FastCGIConnection, data: bytes) -> list[NextEvent]:
    return lend(conn, [data[i : i + 1] for i in range(len(data))])


def feed_lent_in_thirds(conn: FastCGIConnection, data: bytes) -> list[NextEvent]:
    third = max(len(data) // 3, 1)
    return lend(conn, [data[i : i + third] for i in range(0, len(data), third)])


FEEDERS: list[Callable[[FastCGIConnection, bytes], list[NextEvent]]] = [
    feed_whole,
    feed_bytewise,
    feed_with_trailing,
    feed_in_thirds,
    feed_lent_bytewise,
    feed_lent_in_thirds,
]
feeders = pytest.mark.parametrize("feed", FEEDERS, ids=lambda f: f.__name__)
Feed = Callable[[FastCGIConnection, bytes], list[NextEvent]]


def send_all(conn: FastCGIConnection, events: Sequence[Event]) -> bytes:
    return b"".join(conn.send(e) for e in events)


# ------------------------------------------------------------------------------- round trips


@feeders
def test_a_responder_request_round_trips_through_both_roles(feed: Feed) -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    request: list[Event] = [
        BeginRequest(1, Role.RESPONDER, keep_conn=True),
        Params(1, PARAMS),
        Stdin(1, b"a=1&b=2"),
        Stdin(1, b"x" * 70000),  # more than one record
        Stdin(1, b""),
    ]
    got = feed(server, send_all(client, request))
    # A 70000-byte send arrives as two records, i.e. two events.
    assert got[:3] == request[:3]
    assert got[-1] == Stdin(1, b"")
    assert b"".join(e.data for e in got[3:-1] if isinstance(e, Stdin)) == b"x" * 70000
    assert server.active_requests == {1}

    response: list[Event] = [
        Stderr(1, b"a warning\n"),
        Stdout(1, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
        Stdout(1, b"hello"),
        Stderr(1, b""),
        Stdout(1, b""),
        EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE),
    ]
    assert feed(client, send_all(server, response)) == response
    assert client.active_requests == set() and server.active_requests == set()
    assert not client.must_close and not server.must_close


@feeders
def test_a_filter_request_with_data_round_trips(feed: Feed) -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    request: list[Event] = [
        BeginRequest(2, Role.FILTER, keep_conn=False),
        Params(2, []),
        Stdin(2, b"in"),
        Data(2, b"file data"),
        Stdin(2, b""),
        Data(2, b""),
    ]
    assert feed(server, send_all(client, request)) == request
    response: list[Event] = [Stdout(2, b"out"), EndRequest(2, 7, ProtocolStatus.REQUEST_COMPLETE)]
    assert feed(client, send_all(server, response)) == response
    assert client.must_close and server.must_close  # no FCGI_KEEP_CONN


@feeders
def test_abort_request_round_trips(feed: Feed) -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    request: list[Event] = [BeginRequest(3), Params(3, PARAMS), AbortRequest(3)]
    assert feed(server, send_all(client, request)) == request
    assert feed(client, server.send(EndRequest(3, 1))) == [EndRequest(3, 1, 0)]


@feeders
def test_get_values_round_trips(feed: Feed) -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    ask = GetValues([b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"])
    assert feed(server, client.send(ask)) == [ask]
    answer = GetValuesResult([(b"FCGI_MAX_CONNS", b"4"), (b"FCGI_MPXS_CONNS", b"0")])
    assert feed(client, server.send(answer)) == [answer]


@feeders
def test_an_unknown_management_record_is_surfaced_and_answered(feed: Feed) -> None:
    server = FastCGIConnection(SERVER)
    assert feed(server, records.encode_record(42, 0, b"whatever")) == [
        UnknownManagementRecord(42, b"whatever")
    ]
    server = FastCGIConnection(SERVER)
    assert feed(server, records.encode_record(0, 0)) == [UnknownManagementRecord(0, b"")]
    client = FastCGIConnection(CLIENT)
    assert feed(client, server.send(UnknownType(42))) == [UnknownType(42)]


@feeders
def test_send_request_and_send_response_match_the_event_by_event_bytes(feed: Feed) -> None:
    slow_client, fast_client = FastCGIConnection(CLIENT), FastCGIConnection(CLIENT)
    events: list[Event] = [BeginRequest(1, keep_conn=True), Params(1, PARAMS)]
    fast = fast_client.send_request(1, PARAMS, keep_conn=True)
    assert fast == send_all(slow_client, events)
    # Both clients may now stream the body.
    assert fast_client.send(Stdin(1, b"x")) == slow_client.send(Stdin(1, b"x"))
    with_body = FastCGIConnection(CLIENT).send_request(1, PARAMS, keep_conn=True, stdin=b"b")
    assert with_body == fast + records.encode_stream(RecordType.STDIN, 1, b"b", end=True)

    server = FastCGIConnection(SERVER)
    assert feed(server, with_body)[-1] == Stdin(1, b"")
    out = server.send_response(1, b"Status: 204 No Content\r\n\r\n", app_status=0)
    client = FastCGIConnection(CLIENT)
    client.send_request(1, PARAMS, keep_conn=True, stdin=b"b")
    assert feed(client, out) == [
        Stdout(1, b"Status: 204 No Content\r\n\r\n"),
        Stdout(1, b""),
        EndRequest(1, 0, 0),
    ]
    assert not server.is_active(1) and not client.is_active(1)


def test_send_response_without_end_streams_and_keeps_the_request_open() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    server.receive_data(client.send_request(1, [], stdin=b""))
    drain(server)
    assert server.send_response(1, b"", end=False) == b""
    chunk = server.send_response(1, b"part", end=False)
    assert server.is_active(1)
    final = server.send_response(1, b"", app_status=2)
    assert feed_whole(client, chunk + final) == [
        Stdout(1, b"part"),
        Stdout(1, b""),
        EndRequest(1, 2, 0),
    ]


def test_keep_conn_controls_must_close() -> None:
    for keep in (True, False):
        client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
        (begin,) = feed_whole(server, client.send(BeginRequest(1, keep_conn=keep)))
        assert isinstance(begin, BeginRequest) and begin.keep_conn is keep
        feed_whole(server, client.send(Params(1, [])))
        feed_whole(client, server.send(EndRequest(1)))
        assert client.must_close is (not keep)
        assert server.must_close is (not keep)


def test_request_ids_are_reused_after_end_request() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    for _ in range(3):
        feed_whole(server, client.send_request(1, PARAMS, keep_conn=True, stdin=b""))
        assert feed_whole(client, server.send_response(1, b"x"))[-1] == EndRequest(1, 0, 0)


def test_multiplexed_requests_are_tracked_separately() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    data = client.send_request(1, [(b"A", b"1")], keep_conn=True)
    data += client.send_request(2, [(b"A", b"2")], keep_conn=True)
    data += client.send(Stdin(2, b"")) + client.send(Stdin(1, b""))
    assert feed_whole(server, data) == [
        BeginRequest(1, Role.RESPONDER, True),
        Params(1, [(b"A", b"1")]),
        BeginRequest(2, Role.RESPONDER, True),
        Params(2, [(b"A", b"2")]),
        Stdin(2, b""),
        Stdin(1, b""),
    ]
    assert server.active_requests == {1, 2}
    feed_whole(client, server.send_response(2, b"two"))
    assert client.active_requests == {1}


def test_an_unknown_role_is_surfaced_for_the_application_to_refuse() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    (begin,) = feed_whole(server, client.send(BeginRequest(1, role=9)))
    assert begin == BeginRequest(1, 9, False)
    # The responder refuses before reading PARAMS; the client's PARAMS cross its answer.
    refusal = server.send(EndRequest(1, 0, ProtocolStatus.UNKNOWN_ROLE))
    assert feed_whole(server, client.send(Params(1, PARAMS)) + client.send(Stdin(1, b""))) == []
    assert feed_whole(client, refusal) == [EndRequest(1, 0, ProtocolStatus.UNKNOWN_ROLE)]


def test_input_that_crosses_our_end_request_is_dropped_until_the_id_is_reused() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    feed_whole(server, client.send_request(1, PARAMS, keep_conn=True))
    feed_whole(server, client.send(Stdin(1, b"part of a big body")))
    server.send_response(1, b"Status: 413 Payload Too Large\r\n\r\n")  # ends before the body
    late = (
        client.send(Stdin(1, b"more")) + client.send(Stdin(1, b"")) + client.send(AbortRequest(1))
    )
    assert feed_whole(server, late) == []
    fresh = FastCGIConnection(CLIENT).send_request(1, [(b"A", b"b")], keep_conn=True)
    assert feed_whole(server, fresh) == [
        BeginRequest(1, Role.RESPONDER, True),
        Params(1, [(b"A", b"b")]),
    ]


def test_an_abort_for_a_finished_request_is_ignored() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    feed_whole(server, client.send_request(1, [], keep_conn=True, stdin=b""))
    server.send_response(1, b"x")  # input complete and ended: the request is forgotten
    assert server.active_requests == set()
    # The client's abort crossed our END_REQUEST.
    assert feed_whole(server, records.encode_abort_request(1)) == []
    with pytest.raises(RemoteProtocolError, match="STDIN record for request 1, which is not"):
        feed_whole(server, records.encode_stream(RecordType.STDIN, 1, b"x"))


def test_a_tombstone_lasts_until_the_input_ends() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    feed_whole(server, client.send_request(1, [], keep_conn=True))
    server.send_response(1, b"x")
    assert feed_whole(server, client.send(Stdin(1, b"body")) + client.send(Stdin(1, b""))) == []
    with pytest.raises(RemoteProtocolError, match="STDIN record for request 1, which is not"):
        feed_whole(server, records.encode_stream(RecordType.STDIN, 1, b"x"))


def test_a_second_abort_is_ignored() -> None:
    server = FastCGIConnection(SERVER)
    data = records.encode_request(1, [], keep_conn=True)
    data += records.encode_abort_request(1) + records.encode_abort_request(1)
    assert feed_whole(server, data)[-1:] == [AbortRequest(1)]


# ------------------------------------------------------------------------------- params


def test_params_split_across_records_at_every_offset() -> None:
    body = records.encode_pairs(PARAMS)
    for cut in range(1, len(body)):
        server = FastCGIConnection(SERVER)
        data = records.encode_begin_request(1)
        data += records.encode_record(RecordType.PARAMS, 1, body[:cut])
        data += records.encode_record(RecordType.PARAMS, 1, body[cut:])
        data += records.encode_record(RecordType.PARAMS, 1, b"")
        assert feed_whole(server, data)[1:] == [Params(1, PARAMS)], cut


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.binary(max_size=200), st.binary(max_size=200)), max_size=12),
    st.lists(st.integers(1, 50), max_size=20),
    st.booleans(),
)
def test_params_in_any_record_sizes_and_any_padding_decode_to_the_same_pairs(
    pairs: list[tuple[bytes, bytes]], sizes: list[int], pad: bool
) -> None:
    body = records.encode_pairs(pairs)
    data = records.encode_begin_request(1)
    pos = 0
    for size in sizes:
        if pos >= len(body):
            break
        chunk = body[pos : pos + size]
        header = records.pack_header(RecordType.PARAMS, 1, len(chunk), size if pad else 0)
        data += header + chunk + bytes(size if pad else 0)
        pos += size
    if pos < len(body):
        data += records.encode_record(RecordType.PARAMS, 1, body[pos:])
    data += records.encode_record(RecordType.PARAMS, 1, b"", pad_empty=pad)
    server = FastCGIConnection(SERVER)
    assert feed_whole(server, data)[1:] == [Params(1, pairs)]


def test_a_pair_truncated_by_the_end_of_params_is_a_remote_error() -> None:
    server = FastCGIConnection(SERVER)
    body = records.encode_pairs(PARAMS)[:-1]
    data = records.encode_begin_request(1) + records.encode_stream(
        RecordType.PARAMS, 1, body, end=True
    )
    with pytest.raises(RemoteProtocolError, match="PARAMS stream of request 1"):
        feed_whole(server, data)


def test_params_beyond_max_params_size_are_a_remote_error() -> None:
    big = [(b"HTTP_X", b"v" * 5000)]
    ok = FastCGIConnection(SERVER, max_params_size=6000)
    assert feed_whole(ok, records.encode_request(1, big, keep_conn=False))[1] == Params(1, big)
    small = FastCGIConnection(SERVER, max_params_size=4000)
    with pytest.raises(RemoteProtocolError, match="max_params_size"):
        feed_whole(small, records.encode_request(1, big, keep_conn=False))


def test_default_max_params_size_is_one_mebibyte() -> None:
    server = FastCGIConnection(SERVER)
    params = [(b"HTTP_X_%d" % i, b"v" * 60000) for i in range(18)]  # just over 1 MiB
    with pytest.raises(RemoteProtocolError, match="max_params_size"):
        feed_whole(server, records.encode_request(1, params, keep_conn=False))


def test_php_fpm_mode_never_splits_a_pair_and_never_pads_empty_records() -> None:
    client = FastCGIConnection(CLIENT, split_params=False, pad_empty_records=False)
    params = [(b"HTTP_X_%d" % i, b"v" * 3000) for i in range(40)]
    data = client.send_request(1, params, stdin=b"")
    pos = 0
    params_records = []
    while pos < len(data):
        _, rtype, _, clen, plen = records.unpack_header(data, pos)
        if clen == 0:
            assert plen == 0
        if rtype == RecordType.PARAMS and clen:
            params_records.append(data[pos + 8 : pos + 8 + clen])
        pos += 8 + clen + plen
    assert len(params_records) >= 2
    assert [p for c in params_records for p in records.decode_pairs(c)] == params
    server = FastCGIConnection(SERVER)
    assert feed_whole(server, data)[1] == Params(1, params)


# ------------------------------------------------------------------------------- peer errors


def _begun_server(*, params_done: bool = False) -> FastCGIConnection:
    server = FastCGIConnection(SERVER)
    data = records.encode_begin_request(1, keep_conn=True)
    if params_done:
        data += records.encode_params(1, [])
    feed_whole(server, data)
    return server


def _waiting_client() -> FastCGIConnection:
    client = FastCGIConnection(CLIENT)
    client.send_request(1, [], stdin=b"")
    return client


@pytest.mark.parametrize(
    ("make", "data", "message"),
    [
        (
            _begun_server,
            records.encode_stream(RecordType.STDIN, 1, b"x"),
            "STDIN record for request 1 before the end of its PARAMS",
        ),
        (
            _begun_server,
            records.encode_stream(RecordType.DATA, 1, b"x"),
            "DATA record for request 1 before",
        ),
        (
            lambda: _begun_server(params_done=True),
            records.encode_params(1, []),
            "PARAMS record for request 1 after the end",
        ),
        (
            lambda: _begun_server(params_done=True),
            records.encode_stream(RecordType.STDIN, 1, b"", end=True)
            + records.encode_stream(RecordType.STDIN, 1, b"x"),
            "STDIN record for request 1 after the end",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_stream(RecordType.STDIN, 5, b"x"),
            "STDIN record for request 5, which is not active",
        ),
        (
            _begun_server,
            records.encode_begin_request(1),
            "BEGIN_REQUEST for request 1, which is already active",
        ),
        (
            _begun_server,
            records.encode_stream(RecordType.STDOUT, 1, b"x"),
            "STDOUT record for request 1 from the client",
        ),
        (
            _begun_server,
            records.encode_end_request(1),
            "END_REQUEST record for request 1 from the client",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_get_values_result([]),
            "GET_VALUES_RESULT record with request id 0",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_record(RecordType.STDIN, 0, b"x"),
            "STDIN record with request id 0",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_record(RecordType.GET_VALUES, 1, b""),
            "GET_VALUES record for request 1: management records",
        ),
        (
            _begun_server,
            records.encode_record(42, 1, b"??"),
            "type-42 record for request 1: unknown record type",
        ),
        (
            _waiting_client,
            records.encode_record(42, 0, b""),
            "type-42 record with request id 0 from the server",
        ),
        (_waiting_client, records.encode_record(42, 1, b""), "unknown record type"),
        (
            _waiting_client,
            records.encode_get_values([]),
            "GET_VALUES record with request id 0 from the server",
        ),
        (
            _waiting_client,
            records.encode_stream(RecordType.STDOUT, 2, b"x"),
            "STDOUT record for request 2, which is not active",
        ),
        (
            _waiting_client,
            records.encode_end_request(2),
            "END_REQUEST for request 2, which is not active",
        ),
        (
            _waiting_client,
            records.encode_end_request(1) + records.encode_end_request(1),
            "END_REQUEST for request 1, which is not active",
        ),
        (
            _waiting_client,
            records.encode_response(1, b"x", end=False)
            + records.encode_stream(RecordType.STDOUT, 1, b"", end=True)
            + records.encode_stream(RecordType.STDOUT, 1, b"y"),
            "STDOUT record for request 1 after the end",
        ),
        (
            _waiting_client,
            records.encode_stream(RecordType.STDIN, 1, b"x"),
            "STDIN record for request 1 from the server",
        ),
        (
            _waiting_client,
            records.encode_begin_request(1),
            "BEGIN_REQUEST record for request 1 from the server",
        ),
        (
            _waiting_client,
            records.encode_abort_request(1),
            "ABORT_REQUEST record for request 1 from the server",
        ),
        (_waiting_client, b"\x02" + records.encode_end_request(1)[1:], "version 2"),
        (_begun_server, b"\x00\x05\x00\x01\x00\x00\x00\x00", "version 0"),
        (
            _begun_server,
            records.pack_header(RecordType.BEGIN_REQUEST, 2, 7) + bytes(7),
            "BEGIN_REQUEST body is 7 bytes",
        ),
        (
            _waiting_client,
            records.pack_header(RecordType.END_REQUEST, 1, 9) + bytes(9),
            "END_REQUEST body is 9 bytes",
        ),
        (
            _waiting_client,
            records.pack_header(RecordType.UNKNOWN_TYPE, 0, 0),
            "UNKNOWN_TYPE body is 0 bytes",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_record(RecordType.GET_VALUES, 0, b"\x05\x00abc"),
            "overruns",
        ),
    ],
)
@feeders
def test_peer_violations_are_remote_errors_naming_the_record(
    feed: Feed, make: Callable[[], FastCGIConnection], data: bytes, message: str
) -> None:
    conn = make()
    with pytest.raises(RemoteProtocolError, match=message):
        feed(conn, data)
    # The connection stays dead: the same error again.
    with pytest.raises(RemoteProtocolError, match=message):
        conn.next_event()


# ------------------------------------------------------------------------------- EOF


def test_eof_at_a_record_boundary_is_closed() -> None:
    server = FastCGIConnection(SERVER)
    server.receive_data(b"")
    assert server.next_event() is CLOSED
    assert server.next_event() is CLOSED
    assert server.eof_received


def test_eof_after_complete_input_is_a_half_close_and_the_responder_may_answer() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    server.receive_data(client.send_request(1, PARAMS, stdin=b"body"))
    server.receive_data(b"")
    assert drain(server)[-2:] == [Stdin(1, b""), CLOSED]
    assert server.send_response(1, b"Status: 200 OK\r\n\r\n")


def test_eof_after_an_abort_is_closed() -> None:
    server = FastCGIConnection(SERVER)
    server.receive_data(records.encode_request(1, [], keep_conn=False))
    server.receive_data(records.encode_abort_request(1) + b"")
    server.receive_data(b"")
    assert drain(server)[-2:] == [AbortRequest(1), CLOSED]


@pytest.mark.parametrize(
    ("make", "data", "message"),
    [
        (lambda: FastCGIConnection(SERVER), b"\x01\x01\x00", "inside a record header"),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_begin_request(1)[:12],
            "inside a BEGIN_REQUEST record for request 1",
        ),
        (_waiting_client, records.encode_response(1, b"abc")[:14], "inside a STDOUT record"),
        (
            _waiting_client,
            records.encode_response(1, b"abc", end=False),
            "before END_REQUEST for request 1",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_request(1, [], keep_conn=False),
            "before the end of the STDIN stream of request 1",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_begin_request(1),
            "PARAMS/STDIN stream of request 1",
        ),
        (
            lambda: FastCGIConnection(SERVER),
            records.encode_request(1, [], keep_conn=False, role=Role.FILTER, stdin=b""),
            "DATA stream",
        ),
    ],
)
def test_eof_while_the_peer_owes_records_is_a_remote_error(
    make: Callable[[], FastCGIConnection], data: bytes, message: str
) -> None:
    conn = make()
    conn.receive_data(data)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=message):
        drain(conn)


def test_data_after_eof_is_a_remote_error() -> None:
    server = FastCGIConnection(SERVER)
    server.receive_data(b"")
    server.receive_data(b"")  # repeated EOF is harmless
    with pytest.raises(RemoteProtocolError, match="after the connection was closed"):
        server.receive_data(b"x")


# ------------------------------------------------------------------------------- our misuse


@pytest.mark.parametrize(
    ("role", "events", "message"),
    [
        (CLIENT, [Stdin(1, b"x")], "STDIN for request 1: not active"),
        (CLIENT, [BeginRequest(1), Stdin(1, b"x")], "STDIN for request 1 before its PARAMS"),
        (
            CLIENT,
            [BeginRequest(1), Params(1, []), Params(1, [])],
            "PARAMS for request 1: the stream has ended",
        ),
        (
            CLIENT,
            [BeginRequest(1), Params(1, []), Stdin(1, b""), Stdin(1, b"x")],
            "the stream has ended",
        ),
        (CLIENT, [BeginRequest(1), BeginRequest(1)], "request 1 is already active"),
        (CLIENT, [BeginRequest(0)], "outside 1..65535"),
        (CLIENT, [BeginRequest(65536)], "outside 1..65535"),
        (CLIENT, [BeginRequest(1), Stdout(1, b"x")], "only the server sends STDOUT"),
        (CLIENT, [BeginRequest(1), EndRequest(1)], "only the server sends END_REQUEST"),
        (CLIENT, [AbortRequest(1)], "ABORT_REQUEST for request 1: not active"),
        (CLIENT, [GetValuesResult([])], "only the server sends GET_VALUES_RESULT"),
        (CLIENT, [UnknownType(3)], "only the server sends UNKNOWN_TYPE"),
        (CLIENT, [UnknownManagementRecord(42)], "received, never sent"),
        (SERVER, [BeginRequest(1)], "only a client sends BEGIN_REQUEST"),
        (SERVER, [Stdout(1, b"x")], "STDOUT for request 1: not active"),
        (SERVER, [EndRequest(1)], "END_REQUEST for request 1: not active"),
        (SERVER, [GetValues([])], "only the client sends GET_VALUES"),
        (SERVER, [Params(1, [])], "only the client sends PARAMS"),
        (SERVER, [AbortRequest(1)], "only the client sends ABORT_REQUEST"),
    ],
)
def test_our_misuse_is_a_local_error(role: object, events: list[Event], message: str) -> None:
    assert role is CLIENT or role is SERVER
    conn = FastCGIConnection(role)
    with pytest.raises(LocalProtocolError, match=message):
        send_all(conn, events)


def test_a_server_cannot_send_after_end_request_nor_a_client_after_receiving_it() -> None:
    client, server = FastCGIConnection(CLIENT), FastCGIConnection(SERVER)
    feed_whole(server, client.send_request(1, [], keep_conn=True))
    feed_whole(client, server.send(EndRequest(1)))
    with pytest.raises(LocalProtocolError, match="not active"):
        server.send(Stdout(1, b"late"))
    with pytest.raises(LocalProtocolError, match="not active"):
        client.send(Stdin(1, b"late"))
    with pytest.raises(LocalProtocolError, match="not active"):
        server.send_response(1, b"late")


def test_role_must_be_client_or_server() -> None:
    with pytest.raises(TypeError):
        FastCGIConnection("client")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- hostile input


def _only_remote_errors(role: object, chunks: list[bytes]) -> None:
    assert role is CLIENT or role is SERVER
    conn = FastCGIConnection(role, max_params_size=4096)
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            drain(conn)
        conn.receive_data(b"")
        assert drain(conn)[-1] is CLOSED
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(st.sampled_from([CLIENT, SERVER]), st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_only_ever_raise_remote_protocol_error(
    role: object, chunks: list[bytes]
) -> None:
    _only_remote_errors(role, chunks)


_record = st.builds(
    lambda t, rid, content, pad: (
        records.pack_header(t, rid, len(content), pad) + content + bytes(pad)
    ),
    st.integers(0, 13),
    st.integers(0, 3),
    st.one_of(
        st.binary(max_size=40),
        st.just(bytes(8)),
        st.just(b"\x00\x01\x01\x00\x00\x00\x00\x00"),
        st.builds(
            records.encode_pairs,
            st.lists(st.tuples(st.binary(max_size=5), st.binary(max_size=150)), max_size=3),
        ),
    ),
    st.integers(0, 9),
)


@settings(max_examples=500)
@given(
    st.sampled_from([CLIENT, SERVER]),
    st.lists(_record, max_size=12),
    st.integers(1, 50),
)
def test_arbitrary_well_framed_records_only_ever_raise_remote_protocol_error(
    role: object, recs: list[bytes], chunk: int
) -> None:
    data = b"".join(recs)
    _only_remote_errors(role, [data[i : i + chunk] for i in range(0, len(data), chunk)])


@settings(max_examples=100)
@given(st.lists(st.binary(min_size=1, max_size=100), max_size=6), st.integers(1, 30))
def test_any_chunking_of_a_conversation_yields_the_same_events(
    bodies: list[bytes], chunk: int
) -> None:
    client = FastCGIConnection(CLIENT)
    data = client.send_request(1, PARAMS, keep_conn=True)
    data += b"".join(client.send(Stdin(1, b)) for b in bodies) + client.send(Stdin(1, b""))
    whole = feed_whole(FastCGIConnection(SERVER), data)
    server = FastCGIConnection(SERVER)
    pieces: list[NextEvent] = []
    for i in range(0, len(data), chunk):
        server.receive_data(data[i : i + chunk])
        pieces += events_only(drain(server))
    assert pieces == whole
    assert [e for e in whole if isinstance(e, Stdin)] == [Stdin(1, b) for b in [*bodies, b""]]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 70_000), max_size=4),
    st.lists(st.integers(1, 140_000), min_size=1, max_size=12),
    st.lists(st.booleans(), max_size=12),
)
def test_a_lent_buffer_in_any_reads_yields_the_events_of_the_whole_stream(
    sizes: list[int], cuts: list[int], use_view: list[bool]
) -> None:
    """``receive_view``: large STDIN records (split at 65,535 bytes) cut anywhere, header
    included, in reads of a buffer overwritten after each, mixed with ``receive_data``."""
    client = FastCGIConnection(CLIENT)
    bodies = [bytes([n % 251]) * n for n in sizes if n]
    data = client.send_request(1, PARAMS, keep_conn=True)
    data += b"".join(client.send(Stdin(1, b)) for b in bodies) + client.send(Stdin(1, b""))
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points) if b > a]
    got = lend(FastCGIConnection(SERVER), pieces, use_view)
    assert got == feed_whole(FastCGIConnection(SERVER), data)
    stdin = b"".join(e.data for e in got if isinstance(e, Stdin))
    assert stdin == b"".join(bodies)
    assert all(type(e.data) is bytes for e in got if isinstance(e, Stdin))


@settings(max_examples=300)
@given(st.sampled_from([CLIENT, SERVER]), st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_lent_bytes_only_ever_raise_remote_protocol_error(
    role: object, chunks: list[bytes]
) -> None:
    conn = FastCGIConnection(role)  # type: ignore[arg-type]
    try:
        lend(conn, [c for c in chunks if c])
    except RemoteProtocolError:
        pass


def test_feeding_before_need_data_is_a_local_error_with_a_lent_buffer() -> None:
    client = FastCGIConnection(CLIENT)
    data = client.send_request(1, PARAMS, keep_conn=True, stdin=b"body")
    server = FastCGIConnection(SERVER)
    server.receive_view(memoryview(bytearray(data)))
    assert isinstance(server.next_event(), BeginRequest)
    with pytest.raises(LocalProtocolError, match="NEED_DATA"):
        server.receive_view(memoryview(bytearray(b"more")))
    with pytest.raises(LocalProtocolError, match="NEED_DATA"):
        server.receive_data(b"more")
    events = events_only(drain(server))
    assert [type(e) for e in events] == [Params, Stdin, Stdin]
    server.receive_view(memoryview(b""))
    assert server.next_event() is CLOSED


# --------------------------------------------------------------------------------------------
# The responder's fast path: a whole bodiless request taken in one call.


def _events_path(data: bytes) -> tuple[int, bool, list[tuple[bytes, bytes]]]:
    server = FastCGIConnection(SERVER)
    server.receive_data(data)
    events = events_only(drain(server))
    begin, params, stdin = events
    assert isinstance(begin, BeginRequest) and isinstance(params, Params)
    assert isinstance(stdin, Stdin) and stdin.data == b""
    return begin.request_id, begin.keep_conn, params.params


@given(
    st.integers(1, 65535),
    st.booleans(),
    st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=6),
    st.booleans(),
)
def test_a_whole_request_is_taken_at_once_exactly_as_its_events_say(
    rid: int, keep: bool, pairs: list[tuple[bytes, bytes]], pad_empty: bool
) -> None:
    data = records.encode_request(rid, pairs, keep_conn=keep, stdin=b"", pad_empty=pad_empty)
    server = FastCGIConnection(SERVER)
    whole = server.receive_whole_request(data)
    assert whole is not None
    got_rid, got_keep, params = whole
    assert (got_rid, got_keep, records.decode_pairs(params)) == _events_path(data)
    # The request is in the state its events would leave: answer it, and the connection is
    # ready for the next one (or must close).
    assert server.is_active(rid)
    out = server.send_response(rid, b"Status: 200 OK\r\n\r\nhi")
    assert out.endswith(records.encode_end_request(rid))
    assert not server.is_active(rid)
    assert server.must_close is not keep
    assert server.next_event() is NEED_DATA


def test_anything_but_one_whole_bodiless_responder_request_is_left_to_the_general_path() -> None:
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")]
    whole = records.encode_request(1, pairs, keep_conn=True, stdin=b"")
    cases = {
        "a part": whole[:-1],
        "more after it": whole + records.encode_abort_request(1),
        "with a body": records.encode_request(1, pairs, keep_conn=True, stdin=b"body"),
        "no end of stdin": records.encode_request(1, pairs, keep_conn=True),
        "an authorizer": records.encode_request(
            1, pairs, keep_conn=True, role=Role.AUTHORIZER, stdin=b""
        ),
        "a management record": records.encode_get_values([b"FCGI_MAX_CONNS"]),
        "another id's stdin": whole[:-8] + records.encode_stream(RecordType.STDIN, 2, b""),
    }
    for what, data in cases.items():
        server = FastCGIConnection(SERVER)
        assert server.receive_whole_request(data) is None, what
        # Nothing was consumed: the general path sees all of it, from its first record.
        server.receive_data(data)
        assert isinstance(server.next_event(), BeginRequest | GetValues), what
    # Not while another request is active, bytes are pending, or on the client side.
    server = FastCGIConnection(SERVER)
    server.receive_data(whole)
    drain(server)
    assert (
        server.receive_whole_request(records.encode_request(2, pairs, stdin=b"", keep_conn=True))
        is None
    )
    server = FastCGIConnection(SERVER)
    server.receive_data(whole[:5])
    assert server.receive_whole_request(whole) is None
    assert FastCGIConnection(CLIENT).receive_whole_request(whole) is None
    # A PARAMS stream over max_params_size is left to the general path, which reports it.
    server = FastCGIConnection(SERVER, max_params_size=10)
    assert server.receive_whole_request(whole) is None


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.lists(st.tuples(st.binary(max_size=200), st.binary(max_size=200)), max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
    st.integers(1, 64),
)
def test_requests_received_together_are_taken_whole_one_after_the_other(
    requests: list[tuple[bool, list[tuple[bytes, bytes]]]], cut: int
) -> None:
    # Several bodiless requests in one read (a front's queue on this connection), the last one
    # cut short: each whole one is taken in turn once the one before has been answered, as
    # its events would say; the cut one is left to the general path.
    encoded = [
        records.encode_request(rid, pairs, keep_conn=True, stdin=b"", pad_empty=padded)
        for rid, (padded, pairs) in enumerate(requests, 1)
    ]
    last = len(requests)
    data = b"".join(encoded)
    data = data[: len(data) - min(cut, len(encoded[-1]) - 1)]
    server = FastCGIConnection(SERVER)
    server.receive_data(data)
    taken: list[tuple[int, bool, list[tuple[bytes, bytes]]]] = []
    while (whole := server.next_whole_request()) is not None:
        rid, keep, params = whole
        taken.append((rid, keep, records.decode_pairs(params)))
        # Not before the one taken is answered: one at a time.
        assert server.next_whole_request() is None
        server.send_response(rid, b"Status: 200 OK\r\n\r\n")
    assert taken == [(rid, True, pairs) for rid, (_, pairs) in enumerate(requests[:-1], 1)]
    # What is left starts with the cut request, for the general path.
    event = server.next_event()
    assert event is NEED_DATA or (isinstance(event, BeginRequest) and event.request_id == last)


def test_next_whole_request_leaves_anything_else_to_the_general_path() -> None:
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")]
    whole = records.encode_request(1, pairs, keep_conn=True, stdin=b"")
    cases = {
        "with a body": records.encode_request(1, pairs, keep_conn=True, stdin=b"body"),
        "no end of stdin": records.encode_request(1, pairs, keep_conn=True),
        "a management record first": records.encode_get_values([b"FCGI_MAX_CONNS"]) + whole,
        "an abort first": records.encode_abort_request(1) + whole,
    }
    for what, data in cases.items():
        server = FastCGIConnection(SERVER)
        server.receive_data(data)
        assert server.next_whole_request() is None, what
        # Nothing was consumed: the general path sees all of it, from its first record.
        assert isinstance(server.next_event(), BeginRequest | GetValues | AbortRequest), what
    # Behind a request in progress (its events read), after the end of the stream, and on
    # the client side: no.
    server = FastCGIConnection(SERVER)
    server.receive_data(whole + records.encode_request(2, pairs, keep_conn=True, stdin=b""))
    assert isinstance(server.next_event(), BeginRequest)
    assert server.next_whole_request() is None
    server = FastCGIConnection(SERVER)
    server.receive_data(whole)
    server.receive_data(b"")
    assert server.next_whole_request() is None
    client = FastCGIConnection(CLIENT)
    client.receive_data(whole)
    assert client.next_whole_request() is None
    # Pieces that arrived one by one (held in a bytearray) are left to the general path too.
    server = FastCGIConnection(SERVER)
    server.receive_data(whole[:40])
    server.receive_data(whole[40:41])
    server.receive_data(whole[41:])
    assert server.next_whole_request() is None or server.next_event() is NEED_DATA


def test_records_after_a_whole_request_follow_the_state_table() -> None:
    pairs = [(b"REQUEST_METHOD", b"GET")]
    server = FastCGIConnection(SERVER)
    assert server.receive_whole_request(records.encode_request(3, pairs, keep_conn=True, stdin=b""))
    # Its input streams have ended: more STDIN for it is a protocol error; an abort is surfaced.
    server.receive_data(records.encode_abort_request(3))
    assert server.next_event() == AbortRequest(3)
    server.receive_data(records.encode_stream(RecordType.STDIN, 3, b"late"))
    with pytest.raises(RemoteProtocolError, match="after the end of its STDIN stream"):
        server.next_event()
