"""The Exchange driven by a client stream that is not HTTP/1.1.

``RecordingStream`` implements ``ClientStream`` and ``ResponseStream`` the way another protocol
(HTTP/2) would, and records what the exchange asks of it: these tests show that an exchange
needs nothing of HTTP/1.1 (no framing, no transport), and pin its own rules: what it sends a
backend, the 503 policy, the retry of a request that never reached the app, 502/504.
In-process, no sockets; the lease source and the backend are scripted.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.unit.front.prefix_router import PrefixRouter

from corral.backends import BackendError, BackendNotStarted, ResponseSink, encode_params
from corral.front.exchange import Exchange
from corral.front.http1 import _EXPIRED, HTTPConnection
from corral.front.routes import AppRoute
from corral.front.server import FrontServer
from corral.front.stream import PAUSE_LEASE, Deadline, TunnelPeer
from corral.protocol.http1.events import Request
from corral.supervision.lease import (
    Deliver,
    Lease,
    PoolError,
    PoolOverloaded,
    PoolUnavailable,
    Waiter,
)


def _request(method: bytes = b"GET", target: bytes = b"/app/x?q=1", **kw: Any) -> Request:
    path, _, query = target.partition(b"?")
    fields: dict[str, Any] = {
        "method": method,
        "target": target,
        "path": path,
        "query": query,
        "http_version": "2",
        "headers": [(b"host", b"example.org"), (b"user-agent", b"h2 client")],
        "keep_alive": True,
        "expect_continue": False,
        "content_length": None,
        "chunked": False,
        "upgrade": None,
        "host": b"example.org",
    }
    fields.update(kw)
    return Request(**fields)


@dataclass
class RecordingResponse:
    """A ResponseStream that keeps what it is given (no framing: another protocol's)."""

    status: int = 0
    head_sent: bool = False
    heads: list[tuple[int, bytes, list[tuple[bytes, bytes]]]] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    flushes: int = 0
    ended: int = 0

    def head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.heads.append((status, reason, headers))

    def body(self, data: bytes | memoryview) -> None:
        self.pieces.append(bytes(data))

    def flush(self) -> None:
        self.flushes += 1
        if self.status:
            self.head_sent = True

    def end(self) -> int:
        self.ended += 1
        self.head_sent = True
        return 0

    def stream_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        raise AssertionError("not streamed in these tests")

    async def stream_piece(self, data: bytes) -> None:
        raise AssertionError("not streamed in these tests")

    def stream_end(self) -> None:
        raise AssertionError("not streamed in these tests")

    def tunnel_write(self, data: bytes | memoryview) -> None:
        raise AssertionError("no tunnel in these tests")


@dataclass
class RecordingStream:
    """A ClientStream as an HTTP/2 stream would be one: facts, deadlines, answers."""

    remote_host: str = "192.0.2.7"
    remote_port: int = 50000
    server_port: int = 8443
    loopback: bool = False
    trusted: bool = False
    tls: bool = False
    conn_params: bytes = encode_params([(b"REMOTE_ADDR", b"192.0.2.7")])
    closed: bool = False
    writing_paused: bool = False
    body_complete: bool = True
    response: RecordingResponse = field(default_factory=RecordingResponse)
    deadlines: list[Deadline] = field(default_factory=list)
    paused: set[int] = field(default_factory=set)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)
    aborted: int = 0

    def set_deadline(self, kind: Deadline, seconds: float) -> None:
        self.deadlines.append(kind)

    def extend_deadline(self, kind: Deadline, seconds: float) -> None:
        return None

    def pause_reading(self, reason: int) -> None:
        self.paused.add(reason)

    def resume_reading(self, reason: int) -> None:
        self.paused.discard(reason)

    def want_body(self) -> None:
        return None

    def reject(self, status: int, reason: str) -> None:
        self.errors.append((status, {"reason": reason}))

    def respond_error(self, status: int, **kw: Any) -> None:
        self.errors.append((status, kw))

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], tunnel: TunnelPeer
    ) -> bytes:
        raise AssertionError("no tunnel in these tests")

    def finish(self, close: bool) -> None:
        self.finished.append(close)

    def abort(self) -> None:
        self.aborted += 1


