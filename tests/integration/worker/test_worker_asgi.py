"""The worker serving ASGI 3 end to end: real worker processes, real sockets, a FastCGI client.

HTTP (streamed request body, streamed response, disconnect, errors, concurrency on one worker),
lifespan (state, startup failure = "cannot start", shutdown on SIGTERM), detection of ASGI apps,
and WebSocket over a FastCGI request (handshake answered with Status: 101, then raw frames on
STDIN/STDOUT: echo, close handshake both ways, refusal, denial response, protocol errors).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.worker_support import Workers, fcgiclient, workers_fixture

from corral.errors import ExitCode
from corral.protocol import websocket as ws
from corral.protocol.fastcgi import FCGI_MAX_CONNS, FCGI_MPXS_CONNS
from corral.protocol.fastcgi.events import EndRequest, Stdout

Client = fcgiclient.Client
base_params = fcgiclient.base_params
Tunnel = fcgiclient.Tunnel


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "lifespan.log"


@pytest.fixture
def worker(workers: Workers, marker: Path) -> str:
    w = workers.unix(app="asgi_apps:app", env={"LIFESPAN_MARKER": str(marker)})
    assert w.address is not None and isinstance(w.address, str)
    return w.address


def wait_for_lines(path: Path, expect: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if expect in lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


# -------------------------------------------------------------------------------- detection


def test_asgi_app_is_detected_and_logged(workers: Workers) -> None:
    w = workers.unix(app="asgi_apps:app")
    assert "(ASGI," in w.log
    assert w.address is not None
    response = fcgiclient.get(w.address, "/hello")
    assert (response.status, response.body) == ("200 OK", b"Hello, ASGI!")


def test_object_with_async_call_is_asgi(workers: Workers) -> None:
    w = workers.unix(app="asgi_apps:class_app")
    assert w.address is not None
    assert fcgiclient.get(w.address, "/").body == b"class app"


def test_asgi_app_env_variable_forces_asgi(workers: Workers, tmp_path: Path) -> None:
    address = str(tmp_path / "e.sock")
    w = workers.start("--bind", f"unix:{address}", env={"ASGI_APP": "asgi_apps:app"})
    assert "(ASGI," in w.log
    assert fcgiclient.get(address, "/hello").body == b"Hello, ASGI!"


def test_interface_wsgi_overrides_detection(workers: Workers) -> None:
    """--interface wsgi serves the object as WSGI (here: wrongly, so the request fails)."""
    w = workers.unix("--interface", "wsgi", app="asgi_apps:app")
    assert "(ASGI," not in w.log
    assert w.address is not None
    assert fcgiclient.get(w.address, "/hello").status.startswith("500")


def test_get_values_report_many_connections_and_no_multiplexing(workers: Workers) -> None:
    w = workers.unix("--max-connections", "7", app="asgi_apps:app")
    assert w.address is not None
    with Client(w.address) as client:
        values = client.get_values([FCGI_MAX_CONNS, FCGI_MPXS_CONNS])
    assert values == {FCGI_MAX_CONNS: b"7", FCGI_MPXS_CONNS: b"0"}


# -------------------------------------------------------------------------------- HTTP


def test_scope_from_params(worker: str) -> None:
    params = base_params(
        "/caf\xc3\xa9/x?a=1&b=%2F",
        SCRIPT_NAME="/mount",
        HTTP_X_CUSTOM="yes",
        CONTENT_TYPE="text/plain",
        HTTPS="on",
    )
    params["PATH_INFO"] = "/scope"
    params["REQUEST_URI"] = "/mount/scope?a=1&b=%2F"
    with Client(worker) as client:
        response = client.request(params)
    scope = json.loads(response.body)
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "https"
    assert scope["http_version"] == "1.1"
    assert scope["root_path"] == "/mount"
    assert scope["path"] == "/mount/scope"  # ASGI: path includes root_path
    assert scope["raw_path"] == "/mount/scope"
    assert scope["query_string"] == "a=1&b=%2F"
    assert ["x-custom", "yes"] in scope["headers"]
    assert ["content-type", "text/plain"] in scope["headers"]
    assert ["host", "localhost"] in scope["headers"]
    assert scope["client"] == ["127.0.0.1", 5555]
    assert scope["server"] == ["localhost", 80]
    assert scope["state_keys"] == ["pid", "started"]


def test_utf8_path_is_decoded(worker: str) -> None:
    params = base_params("/scope")
    params["SCRIPT_NAME"] = "/caf\xc3\xa9"  # the front sends bytes; UTF-8 here
    with Client(worker) as client:
        scope = json.loads(client.request(params).body)
    assert scope["root_path"] == "/café"


def test_post_body_streams_in_several_messages(worker: str) -> None:
    body = os.urandom(3_000_000)
    with Client(worker) as client:
        client.begin(base_params("/echo", method="POST", CONTENT_LENGTH=str(len(body))), stdin=None)
        for start in range(0, len(body), 60000):
            client.send_stdin(body[start : start + 60000])
        client.send_stdin(b"")
        response = client.read_response()
    result = json.loads(response.body)
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    assert result["messages"] > 1


def test_body_without_content_length_ends_with_stdin(worker: str) -> None:
    with Client(worker) as client:
        response = client.request(base_params("/echo", method="POST"), b"abc" * 1000)
    assert json.loads(response.body)["length"] == 3000


def test_response_streamed_in_pieces_as_sent(worker: str) -> None:
    with Client(worker) as client:
        response = client.request(base_params("/stream?n=5&size=1000"))
    assert response.status == "200 OK"
    assert response.body == b"".join(bytes([65 + i]) * 1000 for i in range(5))
    assert response.header("Content-Length") is None  # streamed: the front frames it
    assert response.stdout_records >= 5


def test_whole_response_gets_a_content_length(worker: str) -> None:
    response = fcgiclient.get(worker, "/hello")
    assert response.header("Content-Length") == "12"
    assert response.header("content-type") == "text/plain"


def test_upload_echoed_while_it_arrives(worker: str) -> None:
    """The app answers each body message before the next arrives: nothing is buffered whole."""
    with Client(worker) as client:
        client.begin(base_params("/upload-echo", method="POST"), stdin=None)
        got = b""
        for index in range(3):
            piece = bytes([97 + index]) * 5000
            client.send_stdin(piece)
            while len(got) < 5000 * (index + 1):
                event = client.next_event()
                assert isinstance(event, Stdout), event
                got += event.data
        client.send_stdin(b"")
        response = client.read_response()
    whole = fcgiclient.Response(stdout=got + response.stdout).parse()
    assert whole.body == b"a" * 5000 + b"b" * 5000 + b"c" * 5000


def test_head_sends_no_body(worker: str) -> None:
    response = fcgiclient.get(worker, "/hello", REQUEST_METHOD="HEAD")
    assert response.body == b""
    assert response.header("Content-Length") == "12"


def test_app_exception_is_a_500_and_the_worker_goes_on(worker: str, workers: Workers) -> None:
    response = fcgiclient.get(worker, "/boom")
    assert response.status.startswith("500")
    assert "RuntimeError: boom" in workers.started[-1].log
    assert fcgiclient.get(worker, "/hello").body == b"Hello, ASGI!"


def test_exception_after_the_head_ends_the_request_cut_short(worker: str) -> None:
    response = fcgiclient.get(worker, "/boom-after")
    assert response.status == "200 OK"
    assert response.body == b"partial"
    assert response.app_status == 1


def test_app_returning_without_a_response_is_a_500(worker: str) -> None:
    assert fcgiclient.get(worker, "/nothing").status.startswith("500")


def test_header_injection_is_refused(worker: str) -> None:
    response = fcgiclient.get(worker, "/bad-header")
    assert response.status.startswith("500")
    assert b"never" not in response.stdout


def test_end_request_is_sent_before_background_work_finishes(worker: str, tmp_path: Path) -> None:
    """Starlette-style background tasks run after the response: the request ends at once, and
    the same connection serves the next request meanwhile."""
    mark = tmp_path / "bg.log"
    with Client(worker) as client:
        response = client.request(base_params(f"/after-response?marker={mark}"), keep_conn=True)
        assert response.body == b"answered"
        assert not mark.exists()
        assert client.request(base_params("/hello"), keep_conn=True).body == b"Hello, ASGI!"
    assert wait_for_lines(mark, "background done") == ["background done"]


def test_client_closing_mid_response_is_http_disconnect(worker: str, tmp_path: Path) -> None:
    mark = tmp_path / "d.log"
    client = Client(worker)
    client.begin(base_params(f"/wait-disconnect?marker={mark}"))
    event = client.next_event()
    assert isinstance(event, Stdout) and b"waiting" in event.data
    client.close()
    assert wait_for_lines(mark, "send raised ClientDisconnected") == [
        "http.disconnect",
        "send raised ClientDisconnected",
    ]


def test_abort_request_is_http_disconnect_and_ends_the_request(worker: str, tmp_path: Path) -> None:
    mark = tmp_path / "a.log"
    with Client(worker) as client:
        client.begin(base_params(f"/wait-disconnect?marker={mark}"), keep_conn=True)
        event = client.next_event()
        assert isinstance(event, Stdout) and b"waiting" in event.data
        client.abort()
        response = client.read_response()
        assert response.app_status == 1
        assert wait_for_lines(mark, "http.disconnect")[0] == "http.disconnect"
        # The connection serves on.
        assert client.request(base_params("/hello"), keep_conn=True).body == b"Hello, ASGI!"


def test_many_requests_at_once_on_one_worker(worker: str) -> None:
    """One worker, one event loop: 20 requests are inside the app at the same time (each waits
    until all 20 have arrived)."""
    results: list[bytes] = []

    def fetch() -> None:
        results.append(fcgiclient.get(worker, "/rendezvous?n=20").body)

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [b"met"] * 20


def test_second_request_on_a_busy_connection_gets_cant_mpx_conn(worker: str) -> None:
    with Client(worker) as client:
        client.begin(base_params("/sleep?seconds=0.3"), rid=1, keep_conn=True)
        client.begin(base_params("/hello"), rid=2, keep_conn=True)
        ends = {}
        while len(ends) < 2:
            event = client.next_event()
            if isinstance(event, EndRequest):
                ends[event.request_id] = event.protocol_status
    assert ends == {1: 0, 2: 1}  # REQUEST_COMPLETE, CANT_MPX_CONN


# -------------------------------------------------------------------------------- lifespan


def test_lifespan_state_reaches_requests_and_shutdown_runs_on_stop(
    workers: Workers, marker: Path
) -> None:
    w = workers.unix(app="asgi_apps:app", env={"LIFESPAN_MARKER": str(marker)})
    assert w.address is not None
    assert marker.read_text() == "startup\n"  # before the worker said it was serving
    state = json.loads(fcgiclient.get(w.address, "/state").body)
    assert state["pid"] == w.proc.pid
    assert w.stop() == 0
    assert marker.read_text() == "startup\nshutdown\n"


def test_lifespan_startup_failure_is_cannot_start(workers: Workers, tmp_path: Path) -> None:
    address = str(tmp_path / "f.sock")
    w = workers.start(
        "--bind",
        f"unix:{address}",
        "--app",
        "asgi_apps:app",
        env={"FAIL_STARTUP": "1"},
        wait=False,
    )
    assert w.proc.wait(15) == ExitCode.APP_LOAD_FAILED
    assert "the database is down" in w.log
    assert "serving" not in w.log


def test_app_without_lifespan_support_is_served(workers: Workers) -> None:
    w = workers.unix(app="asgi_apps:no_lifespan")
    assert "does not support the ASGI lifespan protocol" in w.log
    assert w.address is not None
    assert fcgiclient.get(w.address, "/").body == b"no lifespan here"
    assert w.stop() == 0


def test_sigterm_lets_a_request_in_flight_finish(workers: Workers) -> None:
    w = workers.unix(app="asgi_apps:app")
    assert w.address is not None
    with Client(w.address) as client:
        client.begin(base_params("/sleep?seconds=0.5"))
        time.sleep(0.2)
        w.proc.terminate()
        response = client.read_response()
    assert response.body == b"slept"
    assert w.proc.wait(10) == 0


# -------------------------------------------------------------------------------- WebSocket


def test_websocket_echo_over_a_fastcgi_request(worker: str, tmp_path: Path) -> None:
    mark = tmp_path / "ws.log"
    tunnel = Tunnel(worker, f"/ws/echo?marker={mark}")
    try:
        response = tunnel.response
        assert response.status == "101 Switching Protocols"
        assert response.header("Upgrade") == "websocket"
        assert response.header("Connection") == "Upgrade"
        assert response.header("Sec-WebSocket-Accept") == ws.accept_key(fcgiclient.WS_KEY)
        assert response.header("x-accepted") == "yes"
        tunnel.send_text("héllo")
        assert tunnel.next() == ws.TextMessage("héllo")
        big = os.urandom(200_000)
        tunnel.send_bytes(big)
        assert tunnel.next() == ws.BytesMessage(big)
        # Pings are answered by the worker itself.
        tunnel.send_raw(tunnel.ws.ping(b"are you there"))
        assert tunnel.next() == ws.Pong(b"are you there")
        # Fragmented text, split inside a character.
        tunnel.send_raw(tunnel.ws.send_fragments(["é".encode()[:1], "é".encode()[1:]], text=True))
        assert tunnel.next() == ws.TextMessage("é")
        tunnel.close(1000, "done")
        assert tunnel.next() == ws.CloseReceived(1000, "")
        assert tunnel.next() is None  # END_REQUEST: the tunnel is over
        assert tunnel.app_status == 0
    finally:
        tunnel.shutdown()
    assert wait_for_lines(mark, "disconnect 1000") == ["disconnect 1000"]


def test_websocket_server_initiated_close(worker: str) -> None:
    tunnel = Tunnel(worker, "/ws/echo")
    try:
        tunnel.send_text("close-me")
        assert tunnel.next() == ws.CloseReceived(4001, "asked")
        tunnel.close(4001)
        assert tunnel.next() is None
    finally:
        tunnel.shutdown()


def test_websocket_client_vanishing_is_disconnect_1006(worker: str, tmp_path: Path) -> None:
    mark = tmp_path / "gone.log"
    tunnel = Tunnel(worker, f"/ws/echo?marker={mark}")
    tunnel.send_text("x")
    assert tunnel.next() == ws.TextMessage("x")
    tunnel.shutdown()  # the front closes the connection: no close frame
    assert wait_for_lines(mark, "disconnect 1006") == ["disconnect 1006"]


def test_websocket_stdin_end_is_disconnect_1006(worker: str, tmp_path: Path) -> None:
    mark = tmp_path / "eof.log"
    tunnel = Tunnel(worker, f"/ws/echo?marker={mark}")
    try:
        tunnel.end_stdin()  # the client half-closed: the front ends STDIN
        assert tunnel.next() is None
    finally:
        tunnel.shutdown()
    assert wait_for_lines(mark, "disconnect 1006") == ["disconnect 1006"]


def test_websocket_rejected_before_accept_is_403(worker: str) -> None:
    tunnel = Tunnel(worker, "/ws/reject")
    assert tunnel.response.status == "403 Forbidden"
    assert tunnel.ended
    tunnel.shutdown()


def test_websocket_denial_response_extension(worker: str) -> None:
    tunnel = Tunnel(worker, "/ws/deny")
    assert tunnel.response.status == "401 Unauthorized"
    assert tunnel.response.body == b"denied"
    tunnel.shutdown()


def test_websocket_subprotocols_and_scope(worker: str) -> None:
    tunnel = Tunnel(worker, "/ws/subprotocol", HTTP_SEC_WEBSOCKET_PROTOCOL="chat, superchat")
    try:
        assert tunnel.response.header("Sec-WebSocket-Protocol") == "superchat"
        assert tunnel.next() == ws.TextMessage('["chat", "superchat"]')
    finally:
        tunnel.shutdown()
    tunnel = Tunnel(worker, "/ws/scope", HTTPS="on")
    try:
        event = tunnel.next()
        assert isinstance(event, ws.TextMessage)
        assert json.loads(event.data) == {"scheme": "wss", "path": "/ws/scope", "type": "websocket"}
    finally:
        tunnel.shutdown()


def test_bad_handshake_is_answered_without_the_app(worker: str) -> None:
    tunnel = Tunnel(worker, "/ws/echo", HTTP_SEC_WEBSOCKET_VERSION="8")
    assert tunnel.response.status.startswith("426")
    assert tunnel.response.header("Sec-WebSocket-Version") == "13"
    tunnel.shutdown()
    tunnel = Tunnel(worker, "/ws/echo", HTTP_SEC_WEBSOCKET_KEY="short")
    assert tunnel.response.status.startswith("400")
    tunnel.shutdown()


def test_websocket_protocol_error_closes_with_1002(worker: str, tmp_path: Path) -> None:
    mark = tmp_path / "pe.log"
    tunnel = Tunnel(worker, f"/ws/echo?marker={mark}")
    try:
        tunnel.send_raw(ws.encode_frame(0x1, b"unmasked"))  # a client must mask
        event = tunnel.next()
        assert isinstance(event, ws.CloseReceived) and event.code == 1002
        assert tunnel.next() is None
    finally:
        tunnel.shutdown()
    assert wait_for_lines(mark, "disconnect 1002") == ["disconnect 1002"]


def test_websocket_message_too_big_closes_with_1009(workers: Workers) -> None:
    w = workers.unix("--ws-max-size", "1000", app="asgi_apps:app")
    assert w.address is not None
    tunnel = Tunnel(w.address, "/ws/echo")
    try:
        tunnel.send_bytes(b"x" * 2000)
        event = tunnel.next()
        assert isinstance(event, ws.CloseReceived) and event.code == 1009
    finally:
        tunnel.shutdown()


def test_websocket_app_exception_closes_with_1011(worker: str) -> None:
    tunnel = Tunnel(worker, "/ws/boom")
    try:
        event = tunnel.next()
        assert isinstance(event, ws.CloseReceived) and event.code == 1011
    finally:
        tunnel.shutdown()


def test_websockets_and_http_side_by_side_on_one_worker(worker: str) -> None:
    tunnels = [Tunnel(worker, "/ws/echo") for _ in range(5)]
    try:
        assert fcgiclient.get(worker, "/hello").body == b"Hello, ASGI!"
        for index, tunnel in enumerate(tunnels):
            tunnel.send_text(f"n{index}")
        for index, tunnel in enumerate(tunnels):
            assert tunnel.next() == ws.TextMessage(f"n{index}")
    finally:
        for tunnel in tunnels:
            tunnel.shutdown()


def test_sigterm_closes_websockets_with_1012_and_runs_shutdown(
    workers: Workers, marker: Path
) -> None:
    w = workers.unix(app="asgi_apps:app", env={"LIFESPAN_MARKER": str(marker)})
    assert w.address is not None
    tunnel = Tunnel(w.address, "/ws/echo")
    try:
        w.proc.terminate()
        event = tunnel.next()
        assert isinstance(event, ws.CloseReceived) and event.code == 1012
        tunnel.close(1012)
        assert tunnel.next() is None
    finally:
        tunnel.shutdown()
    assert w.proc.wait(10) == 0
    assert marker.read_text() == "startup\nshutdown\n"


def test_websocket_keepalive_pings_and_a_silent_client_is_dropped(
    workers: Workers, tmp_path: Path
) -> None:
    w = workers.unix("--ws-ping-interval", "0.3", app="asgi_apps:app")
    assert w.address is not None
    mark = tmp_path / "ping.log"
    tunnel = Tunnel(w.address, f"/ws/echo?marker={mark}")
    try:
        for _ in range(3):  # answered pings keep it open
            event = tunnel.next()
            assert event == ws.Ping(b"corral")
            tunnel.send_raw(tunnel.ws.pong(b"corral"))
        tunnel.send_text("still here")
        event = tunnel.next()
        while event == ws.Ping(b"corral"):
            tunnel.send_raw(tunnel.ws.pong(b"corral"))
            event = tunnel.next()
        assert event == ws.TextMessage("still here")
        # Now silent: the next ping goes unanswered, and the one after finds the client gone.
        while tunnel.next() is not None:
            pass
        assert tunnel.ended
    finally:
        tunnel.shutdown()
    assert wait_for_lines(mark, "disconnect 1006") == ["disconnect 1006"]


def test_asgi_worker_exits_when_its_host_dies(workers: Workers) -> None:
    """The liveness pipe works on the asyncio path too, even with a WebSocket open."""
    read_end, write_end = os.pipe()
    try:
        w = workers.unix("--liveness-fd", str(read_end), app="asgi_apps:app", pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert w.address is not None
    tunnel = Tunnel(w.address, "/ws/echo")
    try:
        tunnel.send_text("alive")
        assert tunnel.next() == ws.TextMessage("alive")
        os.close(write_end)  # the host "dies"
        assert w.proc.wait(10) == ExitCode.ORPHANED
    finally:
        tunnel.shutdown()
    assert "liveness pipe closed" in w.log
