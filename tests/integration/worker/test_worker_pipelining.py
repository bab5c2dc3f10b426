"""The worker's side of pipelining, at the FastCGI level: requests queued on a connection behind
the one in progress and withdrawn by the front (ABORT_REQUEST before they began) are answered
empty without running the app, and the connection goes on serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.worker_support import Workers, fcgiclient, workers_fixture

from corral.protocol.fastcgi import ProtocolStatus
from corral.protocol.fastcgi.events import EndRequest, Stdout

Client = fcgiclient.Client
base_params = fcgiclient.base_params


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[fcgiclient.Address]:
    workers: Workers
    for workers in workers_fixture(tmp_path):
        started = workers.unix()
        assert started.address is not None
        yield started.address


def _answers(client: fcgiclient.Client, rids: set[int]) -> dict[int, tuple[bytes, EndRequest]]:
    """Read until each of ``rids`` has ended: its stdout and its END_REQUEST."""
    out: dict[int, bytes] = {rid: b"" for rid in rids}
    ends: dict[int, EndRequest] = {}
    while len(ends) < len(rids):
        event = client.next_event()
        assert event is not None, f"the worker closed the connection; ended: {sorted(ends)}"
        if isinstance(event, Stdout):
            out[event.request_id] += event.data
        elif isinstance(event, EndRequest):
            ends[event.request_id] = event
    return {rid: (out[rid], ends[rid]) for rid in rids}


@pytest.mark.parametrize("withdrawn", [1, 2, 3])
def test_withdrawn_requests_are_skipped_and_the_connection_serves_on(
    worker: fcgiclient.Address, tmp_path: Path, withdrawn: int
) -> None:
    """What the front's ``withdraw_stuck`` does: requests 2.. are written behind request 1 (a
    slow one), then withdrawn (ABORT_REQUEST) while 1 still runs. Each is answered empty
    (app_status 1, no output), none runs, and the next request on the connection is served."""
    marker = tmp_path / "ran.txt"
    queued = range(2, 2 + withdrawn)
    with Client(worker, timeout=5.0) as client:
        wire = client.conn.send_request(
            1, fcgiclient.encode(base_params("/sleep?seconds=0.3")), keep_conn=True, stdin=b""
        )
        for rid in queued:
            params = base_params(f"/mark?marker={marker}&rid={rid}")
            wire += client.conn.send_request(
                rid, fcgiclient.encode(params), keep_conn=True, stdin=b""
            )
        client.send(wire)
        for rid in queued:
            client.abort(rid)
        answers = _answers(client, {1, *queued})
        out, end = answers[1]
        assert out.startswith(b"Status: 200") and end.app_status == 0
        for rid in queued:
            out, end = answers[rid]
            assert (out, end.app_status) == (b"", 1), rid
            assert end.protocol_status == ProtocolStatus.REQUEST_COMPLETE
        # The connection serves the next request (the ids are free again).
        response = client.request(base_params("/hello"), rid=2, keep_conn=True)
        assert response.status == "200 OK" and response.body == b"Hello, world!"
    assert not marker.exists(), marker.read_text()


def test_requests_written_together_are_each_served_in_turn(worker: fcgiclient.Address) -> None:
    """Several requests in one write, as the front queues them on a busy worker: the bodiless
    ones are taken whole by the codec's fast path one after the other (``next_whole_request``),
    the one with a body through the general path between them; each gets its own answer with
    its own environ, in order, and the last (without FCGI_KEEP_CONN) closes the connection."""
    import json

    with Client(worker, timeout=5.0) as client:
        conn = client.conn
        wire = b""
        for rid in (1, 2):
            params = base_params(f"/environ?rid={rid}", HTTP_X_RID=f"r\xe9{rid}")
            wire += conn.send_request(rid, fcgiclient.encode(params), keep_conn=True, stdin=b"")
        wire += conn.send_request(
            3, fcgiclient.encode(base_params("/input", "POST")), keep_conn=True, stdin=b"abc"
        )
        for rid in (4, 5):
            params = base_params(f"/environ?rid={rid}", HTTP_X_RID=f"r\xe9{rid}")
            wire += conn.send_request(rid, fcgiclient.encode(params), keep_conn=rid == 4, stdin=b"")
        client.send(wire)
        answers = _answers(client, {1, 2, 3, 4, 5})
        for rid in (1, 2, 4, 5):
            out, end = answers[rid]
            assert end.app_status == 0 and out.startswith(b"Status: 200"), rid
            environ = json.loads(out.split(b"\r\n\r\n", 1)[1])
            assert environ["QUERY_STRING"] == f"rid={rid}"
            assert environ["HTTP_X_RID"] == f"r\xe9{rid}"
        out, end = answers[3]
        assert end.app_status == 0 and b'"length": 3' in out, out
        assert client.next_event() is None  # request 5 had no FCGI_KEEP_CONN