@dataclass
class ScriptedBackend:
    """An Upstream that records the request and lets the test answer it."""

    begun: list[tuple[bytes, list[tuple[bytes, bytes]], int]] = field(default_factory=list)
    sink: ResponseSink | None = None
    aborted: bool = False
    is_closed: bool = False

    def begin(
        self, static: bytes, params: list[tuple[bytes, bytes]], sink: ResponseSink, has_body: int
    ) -> None:
        self.begun.append((static, list(params), has_body))
        self.sink = sink

    def send_body(self, data: bytes) -> None:
        return None

    def end_body(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.is_closed = True


@dataclass
class ScriptedSource:
    """A LeaseSource whose answers the test decides, one per request (or retry)."""

    answers: list[Callable[[], Lease | Waiter | None]]
    name: str = "app"
    asked: list[tuple[bool, bool]] = field(default_factory=list)
    released: list[bool] = field(default_factory=list)
    cancelled: int = 0

    def lease_or_wait(
        self, deliver: Deliver, queueable: bool = False, first: bool = False
    ) -> Lease | Waiter | None:
        self.asked.append((queueable, first))
        return self.answers.pop(0)()

    def cancel_wait(self, waiter: Waiter) -> None:
        self.cancelled += 1

    def try_acquire(self) -> Lease | None:
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        raise AssertionError("leased by callback in these tests")

    def release(self, lease: Lease, reusable: bool) -> None:
        self.released.append(reusable)


def _lease(backend: ScriptedBackend, **kw: Any) -> Callable[[], Lease]:
    return lambda: Lease(backend, backend, 1, 1, **kw)  # type: ignore[arg-type]


def _raise(exc: PoolError) -> Callable[[], Lease]:
    def answer() -> Lease:
        raise exc

    return answer


def _run(test: Callable[[FrontServer], None], route: AppRoute) -> None:
    async def main() -> None:
        server = FrontServer(PrefixRouter([route]))
        test(server)

    asyncio.run(main())


def _route(source: ScriptedSource, **kw: Any) -> AppRoute:
    return AppRoute("app", source, script_name=b"/app", **kw)


def test_a_request_goes_to_the_backend_and_back_without_http1() -> None:
    backend = ScriptedBackend()
    source = ScriptedSource([_lease(backend)])
    route = _route(source)

    def test(server: FrontServer) -> None:
        stream = RecordingStream()
        exchange = Exchange(server, stream)  # type: ignore[arg-type]
        exchange.start(_request(), False)
        [(static, params, has_body)] = backend.begun
        assert static == route.encoded_params + stream.conn_params
        variables = dict(params)
        assert variables[b"REQUEST_METHOD"] == b"GET"
        assert variables[b"PATH_INFO"] == b"/x"
        assert variables[b"QUERY_STRING"] == b"q=1"
        assert variables[b"SERVER_NAME"] == b"example.org"
        assert variables[b"SERVER_PORT"] == b"8443"
        assert variables[b"SERVER_PROTOCOL"] == b"HTTP/2"
        assert not has_body
        assert source.asked == [(True, False)]  # a GET without a body may be queued
        assert stream.deadlines == [Deadline.BACKEND]
        assert exchange.agent == b"h2 client"
        sink = backend.sink
        assert sink is exchange
        sink.backend_head(200, b"OK", [(b"Content-Type", b"text/plain")])
        sink.backend_body(b"hello")
        sink.backend_flush()
        sink.backend_end(True)
        response = stream.response
        assert response.heads == [(200, b"OK", [(b"Content-Type", b"text/plain")])]
        assert response.pieces == [b"hello"]
        assert response.ended == 1
        assert stream.finished == [False]  # the stream decides about keep-alive
        assert source.released == [True]
        assert exchange.backend is None

    _run(test, route)


def test_a_body_waits_for_the_lease_and_the_stream_is_paused_meanwhile() -> None:
    backend = ScriptedBackend()
    source = ScriptedSource([lambda: asyncio.get_running_loop().create_future()])
    route = _route(source)

    def test(server: FrontServer) -> None:
        stream = RecordingStream(body_complete=False)
        exchange = Exchange(server, stream)  # type: ignore[arg-type]
        exchange.start(_request(b"POST", content_length=4), True)
        assert source.asked == [(False, False)]  # a body: never queued on a busy worker
        assert stream.paused == {PAUSE_LEASE}
        assert stream.deadlines == [Deadline.ACQUIRE]
        exchange.body(b"da")
        exchange.body(b"ta")
        exchange.give_up()  # the stream's ACQUIRE deadline passed
        assert source.cancelled == 1
        assert stream.errors == [
            (503, {"retry_after": True, "message": "No application worker was free."})
        ]
        assert backend.begun == []

    _run(test, route)


@pytest.mark.parametrize(
    ("loopback", "development", "details"),
    [(False, False, False), (True, False, True), (False, True, True)],
)
def test_a_pool_that_cannot_start_is_a_503_with_details_only_where_allowed(
    loopback: bool, development: bool, details: bool
) -> None:
    exc = PoolUnavailable("app", "boom", "Traceback: ...", failures=2, retry_in=4.2)
    source = ScriptedSource([_raise(exc)])
    route = _route(source, development=development)

    def test(server: FrontServer) -> None:
        stream = RecordingStream(loopback=loopback)
        Exchange(server, stream).start(_request(), False)  # type: ignore[arg-type]
        [(status, kw)] = stream.errors
        assert status == 503
        assert kw["retry_after"] is True
        assert kw["retry_seconds"] == 4.2
        assert kw["message"] == "The application cannot start."
        assert len(kw["reference"]) == 8 and int(kw["reference"], 16) >= 0  # also in the log
        if details:
            assert "boom" in kw["details"] and "Traceback: ..." in kw["details"]
        else:
            assert kw["details"] is None

    _run(test, route)


def test_an_overloaded_pool_is_a_503_with_retry_after() -> None:
    source = ScriptedSource([_raise(PoolOverloaded("app", 8))])

    def test(server: FrontServer) -> None:
        stream = RecordingStream()
        Exchange(server, stream).start(_request(), False)  # type: ignore[arg-type]
        assert stream.errors == [
            (503, {"retry_after": True, "message": "The application is busy."})
        ]

    _run(test, _route(source))


def test_a_request_that_never_reached_the_app_is_leased_again_first_in_line() -> None:
    backends = [ScriptedBackend() for _ in range(5)]
    source = ScriptedSource([_lease(backend) for backend in backends])

    def test(server: FrontServer) -> None:
        stream = RecordingStream()
        exchange = Exchange(server, stream)  # type: ignore[arg-type]
        exchange.start(_request(), False)
        for backend in backends[:3]:
            assert backend.sink is not None
            backend.sink.backend_error(BackendNotStarted("closed before serving it"))
        # Sent again three times, each first in line, then the fourth failure is a 502.
        assert source.asked == [(True, False), (True, True), (True, True), (True, True)]
        assert stream.errors == []
        assert backends[3].sink is not None
        backends[3].sink.backend_error(BackendNotStarted("closed before serving it"))
        assert stream.errors == [(502, {})]
        assert source.released == [False] * 4

    _run(test, _route(source))


def test_a_withdrawn_request_is_always_sent_again() -> None:
    backends = [ScriptedBackend() for _ in range(6)]
    source = ScriptedSource([_lease(backend) for backend in backends])

    def test(server: FrontServer) -> None:
        stream = RecordingStream()
        Exchange(server, stream).start(_request(), False)  # type: ignore[arg-type]
        for backend in backends[:5]:
            assert backend.sink is not None
            backend.sink.backend_error(BackendNotStarted("withdrawn", withdrawn=True))
        assert len(source.asked) == 6
        assert stream.errors == []

    _run(test, _route(source))


def test_backend_failures_are_502_504_or_a_cut_response() -> None:
    def run_one(
        lease_kw: dict[str, Any], script: Callable[[ResponseSink], None]
    ) -> RecordingStream:
        backend = ScriptedBackend()
        source = ScriptedSource([_lease(backend, **lease_kw)])
        got: list[RecordingStream] = []

        def test(server: FrontServer) -> None:
            stream = RecordingStream()
            Exchange(server, stream).start(_request(b"POST"), False)  # type: ignore[arg-type]
            assert backend.sink is not None
            script(backend.sink)
            got.append(stream)

        _run(test, _route(source))
        return got[0]

    failed = run_one({}, lambda sink: sink.backend_error(BackendError("garbage")))
    assert failed.errors == [(502, {})]
    timed_out = run_one({"timed_out": True}, lambda sink: sink.backend_error(BackendError("cut")))
    assert timed_out.errors == [(504, {})]
    switched = run_one({}, lambda sink: sink.backend_head(101, b"", []))
    assert switched.errors == [(502, {})]  # a 101 to a request that was not tunnelled

    def cut(sink: ResponseSink) -> None:
        sink.backend_head(200, b"", [])
        sink.backend_body(b"part")
        sink.backend_flush()
        sink.backend_error(BackendError("went away"))

    cut_short = run_one({}, cut)
    assert cut_short.errors == []
    assert cut_short.aborted == 1


def test_every_deadline_kind_but_none_has_an_expiry_action() -> None:
    assert set(_EXPIRED) == set(Deadline) - {Deadline.NONE}


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        self.out.extend(bytes(piece) for piece in data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8080)}.get(name)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


def _instances(cls: type) -> int:
    """How many ``cls`` objects are alive (tracked by the collector, as a connection is); not a
    weak reference: the compiled build's connection would not clear one (a mypyc limitation)."""
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def test_a_lost_connection_is_freed_without_the_cycle_collector() -> None:
    """The connection, its exchange and its response point at each other while it lives; once
    it is lost, reference counting alone frees them (no garbage for the cycle collector per
    closed connection)."""
    backend = ScriptedBackend()
    source = ScriptedSource([_lease(backend)])

    def test(server: FrontServer) -> None:
        conn = HTTPConnection(server)
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        conn.data_received(b"GET /app/ HTTP/1.1\r\nHost: a\r\n\r\n")
        assert backend.sink is not None
        backend.sink.backend_head(200, b"", [(b"Content-Length", b"2")])
        backend.sink.backend_body(b"ok")
        backend.sink.backend_end(True)
        backend.sink = None
        alive = _instances(HTTPConnection)
        conn.connection_lost(None)
        del conn
        assert _instances(HTTPConnection) == alive - 1

    gc.disable()
    try:
        _run(test, _route(source))
    finally:
        gc.enable()
