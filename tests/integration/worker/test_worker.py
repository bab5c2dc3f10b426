"""The worker end to end: real worker processes, real sockets, a FastCGI client over the codec.

FastCGI behaviour (GET_VALUES, KEEP_CONN, params framing, ABORT_REQUEST, multiplexing and role
refusals, protocol errors) and PEP 3333 (input streaming, write(), exc_info, close(),
file_wrapper, HEAD, errors, header validation, wsgiref.validate).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.worker_support import Workers, fcgiclient, workers_fixture

from corral.protocol.fastcgi import ProtocolStatus, RecordType, Role, records
from corral.protocol.fastcgi.events import BeginRequest, EndRequest, Stdout
from corral.protocol.fastcgi.records import encode_pairs, encode_record

Client = fcgiclient.Client
base_params = fcgiclient.base_params


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


@pytest.fixture
def worker(workers: Workers) -> fcgiclient.Address:
    w = workers.unix()
    assert w.address is not None
    return w.address


def get(address: fcgiclient.Address, path: str, **extra: str) -> fcgiclient.Response:
    return fcgiclient.get(address, path, **extra)


def marker_lines(path: Path, expect: str, timeout: float = 5.0) -> list[str]:
    """The marker file's lines, once ``expect`` is among them (close() may run a bit later)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if expect in lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


# -------------------------------------------------------------------------------- FastCGI


