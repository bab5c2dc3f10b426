"""The worker's serving loop with requests that arrive together (``server.Connection.serve``
over a fake socket): the bodiless ones are taken whole by the codec's fast path, one after the
other, and answered in order; the general path takes the rest."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from corral.protocol.fastcgi import CLIENT, FastCGIConnection
from corral.protocol.fastcgi.events import EndRequest, Stdout
from corral.worker import server

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
