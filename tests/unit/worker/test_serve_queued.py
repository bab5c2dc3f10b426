"""The worker's serving loop with requests that arrive together (``server.Connection.serve``
over a fake socket): the bodiless ones are taken whole by the codec's fast path, one after the
other, and answered in order; the general path takes the rest."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from corral.protocol.fastcgi import CLIENT, FastCGIConnection, records
from corral.protocol.fastcgi.events import EndRequest, Stdout
from corral.worker import server, wsgi

_DONTWAIT = int(socket.MSG_DONTWAIT)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['QUERY_STRING']} {environ['HTTP_X_TAG']} {len(body)}".encode("latin-1")]


class FakeSocket:
    """Hands over ``data`` in one read, then the end of the stream; keeps what is sent."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = bytearray()

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        if flags & _DONTWAIT:
            raise BlockingIOError
        data, self.data = self.data, b""
        buffer[: len(data)] = data
        return len(data)

    def sendall(self, data: Any) -> None:
        self.sent += data

    def sendmsg(self, buffers: Any) -> int:
        for buffer in buffers:
            self.sent += buffer
        return sum(len(b) for b in buffers)

    def shutdown(self, how: int) -> None:
        pass

    def settimeout(self, value: float) -> None:
        pass

    def close(self) -> None:
        pass


def request(
    client: FastCGIConnection, rid: int, body: bytes | None = None, keep_conn: bool = True
) -> bytes:
    params = [
        (b"REQUEST_METHOD", b"GET" if body is None else b"POST"),
        (b"PATH_INFO", b"/"),
        (b"QUERY_STRING", b"rid=%d" % rid),
        (b"HTTP_X_TAG", b"t\xe9%d" % rid),
    ]
    if body is not None:
        params.append((b"CONTENT_LENGTH", b"%d" % len(body)))
    return client.send_request(rid, params, keep_conn=keep_conn, stdin=body or b"")


def answers(client: FastCGIConnection, sent: bytes) -> dict[int, bytes]:
    """Each request's body, in the order the requests ended."""
    client.receive_data(sent)
    out: dict[int, bytes] = {}
    order: list[int] = []
    while True:
        event = client.next_event()
        if isinstance(event, Stdout):
            out[event.request_id] = out.get(event.request_id, b"") + event.data
        elif isinstance(event, EndRequest):
            order.append(event.request_id)
        else:
            break
    return {rid: out[rid].split(b"\r\n\r\n", 1)[1] for rid in order}


def serve(data: bytes) -> bytes:
    sock = FakeSocket(data)
    state = server.ServeState(app, 1, False)
    conn = server.Connection(sock, state)  # type: ignore[arg-type]
    conn.serve()
    return bytes(sock.sent)


@pytest.fixture(autouse=True)
def _no_withdrawal_look(monkeypatch: pytest.MonkeyPatch) -> None:
    # A request that begins long after the previous one is first looked at for a withdrawal,
    # which reads everything received into held events (then served the general way): with a
    # fake socket, the first request of a connection would; not here.
    monkeypatch.setattr(server, "WITHDRAWN_CHECK_AFTER", 1e9)


def test_bodiless_requests_that_came_together_are_taken_whole_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    def general_path(*args: object) -> object:
        raise AssertionError("a bodiless request went through the general path")

    monkeypatch.setattr(server, "build_environ", general_path)
    client = FastCGIConnection(CLIENT)
    sent = serve(b"".join(request(client, rid, keep_conn=rid < 4) for rid in (1, 2, 3, 4)))
    assert list(answers(client, sent).items()) == list(
        {rid: f"rid={rid} t\xe9{rid} 0".encode("latin-1") for rid in range(1, 5)}.items()
    )


def test_a_request_with_a_body_between_them_goes_the_general_way() -> None:
    client = FastCGIConnection(CLIENT)
    data = b"".join(
        (request(client, 1), request(client, 2, b"abcd"), request(client, 3)),
    ) + request(client, 4, keep_conn=False)
    sent = serve(data)
    assert list(answers(client, sent).items()) == list(
        {
            1: "rid=1 t\xe91 0".encode("latin-1"),
            2: "rid=2 t\xe92 4".encode("latin-1"),
            3: "rid=3 t\xe93 0".encode("latin-1"),
            4: "rid=4 t\xe94 0".encode("latin-1"),
        }.items()
    )


def test_a_connection_without_keep_conn_ends_after_its_request() -> None:
    client = FastCGIConnection(CLIENT)
    sent = serve(request(client, 1) + request(client, 2, keep_conn=False) + request(client, 3))
    # Request 2 ended the connection: request 3 is never served.
    assert list(answers(client, sent)) == [1, 2]