def test_get_values_reports_threads_and_no_multiplexing(workers: Workers) -> None:
    w = workers.unix("--threads", "3")
    with Client(w.address) as client:  # type: ignore[arg-type]
        values = client.get_values(
            [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS", b"NOT_A_VARIABLE"]
        )
    assert values == {b"FCGI_MAX_CONNS": b"3", b"FCGI_MAX_REQS": b"3", b"FCGI_MPXS_CONNS": b"0"}


def test_keep_conn_serves_several_requests_on_one_connection(worker: str) -> None:
    with Client(worker) as client:
        for n in range(5):
            response = client.request(base_params(f"/environ?n={n}"), keep_conn=True)
            assert response.status == "200 OK"
            assert json.loads(response.body)["QUERY_STRING"] == f"n={n}"
            assert response.app_status == 0
            assert response.protocol_status == ProtocolStatus.REQUEST_COMPLETE
        # Management records between requests are answered too.
        assert client.get_values([b"FCGI_MPXS_CONNS"]) == {b"FCGI_MPXS_CONNS": b"0"}
        assert client.request(base_params("/hello"), keep_conn=False).body == b"Hello, world!"
        assert client.is_closed_by_peer()


def test_connection_closed_after_a_request_without_keep_conn(worker: str) -> None:
    with Client(worker) as client:
        response = client.request(base_params("/hello"), keep_conn=False)
        assert response.body == b"Hello, world!"
        assert client.is_closed_by_peer()


def test_small_response_is_one_stdout_record_and_has_a_content_length(worker: str) -> None:
    response = get(worker, "/hello")
    assert response.stdout_records == 2  # the data and the empty end-of-stream record
    assert response.header("Content-Length") == "13"


def test_params_split_across_records_and_long_names_and_values(worker: str) -> None:
    long_name = "HTTP_X_" + "LONG_NAME_" * 20  # > 127 bytes: 4-byte length
    long_value = "v" * 70_000  # > 65535: the pair itself spans records
    params = [*base_params("/environ").items(), (long_name, long_value), ("HTTP_X_SHORT", "s")]
    stream = encode_pairs(fcgiclient.encode(params))
    # Cut the PARAMS stream at awkward places: inside a length, inside a name, inside a value.
    cuts = [0, 1, 3, 200, 301, 60_000, len(stream)]
    with Client(worker) as client:
        raw = client.conn.send(BeginRequest(1, keep_conn=False))
        for start, stop in itertools.pairwise(cuts):
            raw += encode_record(RecordType.PARAMS, 1, stream[start:stop])
        raw += encode_record(RecordType.PARAMS, 1, b"") + encode_record(RecordType.STDIN, 1, b"")
        # And dribble the bytes in small writes, so the worker reads partial records.
        for offset in range(0, len(raw), 7_001):
            client.send(raw[offset : offset + 7_001])
        response = client.read_response()
    environ = json.loads(response.body)
    assert environ[long_name] == long_value
    assert environ["HTTP_X_SHORT"] == "s"


def test_abort_request_stops_the_app_calls_close_and_ends_the_request(
    worker: str, tmp_path: Path
) -> None:
    marker = tmp_path / "abort.txt"
    with Client(worker) as client:
        client.begin(base_params(f"/slow?marker={marker}"), keep_conn=True)
        seen = 0
        while seen < 3:  # a few blocks of the streamed response arrive...
            event = client.next_event()
            if isinstance(event, Stdout) and event.data:
                seen += 1
        client.abort()
        while True:
            event = client.next_event()
            assert event is not None, "the worker must answer ABORT_REQUEST with END_REQUEST"
            if isinstance(event, EndRequest):
                break
        assert event.protocol_status == ProtocolStatus.REQUEST_COMPLETE
        # The connection (KEEP_CONN) still serves.
        assert client.request(base_params("/hello"), keep_conn=True).body == b"Hello, world!"
    lines = marker_lines(marker, "closed")
    assert "closed" in lines
    assert sum(line.startswith("block") for line in lines) < 50, "the app kept iterating"


def test_abort_before_params_complete_ends_the_request(worker: str) -> None:
    with Client(worker) as client:
        client.send(client.conn.send(BeginRequest(1, keep_conn=True)))
        client.send(encode_record(RecordType.PARAMS, 1, encode_pairs([(b"A", b"b")])))
        client.abort()
        response = client.read_response()
        assert response.stdout == b""
        assert response.protocol_status == ProtocolStatus.REQUEST_COMPLETE
        assert client.request(base_params("/hello"), keep_conn=True).body == b"Hello, world!"


def test_client_closing_mid_response_calls_close_and_worker_keeps_serving(
    worker: str, tmp_path: Path
) -> None:
    marker = tmp_path / "gone.txt"
    client = Client(worker)
    client.begin(base_params(f"/slow?marker={marker}"))
    while not (isinstance(event := client.next_event(), Stdout) and event.data):
        pass
    client.close()
    assert "closed" in marker_lines(marker, "closed")
    assert get(worker, "/hello").body == b"Hello, world!"


def queued(client: fcgiclient.Client, rid: int, path: str) -> bytes:
    """A whole bodiless request with id ``rid``, to send behind others on one connection."""
    return client.conn.send_request(
        rid, fcgiclient.encode(base_params(path)), keep_conn=True, stdin=b""
    )


def answers(
    client: fcgiclient.Client, count: int
) -> tuple[list[EndRequest], dict[int, bytes], list[tuple[str, int]]]:
    """Read until ``count`` requests have ended: their END_REQUESTs in order, each one's
    STDOUT, and the order of events ("out"/"end", request id)."""
    ends: list[EndRequest] = []
    out: dict[int, bytes] = {}
    order: list[tuple[str, int]] = []
    while len(ends) < count:
        event = client.next_event()
        assert event is not None
        if isinstance(event, EndRequest):
            ends.append(event)
            order.append(("end", event.request_id))
        elif isinstance(event, Stdout) and event.data:
            out[event.request_id] = out.get(event.request_id, b"") + event.data
            order.append(("out", event.request_id))
    return ends, out, order


def test_second_request_on_a_connection_waits_its_turn(worker: str) -> None:
    with Client(worker) as client:
        # Request 1's app is reading its body when request 2 begins on the same connection:
        # one request at a time (FCGI_MPXS_CONNS=0), so 2 is served once 1 has ended.
        body = b"x" * 10_000
        params = base_params("/input?op=read", "POST", CONTENT_LENGTH=str(len(body)))
        client.begin(params, rid=1, keep_conn=True, stdin=None)
        client.send_stdin(body[:5000], rid=1)
        client.begin(base_params("/hello"), rid=2, keep_conn=True)
        client.send_stdin(body[5000:], rid=1)
        client.send_stdin(b"", rid=1)
        ends, out, order = answers(client, 2)
        assert [(end.request_id, end.protocol_status) for end in ends] == [
            (1, ProtocolStatus.REQUEST_COMPLETE),
            (2, ProtocolStatus.REQUEST_COMPLETE),
        ]
        assert order.index(("end", 1)) < order.index(("out", 2))
        assert out[1].startswith(b"Status: 200") and out[2].endswith(b"Hello, world!")
        assert client.request(base_params("/hello"), rid=3, keep_conn=True).status == "200 OK"


def test_requests_queued_on_a_connection_are_served_in_order(worker: str) -> None:
    # What Corral's front does under load: the next requests are written behind the one in
    # progress, with other ids, all in one send; ids are reused once their request ended.
    with Client(worker) as client:
        values = client.get_values([b"CORRAL_PIPELINE"])
        assert values == {b"CORRAL_PIPELINE": b"1"}
        for round_ in range(3):
            client.send(b"".join(queued(client, rid, f"/hello?n={rid}") for rid in (1, 2, 3)))
            ends, out, order = answers(client, 3)
            assert [end.request_id for end in ends] == [1, 2, 3], round_
            assert all(end.protocol_status == ProtocolStatus.REQUEST_COMPLETE for end in ends)
            # One answer after the other: no STDOUT of a request after its END_REQUEST.
            assert [rid for kind, rid in order if kind == "end"] == [1, 2, 3]
            for rid in (1, 2, 3):
                assert order.index(("end", rid)) > max(
                    i for i, event in enumerate(order) if event == ("out", rid)
                )
            assert all(out[rid].endswith(b"Hello, world!") for rid in (1, 2, 3))


def test_a_queued_request_withdrawn_before_its_turn_is_not_run(worker: str, tmp_path: Path) -> None:
    # The front withdraws requests queued behind a slow one (ABORT_REQUEST) and serves them
    # elsewhere: the worker must answer them without running the app.
    marker = tmp_path / "ran.txt"
    with Client(worker) as client:
        client.send(
            queued(client, 1, "/sleep?seconds=0.3") + queued(client, 2, f"/closing?marker={marker}")
        )
        time.sleep(0.05)  # request 1 is running, request 2 waits its turn
        client.abort(rid=2)
        ends, out, _ = answers(client, 2)
        assert b"slept in" in out[1]
        assert 2 not in out  # skipped: no head, no body
        assert (ends[1].request_id, ends[1].protocol_status) == (
            2,
            ProtocolStatus.REQUEST_COMPLETE,
        )
        assert not marker.exists()  # the app never ran it
        # The same request not withdrawn runs (the marker works).
        assert (
            client.request(base_params(f"/closing?marker={marker}"), rid=1, keep_conn=True).status
            == "200 OK"
        )
    assert marker.read_text() == "closed\n"


def test_a_withdrawn_request_held_behind_another_is_skipped_and_the_next_served(
    worker: str,
) -> None:
    # Everything arrives in one read while request 1 runs: request 2 and its ABORT_REQUEST are
    # held, and request 3 too. Request 2 must be skipped, what is left of it forgotten, and
    # request 3 served (a leftover ABORT_REQUEST once had the worker spinning on it).
    with Client(worker, timeout=5.0) as client:
        client.send(
            queued(client, 1, "/hello")
            + queued(client, 2, "/hello")
            + records.encode_abort_request(2)
            + queued(client, 3, "/hello")
        )
        ends, out, _ = answers(client, 3)
        assert [end.request_id for end in ends] == [1, 2, 3]
        assert 2 not in out
        assert out[1].endswith(b"Hello, world!") and out[3].endswith(b"Hello, world!")
        assert client.request(base_params("/hello"), rid=2, keep_conn=True).status == "200 OK"


def test_roles_other_than_responder_get_unknown_role(worker: str) -> None:
    with Client(worker) as client:
        client.send(client.conn.send(BeginRequest(1, Role.AUTHORIZER, keep_conn=True)))
        event = client.next_event()
        assert isinstance(event, EndRequest)
        assert event.protocol_status == ProtocolStatus.UNKNOWN_ROLE
        assert client.request(base_params("/hello"), rid=2, keep_conn=True).status == "200 OK"


def test_unknown_management_record_gets_unknown_type(worker: str) -> None:
    with Client(worker) as client:
        client.send(struct.pack(">BBHHBx", 1, 42, 0, 0, 0))
        data = client.sock.recv(64)
    assert data == struct.pack(">BBHHBx", 1, RecordType.UNKNOWN_TYPE, 0, 8, 0) + struct.pack(
        ">B7x", 42
    )


def test_protocol_error_closes_that_connection_only(worker: str, workers: Workers) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(5)
        raw.connect(worker)
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not FastCGI at all
        assert raw.recv(100) == b""
    assert get(worker, "/hello").body == b"Hello, world!"
    assert "FastCGI protocol error" in workers.started[0].log


def test_malformed_params_in_a_request_sent_whole_close_that_connection_only(
    worker: str, workers: Workers
) -> None:
    # BEGIN, a PARAMS record whose pair overruns it, the empty PARAMS, the empty STDIN: all in
    # one write, as a front sends a request without a body (the worker's fast path).
    whole = b"".join(
        (
            encode_record(RecordType.BEGIN_REQUEST, 1, struct.pack(">HB5x", Role.RESPONDER, 1)),
            encode_record(RecordType.PARAMS, 1, b"\x05\x09PATH_/hello"),
            encode_record(RecordType.PARAMS, 1, b""),
            encode_record(RecordType.STDIN, 1, b""),
        )
    )
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(5)
        raw.connect(worker)
        raw.sendall(whole)
        assert raw.recv(100) == b""
    assert get(worker, "/hello").body == b"Hello, world!"
    assert "FastCGI protocol error" in workers.started[0].log


def test_params_a_front_leaves_out_get_their_defaults(worker: str) -> None:
    params = {"PATH_INFO": "/environ", "SCRIPT_NAME": ""}
    with Client(worker) as client:
        environ = json.loads(client.request(params).body)
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SERVER_NAME"] == "localhost"
    assert environ["SERVER_PORT"] == "80"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["QUERY_STRING"] == ""


def test_protocol_error_while_the_app_reads_its_body(worker: str, workers: Workers) -> None:
    with Client(worker) as client:
        client.begin(base_params("/input?op=read", "POST", CONTENT_LENGTH="10"), stdin=None)
        client.send(struct.pack(">BBHHBx", 9, 5, 1, 0, 0))  # version 9
        assert client.is_closed_by_peer()
    assert get(worker, "/hello").body == b"Hello, world!"
    log = workers.started[0].log
    assert "FastCGI protocol error" in log
    assert "Traceback" not in log, "a broken front is not an application error"


# -------------------------------------------------------------------------------- wsgi.input


def _post(
    address: str, query: str, body: bytes, record: int = 4096, *, length: bool = True
) -> dict[str, object]:
    extra = {"CONTENT_LENGTH": str(len(body))} if length else {}
    with Client(address) as client:
        client.begin(base_params(f"/input?{query}", "POST", **extra), stdin=None)
        for offset in range(0, len(body), record):
            client.send_stdin(body[offset : offset + record])
        client.send_stdin(b"")
        response = client.read_response()
    assert response.status == "200 OK", response.stdout
    result: dict[str, object] = json.loads(response.body)
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    return result


BODY = b"".join(b"line %d %s\n" % (n, b"x" * (n % 97)) for n in range(20_000)) + b"no newline"


def test_large_body_in_many_stdin_records_read_whole(worker: str) -> None:
    assert len(BODY) > 1_000_000
    _post(worker, "op=read", BODY, record=3_000)


def test_read_n_returns_exactly_n_until_the_end(worker: str) -> None:
    result = _post(worker, "op=chunks&size=1000", BODY[:25_500], record=777)
    assert result["calls"] == [1000] * 25 + [500, 0]


def test_readline_and_readline_size(worker: str) -> None:
    body = b"alpha\nbe\n\ngamma-long-line\nend"
    result = _post(worker, "op=readline", body, record=3)
    assert result["calls"] == ["alpha\n", "be\n", "\n", "gamma-long-line\n", "end", ""]
    result = _post(worker, "op=readline&size=4", body, record=2)
    assert result["calls"] == [
        "alph", "a\n", "be\n", "\n", "gamm", "a-lo", "ng-l", "ine\n", "end", "",
    ]  # fmt: skip


def test_readlines_hint_and_iteration(worker: str) -> None:
    body = b"one\ntwo\nthree\nfour\n"
    assert _post(worker, "op=readlines&hint=5", body, record=5)["calls"] == ["one\n", "two\n"]
    assert _post(worker, "op=readlines", body)["calls"] == ["one\n", "two\n", "three\n", "four\n"]
    assert _post(worker, "op=iter", body, record=1)["calls"] == [
        "one\n",
        "two\n",
        "three\n",
        "four\n",
    ]


def test_body_without_content_length_is_read_to_the_end_of_stdin(worker: str) -> None:
    result = _post(worker, "op=read", BODY[:100_000], length=False)
    assert result["length"] == 100_000
    with Client(worker) as client:
        environ = json.loads(client.request(base_params("/environ", "POST"), b"abc").body)
    assert environ["wsgi.input_terminated"] is True


def test_input_is_streamed_not_buffered_before_the_app_runs(worker: str) -> None:
    with Client(worker) as client:
        client.begin(base_params("/first-line", "POST", CONTENT_LENGTH="1000000"), stdin=None)
        client.send_stdin(b"hello there\nand the rest is still to come")
        # The app answers although most of the body (and the end of STDIN) was never sent.
        response = client.read_response()
    assert response.body == b"first line: hello there\n"


def test_reading_stops_at_content_length(worker: str) -> None:
    with Client(worker) as client:
        response = client.request(
            base_params("/input?op=read", "POST", CONTENT_LENGTH="5"), b"12345EXTRA"
        )
    assert json.loads(response.body)["length"] == 5


# -------------------------------------------------------------------------------- responses


def test_write_callable(worker: str) -> None:
    response = get(worker, "/write")
    assert response.status == "200 OK"
    assert response.body == b"one two three"


def test_exc_info_before_the_head_is_sent_replaces_the_response(worker: str) -> None:
    response = get(worker, "/exc-info-before")
    assert response.status == "503 Service Unavailable"
    assert response.header("X-First") is None
    assert response.body == b"replaced"


def test_exc_info_after_the_head_is_sent_re_raises(
    worker: str, workers: Workers, tmp_path: Path
) -> None:
    marker = tmp_path / "exc.txt"
    response = get(worker, f"/exc-info-after?marker={marker}")
    assert response.status == "200 OK"
    assert response.body == b"partial"
    assert response.app_status == 1  # the response was cut short
    assert marker.read_text() == "re-raised: late failure\n"
    assert "RuntimeError: late failure" in workers.started[0].log


def test_close_is_called_after_a_normal_response(worker: str, tmp_path: Path) -> None:
    marker = tmp_path / "close.txt"
    response = get(worker, f"/closing?marker={marker}")
    assert response.body == b"ab"
    assert marker.read_text() == "closed\n"


def test_close_is_called_when_iteration_fails(worker: str, tmp_path: Path) -> None:
    marker = tmp_path / "close.txt"
    response = get(worker, f"/closing?fail=1&marker={marker}")
    assert marker.read_text() == "closed\n"
    # The iterable is a custom class: blocks go out as they come, so the head was sent.
    assert response.body == b"ab"
    assert response.app_status == 1


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(300_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_file_wrapper_sends_the_file(worker: str, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    response = get(worker, f"/file?path={path}")
    assert response.body == data
    # Read in ~64 KiB blocks, one record each (plus the head's record and the end record).
    assert response.stdout_records <= len(data) // 65528 + 3


def test_file_wrapper_honours_content_length_and_closes_the_file(
    worker: str, data_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = data_file
    marker = tmp_path / "file.txt"
    response = get(worker, f"/file?path={path}&length=1000&traced=1&marker={marker}")
    assert response.body == data[:1000]
    assert response.header("Content-Length") == "1000"
    assert marker.read_text() == "file closed=True\n"


def test_head_sends_no_body(worker: str, data_file: tuple[Path, bytes]) -> None:
    with Client(worker) as client:
        response = client.request(base_params("/head", "HEAD"))
    assert response.status == "200 OK"
    assert response.body == b""
    assert response.header("Content-Length") == "1000"
    path, _ = data_file
    with Client(worker) as client:
        response = client.request(base_params(f"/file?path={path}", "HEAD"))
    assert response.status == "200 OK"
    assert response.body == b""


def test_large_streamed_body(worker: str) -> None:
    response = get(worker, "/big?size=3000000")
    block = bytes(range(256)) * 1024
    assert response.body == (block * 12)[:3_000_000]


def test_app_exception_gives_500_and_the_worker_keeps_serving(
    worker: str, workers: Workers
) -> None:
    response = get(worker, "/boom")
    assert response.status == "500 Internal Server Error"
    assert b"Internal Server Error" in response.body
    assert b"exploded" not in response.body  # no traceback to the client
    assert response.app_status == 0
    log = workers.started[0].log
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: the app exploded" in log
    assert get(worker, "/hello").body == b"Hello, world!"


def test_app_exception_after_the_head_cuts_the_response(worker: str, workers: Workers) -> None:
    response = get(worker, "/boom-late")
    assert response.status == "200 OK"
    assert response.body == b"first part"
    assert response.app_status == 1
    assert "the app exploded mid-body" in workers.started[0].log
    assert get(worker, "/hello").body == b"Hello, world!"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/hop-by-hop", "'Connection' is hop-by-hop"),
        ("/bad-status", "is not 'NNN reason'"),
        ("/non-latin1", "latin-1"),
    ],
)
def test_invalid_status_or_headers_give_500_and_a_log_line(
    worker: str, workers: Workers, path: str, logged: str
) -> None:
    response = get(worker, path)
    assert response.status == "500 Internal Server Error"
    assert b"should not be seen" not in response.body
    assert logged in workers.started[0].log


def test_wsgi_errors_goes_to_stderr_and_optionally_to_the_front(workers: Workers) -> None:
    plain = workers.unix()
    response = get(plain.address, "/errors")  # type: ignore[arg-type]
    assert response.stderr == b""
    assert "a line for wsgi.errors\ntwo lines\n" in plain.log
    teed = workers.unix("--stderr-to-front")
    response = get(teed.address, "/errors")  # type: ignore[arg-type]
    assert response.stderr == b"a line for wsgi.errors\ntwo lines\n"
    assert response.body == b"logged"


def test_wsgiref_validator_is_satisfied(worker: str, workers: Workers, tmp_path: Path) -> None:
    response = get(worker, "/validated")
    assert response.status == "200 OK", workers.started[0].log
    assert response.body == b"valid:"
    with Client(worker) as client:
        response = client.request(
            base_params("/validated", "POST", CONTENT_LENGTH="5", CONTENT_TYPE="text/plain"),
            b"12345",
        )
    assert response.body == b"valid:12345"
    path = tmp_path / "v.bin"
    path.write_bytes(b"z" * 100_000)
    response = get(worker, f"/validated-file?path={path}")
    assert response.body == b"z" * 100_000
    with Client(worker) as client:
        response = client.request(base_params("/validated", "HEAD"))
    assert response.status == "200 OK"
    log = workers.started[0].log
    assert "Warning" not in log and "Error" not in log, log


# -------------------------------------------------------------------------------- environ


def test_environ_is_built_from_params_as_sent(worker: str) -> None:
    # PATH_INFO arrives decoded by the front (CGI): "%2F" here is literal, and must stay so.
    path_info = "/a%2Fb/caf\xe9 x"
    params = base_params(
        "/environ",
        SCRIPT_NAME="/mount/app",
        HTTPS="on",
        HTTP_X_CUSTOM="yes",
        CONTENT_TYPE="text/plain",
    )
    params["PATH_INFO"] = path_info
    with Client(worker) as client:
        # Route by PATH_INFO fails on purpose: the fallback dumps the environ.
        response = client.request(params)
    environ = json.loads(response.body)
    assert environ["SCRIPT_NAME"] == "/mount/app"
    assert environ["PATH_INFO"] == path_info
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.multithread"] is False
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["HTTP_X_CUSTOM"] == "yes"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["input_type"] == "InputStream"


def test_root_script_name_slash_becomes_empty(worker: str) -> None:
    with Client(worker) as client:
        environ = json.loads(client.request(base_params("/environ", SCRIPT_NAME="/")).body)
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/environ"


def test_threads_serve_requests_concurrently(workers: Workers) -> None:
    w = workers.unix("--threads", "2")
    clients = [Client(w.address) for _ in range(2)]  # type: ignore[arg-type]
    try:
        for client in clients:
            client.begin(base_params("/rendezvous"))
        bodies = [client.read_response().body for client in clients]
    finally:
        for client in clients:
            client.close()
    # Each request waits in the app until the other arrives: only two threads get them both in.
    assert bodies == [b"met", b"met"]
    with Client(w.address) as client:  # type: ignore[arg-type]
        assert json.loads(client.request(base_params("/environ")).body)["wsgi.multithread"]


def test_sigterm_finishes_the_request_in_flight(workers: Workers) -> None:
    w = workers.unix()
    with Client(w.address) as client:  # type: ignore[arg-type]
        client.begin(base_params("/sleep?seconds=0.5"), keep_conn=True)
        time.sleep(0.2)
        w.proc.terminate()
        response = client.read_response()
        assert response.body.startswith(b"slept")
        assert client.is_closed_by_peer()
    assert w.proc.wait(5) == 0


def test_begin_request_is_a_real_request_event() -> None:
    # Guard the test client itself: the events it builds are the codec's.
    assert BeginRequest(1).role == Role.RESPONDER


def test_abort_while_the_app_waits_for_its_body(worker: str, workers: Workers) -> None:
    with Client(worker) as client:
        client.begin(base_params("/input?op=read", "POST", CONTENT_LENGTH="1000"), stdin=None)
        client.send_stdin(b"only ten b")
        time.sleep(0.2)  # the app is now blocked in wsgi.input.read()
        client.abort()
        response = client.read_response()
        assert response.stdout == b""
        assert response.app_status == 1
    assert get(worker, "/hello").body == b"Hello, world!"
    assert "Traceback" not in workers.started[0].log  # an abort is not an application error


def test_body_shorter_than_content_length_is_an_error_for_the_app(
    worker: str, workers: Workers
) -> None:
    with Client(worker) as client:
        response = client.request(
            base_params("/input?op=read", "POST", CONTENT_LENGTH="100"), b"short"
        )
    assert response.status == "500 Internal Server Error"
    assert "ended 95 bytes short of its CONTENT_LENGTH" in workers.started[0].log


def test_malformed_content_length_is_a_400(worker: str) -> None:
    with Client(worker) as client:
        response = client.request(base_params("/hello", "POST", CONTENT_LENGTH="12x"), b"x")
    assert response.status == "400 Bad Request"


def test_front_closing_mid_body_is_a_disconnect_not_an_app_error(
    worker: str, workers: Workers
) -> None:
    client = Client(worker)
    client.begin(base_params("/input?op=read", "POST", CONTENT_LENGTH="1000"), stdin=None)
    client.send_stdin(b"only ten b")
    time.sleep(0.2)
    client.close()
    time.sleep(0.2)
    assert get(worker, "/hello").body == b"Hello, world!"
    log = workers.started[0].log
    assert "Traceback" not in log and "protocol error" not in log, log


def test_an_idle_kept_connection_gives_its_thread_to_a_new_connection(worker: str) -> None:
    first = Client(worker)
    try:
        assert first.request(base_params("/hello"), keep_conn=True).status == "200 OK"
        # The only thread now waits on `first`, idle. A second connection must not starve.
        with Client(worker, timeout=5) as second:
            for _ in range(3):
                response = second.request(base_params("/hello"), keep_conn=True)
                assert response.body == b"Hello, world!"
        assert first.is_closed_by_peer(), "the idle connection was closed to free the thread"
    finally:
        first.close()


def test_a_busy_worker_keeps_its_idle_connections_when_a_thread_is_free(
    workers: Workers,
) -> None:
    w = workers.unix("--threads", "2")
    first = Client(w.address)  # type: ignore[arg-type]
    try:
        assert first.request(base_params("/hello"), keep_conn=True).status == "200 OK"
        assert fcgiclient.get(w.address, "/hello").status == "200 OK"  # type: ignore[arg-type]
        # The free thread took the new connection: the idle one still serves.
        assert first.request(base_params("/hello"), keep_conn=True).status == "200 OK"
    finally:
        first.close()


def test_a_slow_body_is_waited_for(worker: str) -> None:
    """Gaps longer than the idle check (50 ms) in the middle of a body are just waited out."""
    with Client(worker) as client:
        client.begin(base_params("/input?op=read", "POST", CONTENT_LENGTH="9"), stdin=None)
        for piece in (b"abc", b"def", b"ghi"):
            time.sleep(0.15)
            client.send_stdin(piece)
        client.send_stdin(b"")
        response = client.read_response()
    assert json.loads(response.body)["length"] == 9