class LookingSocket(FakeSocket):
    """A FakeSocket whose non-blocking reads (a look for withdrawals) hand over ``later``
    (once) and are counted."""

    def __init__(self, data: bytes, later: bytes = b"") -> None:
        super().__init__(data)
        self.later = later
        self.looks = 0

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        if flags & _DONTWAIT:
            self.looks += 1
            if not self.later:
                raise BlockingIOError
            data, self.later = self.later, b""
            buffer[: len(data)] = data
            return len(data)
        return super().recv_into(buffer, size, flags)


def outcomes(client: FastCGIConnection, sent: bytes) -> list[tuple[int, bool]]:
    """Each request, in the order they ended, and whether it was answered (an output) or
    skipped (none, application status 1)."""
    client.receive_data(sent)
    out: dict[int, bytes] = {}
    ended: list[tuple[int, bool]] = []
    while isinstance(event := client.next_event(), Stdout | EndRequest):
        if isinstance(event, Stdout):
            out[event.request_id] = out.get(event.request_id, b"") + event.data
        else:
            answered = bool(out.pop(event.request_id, b""))
            assert answered is (event.app_status == 0)
            ended.append((event.request_id, answered))
    return ended


def serve_socket(sock: FakeSocket) -> bytes:
    state = server.ServeState(app, 1, False)
    server.Connection(sock, state).serve()  # type: ignore[arg-type]
    return bytes(sock.sent)


def refuse_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def general_path(*args: object) -> object:
        raise AssertionError("a bodiless request went through the general path")

    monkeypatch.setattr(server, "build_environ", general_path)


def test_a_withdrawn_request_among_those_received_is_skipped_and_the_rest_stay_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Requests 1, 2, 3 queued, then the front withdrew 2: found among the records not yet
    # read, without reading them into events, so that 3 is still taken whole.
    refuse_general_path(monkeypatch)
    client = FastCGIConnection(CLIENT)
    data = b"".join(request(client, rid) for rid in (1, 2, 3))
    sent = serve(data + records.encode_abort_request(2))
    assert outcomes(client, sent) == [(1, True), (2, False), (3, True)]


def test_the_look_for_withdrawals_reads_ahead_and_keeps_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every request looks (as long after the last read): the ABORT_REQUEST for 2 arrives on
    # the look before 2 runs; 2 is skipped and 3 is still taken whole.
    monkeypatch.setattr(server, "WITHDRAWN_CHECK_AFTER", -1.0)
    refuse_general_path(monkeypatch)
    client = FastCGIConnection(CLIENT)
    data = b"".join(request(client, rid) for rid in (1, 2, 3))
    sock = LookingSocket(data, records.encode_abort_request(2))
    assert outcomes(client, serve_socket(sock)) == [(1, True), (2, False), (3, True)]
    # Request 1 began right after the read that brought it: it did not look.
    assert sock.looks == 2


def test_a_request_right_after_the_read_that_brought_it_does_not_look() -> None:
    server.WITHDRAWN_CHECK_AFTER = -1.0  # (restored by the autouse fixture)
    client = FastCGIConnection(CLIENT)

    class OneByOne(LookingSocket):
        """Each blocking read hands over the next request."""

        def __init__(self, pieces: list[bytes]) -> None:
            super().__init__(b"")
            self.pieces = pieces

        def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
            if not flags & _DONTWAIT and self.pieces:
                self.data = self.pieces.pop(0)
            return super().recv_into(buffer, size, flags)

    sock = OneByOne([request(client, 1), request(client, 2), request(client, 3)])
    assert list(answers(client, serve_socket(sock))) == [1, 2, 3]
    assert sock.looks == 0


def test_a_request_without_a_body_gets_the_shared_empty_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs: list[object] = []
    inner = app

    def noting_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        inputs.append(environ["wsgi.input"])
        return inner(environ, start_response)

    monkeypatch.setattr(sys.modules[__name__], "app", noting_app)
    client = FastCGIConnection(CLIENT)
    sent = serve(request(client, 1) + request(client, 2, b"abcd") + request(client, 3))
    assert list(answers(client, sent).values()) == [
        b"rid=1 t\xe91 0",
        b"rid=2 t\xe92 4",
        b"rid=3 t\xe93 0",
    ]
    assert inputs[0] is wsgi.EMPTY_INPUT and inputs[2] is wsgi.EMPTY_INPUT
    assert inputs[1] is not wsgi.EMPTY_INPUT
    empty = wsgi.EMPTY_INPUT
    assert (empty.read(), empty.read(5), empty.readline(), empty.readlines(), list(empty)) == (
        b"",
        b"",
        b"",
        [],
        [],
    )
