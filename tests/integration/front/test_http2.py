"""HTTP/2 at the front, end to end: a real `corral serve` with an https binding (ALPN h2) and a
plain one with ``http2_cleartext`` (prior knowledge), reached by curl, nghttp, headless Chromium
and clients written here with the ``h2`` library over raw sockets (tests/h2client.py).

What is proved: a WSGI app served over h2 both ways, seeing what it sees over HTTP/1.1 (SERVER_
PROTOCOL HTTP/2.0, :authority as the Host, cookies joined, the scheme), the access log saying
HTTP/2.0; HTTP/1.1 still served on the same ports; many concurrent streams on one connection; a
large upload and download streamed; an application failing mid-response costing its stream only
(RST_STREAM, the connection goes on); an Upgrade request refused; and the defences: rapid
reset (GOAWAY ENHANCE_YOUR_CALM), a CONTINUATION flood, a stream that never opens its window (its
response spilled, its worker released), an upload faster than its application reads (held by
flow control), a client that opens the most streams and stalls (then one more: GOAWAY), each
while other streams and clients are served with the server's memory bounded; GOAWAY on a
graceful stop with the streams in flight finishing; a silent client closed. (ASGI, PHP and
Node apps: tests/integration/interop/test_tls_apps.py.)
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame
from tests import chromium
from tests.conftest import require_program
from tests.h2client import H2Client
from tests.harness import WAIT, CorralServer, request
from tests.tlscerts import Certificate, make_certificate

from ports import port as leased_port

MIB = 1024 * 1024

APP = textwrap.dedent(
    """
    import json, os, time

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/big":
            size = int(environ.get("QUERY_STRING") or 10 * 1024 * 1024)
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(size))])
            piece = b"x" * 65536
            return (piece[: min(65536, size - sent)] for sent in range(0, size, 65536))
        if path == "/slowread":
            time.sleep(3)  # the body waits meanwhile: flow control holds the client
        if path in ("/upload", "/slowread"):
            total = 0
            while True:
                got = environ["wsgi.input"].read(65536)
                if not got:
                    break
                total += len(got)
            body = str(total).encode()
        elif path == "/fail":
            def failing():
                yield b"a" * 1000
                os._exit(3)  # the worker dies mid-response
            start_response("200 OK", [("Content-Type", "text/plain")])
            return failing()
        elif path == "/slow":
            time.sleep(1.5)
            body = b"slow done"
        elif path == "/page":
            body = b"<html><head><title>over h2</title></head><body>h2</body></html>"
        else:
            seen = {key: environ.get(key) for key in
                    ("SERVER_PROTOCOL", "HTTP_HOST", "HTTP_COOKIE", "wsgi.url_scheme",
                     "REQUEST_METHOD", "QUERY_STRING", "CONTENT_LENGTH")}
            body = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "text/html"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    """
)


@dataclass
class H2Setup:
    server: CorralServer
    https: int
    plain: int
    certificate: Certificate


def start(root: Path, server_table: str = "", *args: str) -> H2Setup:
    certificate = make_certificate(root / "certs", "a", ["a.example"])
    https, plain = leased_port(), leased_port()
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "wsgi.py").write_text(APP)
    (site / "corral.toml").write_text(
        '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
    )
    binding = (
        f'{{ address = "127.0.0.1", port = {https}, hosts = ["a.example"], protocol = "https", '
        'certificate = "certs/a.pem", key = "certs/a.key" }'
    )
    path = root / "server.toml"
    path.write_text(
        "[server]\nhttp2_cleartext = true\n"
        + server_table
        + textwrap.dedent(
            f"""
            [sites.a]
            bindings = [
                {binding},
                "127.0.0.1:{plain}:",
            ]
            [sites.a.apps."/"]
            physical_path = "site"
            """
        )
    )
    server = CorralServer(path, args=("--min", "2", "--max", "6", *args), listen=None)
    server.start(wait_ready=False)
    return H2Setup(server, https, plain, certificate)


@pytest.fixture(scope="module")
def h2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[H2Setup]:
    setup = start(tmp_path_factory.mktemp("h2"))
    try:
        yield setup
    finally:
        setup.server.stop()
    # Whatever the clients did, the front never failed on it.
    assert "Traceback" not in setup.server.text(), setup.server.text()[-5000:]


def curl(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [require_program("curl"), "-sS", "--max-time", str(timeout), *args],
        capture_output=True,
        timeout=timeout + 5,
    )


def tls_curl(setup: H2Setup, *args: str) -> subprocess.CompletedProcess[bytes]:
    return curl(
        "--cacert",
        str(setup.certificate.pem),
        "--resolve",
        f"a.example:{setup.https}:127.0.0.1",
        *args,
    )


def server_rss(setup: H2Setup) -> int:
    assert setup.server.proc is not None
    return int(psutil.Process(setup.server.proc.pid).memory_info().rss)


def other_clients_served(setup: H2Setup) -> None:
    """Another HTTP/2 client and an HTTP/1.1 client are answered at once."""
    with H2Client(setup.plain) as other:
        reply = other.get("/info")
        assert reply.status == 200, setup.server.text()[-3000:]
    assert request(setup.plain, path="/info").status == 200


# -- serving ---------------------------------------------------------------------------------------


def test_curl_gets_a_wsgi_app_over_tls_with_alpn_h2(h2: H2Setup) -> None:
    done = tls_curl(
        h2,
        "--http2",
        "-v",
        "-H",
        "Cookie: a=1",
        "-H",
        "Cookie: b=2",
        f"https://a.example:{h2.https}/info?q=1",
    )
    assert done.returncode == 0, done.stderr
    assert b"ALPN: server accepted h2" in done.stderr
    assert b"< HTTP/2 200" in done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "SERVER_PROTOCOL": "HTTP/2.0",
        "HTTP_HOST": f"a.example:{h2.https}",
        "HTTP_COOKIE": "a=1; b=2",
        "wsgi.url_scheme": "https",
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "q=1",
        "CONTENT_LENGTH": None,
    }
    h2.server.wait_log(r'"GET /info\?q=1 HTTP/2\.0" 200')


def test_curl_with_prior_knowledge_on_the_plain_binding(h2: H2Setup) -> None:
    done = curl("--http2-prior-knowledge", "-v", f"http://127.0.0.1:{h2.plain}/info")
    assert done.returncode == 0, done.stderr
    assert b"< HTTP/2 200" in done.stderr
    seen = json.loads(done.stdout)
    assert seen["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert seen["wsgi.url_scheme"] == "http"
    # HTTP/1.1 on the same ports: plain, and over TLS without h2 in ALPN.
    plain = curl("--http1.1", "-v", f"http://127.0.0.1:{h2.plain}/info")
    assert b"< HTTP/1.1 200" in plain.stderr
    assert json.loads(plain.stdout)["SERVER_PROTOCOL"] == "HTTP/1.1"
    tls = tls_curl(h2, "--http1.1", "-v", f"https://a.example:{h2.https}/info")
    assert b"ALPN: server accepted http/1.1" in tls.stderr
    assert json.loads(tls.stdout)["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_nghttp_gets_many_concurrent_streams_on_one_connection(h2: H2Setup) -> None:
    nghttp = require_program("nghttp")
    # nghttp has no --resolve: 127.0.0.1 with the site's Host as :authority (over TLS it
    # sends no SNI for an address; the port's default certificate is the site's).
    urls = [f"https://127.0.0.1:{h2.https}/info?n={n}" for n in range(60)]
    done = subprocess.run(
        [nghttp, "-n", "-s", "-v", "-H", f":authority: a.example:{h2.https}", *urls],
        capture_output=True,
        timeout=WAIT * 3,
    )
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, out[-3000:] + done.stderr.decode()
    assert "h2" in out  # (the negotiated protocol line)
    codes = [line.split()[4] for line in out.splitlines() if "/info?n=" in line and "+" in line]
    assert codes == ["200"] * 60, out[-3000:]
    # One connection.
    assert out.count("The negotiated protocol: h2") == 1
    # The same over cleartext, with prior knowledge, 100 requests on one connection.
    done = subprocess.run(
        [nghttp, "-n", "-s", "-m", "100", f"http://127.0.0.1:{h2.plain}/info"],
        capture_output=True,
        timeout=WAIT * 3,
    )
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, out[-3000:]
    assert sum(1 for line in out.splitlines() if " 200 " in line) == 100, out[-3000:]


def test_a_large_upload_and_download_are_streamed(h2: H2Setup) -> None:
    before = server_rss(h2)
    size = 64 * MIB
    down = curl(
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{http_version}",
        f"http://127.0.0.1:{h2.plain}/big?{size}",
        timeout=60,
    )
    assert down.stdout.decode() == f"{size} 2", down.stderr
    body = b"u" * (48 * MIB)
    with H2Client(h2.plain) as client:
        stream = client.request(
            "/upload",
            method="POST",
            body=body,
            extra=[(b"content-length", str(len(body)).encode())],
        )
        reply = client.wait(stream)
    assert reply.status == 200
    assert reply.body == str(len(body)).encode()
    # Neither was held whole by the front (a body passes through in windows and pieces).
    assert server_rss(h2) - before < 40 * MIB


def test_an_upload_faster_than_its_application_reads_is_held_by_flow_control(
    h2: H2Setup,
) -> None:
    total = 16 * MIB
    body = memoryview(b"s" * total)
    with H2Client(h2.plain) as client:
        length = [(b"content-length", str(total).encode())]
        stream = client.request("/slowread", method="POST", extra=length, end=False)
        sent = 0
        client.sock.settimeout(0.2)
        until = time.monotonic() + 2.0  # (the application reads nothing for 3 s)
        while time.monotonic() < until and sent < total:
            room = min(
                client.conn.local_flow_control_window(stream), client.conn.max_outbound_frame_size
            )
            if room > 0:
                client.conn.send_data(stream, bytes(body[sent : sent + room]))
                client.flush()
                sent += room
                continue
            try:
                client.read_some()
            except TimeoutError:
                pass
        # The front took a window's worth and what the worker's socket holds, no more: no
        # WINDOW_UPDATE while the application does not read.
        assert sent < 4 * MIB, sent
        client.sock.settimeout(WAIT)
        # Another stream on the same connection is served meanwhile.
        assert client.get("/info").status == 200
        client.send_body(stream, bytes(body[sent:]))
        reply = client.wait(stream)
        assert reply.status == 200 and reply.body == str(total).encode()


def test_a_backend_failing_mid_response_resets_that_stream_only(h2: H2Setup) -> None:
    with H2Client(h2.plain) as client:
        failing = client.request("/fail")
        fine = client.request("/info")
        assert client.wait(failing).reset == 2  # INTERNAL_ERROR
        assert client.wait(fine).status == 200
        # The connection goes on.
        assert client.get("/info").status == 200
        assert client.goaway is None


def test_an_upgrade_request_is_refused(h2: H2Setup) -> None:
    with H2Client(h2.plain) as client:
        # (h2 as a client would drop the field itself: let it through.)
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        upgrade = client.request("/info", extra=[(b"upgrade", b"websocket")])
        client.read_until_closed()
        # Malformed (RFC 9113 8.2.2): h2 makes it a connection error, PROTOCOL_ERROR.
        assert client.replies[upgrade].status == 0
        assert client.goaway is not None and client.goaway[0] == 1
    other_clients_served(h2)


def test_chromium_loads_a_page_over_https_and_http2(h2: H2Setup) -> None:
    done = chromium.run(
        f"https://a.example:{h2.https}/page",
        "--ignore-certificate-errors",
        "--host-resolver-rules=MAP a.example 127.0.0.1",
        "--dump-dom",
    )
    page = chromium.Page(done.stdout.decode("utf-8", "replace"))
    assert page.title == "over h2"
    h2.server.wait_log(r'"GET /page HTTP/2\.0" 200')


# -- defences --------------------------------------------------------------------------------------


def test_rapid_reset_gets_goaway_enhance_your_calm(h2: H2Setup) -> None:
    with H2Client(h2.plain) as attacker:
        for _ in range(300):
            # (The server's GOAWAY may close the connection under any of these writes; it
            # lingers, reading and dropping what is still sent, so the GOAWAY is not lost to a
            # reset: see Http2Connection.close.)
            try:
                stream = attacker.request("/slow")
                attacker.conn.reset_stream(stream)
                attacker.flush()
            except (BrokenPipeError, ConnectionResetError):
                break
        attacker.read_until_closed()
        assert attacker.goaway is not None
        assert attacker.goaway[0] == 0xB  # ENHANCE_YOUR_CALM
    other_clients_served(h2)
    h2.server.wait_log("reset 201 streams within 10 s: GOAWAY ENHANCE_YOUR_CALM")


def test_a_continuation_flood_is_cut_off(h2: H2Setup) -> None:
    with H2Client(h2.plain) as attacker:
        attacker.conn.data_to_send()
        # A header block that never ends: HEADERS without END_HEADERS, then CONTINUATIONs.
        block = attacker.conn.encoder.encode(
            [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
        )
        frames = [HeadersFrame(1, data=block).serialize()]
        filler = ContinuationFrame(1, data=b"\x40\x01a\x01b" * 2000).serialize()  # ~10 KB each
        sent = 0
        try:
            for frame in frames + [filler] * 2000:
                attacker.sock.sendall(frame)
                sent += len(frame)
        except (BrokenPipeError, ConnectionResetError):
            pass
        attacker.read_until_closed()
        # Cut off before the 20 MB flood was in (h2: 64 CONTINUATION frames at most; what
        # was sent meanwhile is what the kernel's buffers took).
        assert sent < 20 * MIB
        assert attacker.goaway is not None and attacker.goaway[0] != 0
    other_clients_served(h2)


def test_a_stream_that_never_opens_its_window_stalls_alone(h2: H2Setup) -> None:
    before = server_rss(h2)
    with H2Client(h2.plain, window=0) as client:
        client.auto_ack = False
        stalled = [client.request("/big?" + str(32 * MIB)) for _ in range(3)]
        wanted = client.request("/info")
        client.conn.increment_flow_control_window(1 << 20, wanted)
        client.flush()
        reply = client.wait(wanted)
        assert reply.status == 200 and json.loads(reply.body)["SERVER_PROTOCOL"] == "HTTP/2.0"
        for stream in stalled:
            assert client.replies[stream].body == b""
        # Their workers were released all the same: the responses went on into spill files
        # (the access log's line is written when the application's response ends).
        line = '"GET /big?33554432 HTTP/2.0" 200 33554432'
        deadline = time.monotonic() + WAIT
        while h2.server.text().count(line) < len(stalled):
            assert time.monotonic() < deadline, h2.server.text()[-3000:]
            time.sleep(0.1)
        # Other clients are served meanwhile, and the stalled responses (96 MiB) are not
        # taken into the front's memory.
        other_clients_served(h2)
        big = curl(
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            f"http://127.0.0.1:{h2.plain}/big",
        )
        assert big.stdout == b"%d" % (10 * MIB)
        assert server_rss(h2) - before < 48 * MIB


def test_a_client_that_opens_the_most_streams_and_stalls(h2: H2Setup) -> None:
    with H2Client(h2.plain, window=0) as client:
        client.auto_ack = False
        client.read_some()  # (the server's SETTINGS)
        most = client.conn.remote_settings.max_concurrent_streams
        assert most == 100
        streams = [client.request("/info") for _ in range(most)]
        # Every one is answered with a head (the bodies wait for a window that never opens);
        # meanwhile other clients are served.
        deadline = time.monotonic() + WAIT
        while sum(1 for s in streams if client.replies[s].status == 200) < most:
            assert time.monotonic() < deadline, "not every stream got its head"
            client.read_some()
        other_clients_served(h2)
        # One stream more than the server allows (written past the client's h2, which would
        # refuse to): the connection is closed with a GOAWAY.
        block = client.conn.encoder.encode(
            [
                (b":method", b"GET"),
                (b":path", b"/info"),
                (b":scheme", b"http"),
                (b":authority", b"x"),
            ]
        )
        extra = HeadersFrame(streams[-1] + 2, data=block, flags=["END_HEADERS", "END_STREAM"])
        client.sock.sendall(extra.serialize())
        client.read_until_closed()
        assert client.goaway is not None and client.goaway[0] == 1  # PROTOCOL_ERROR
    other_clients_served(h2)


def test_graceful_stop_sends_goaway_and_finishes_streams_in_flight(tmp_path: Path) -> None:
    nghttp = require_program("nghttp")
    setup = start(tmp_path)
    try:
        assert request(setup.plain, path="/info").status == 200  # (a worker is up)
        client = subprocess.Popen(
            [nghttp, "-v", f"http://127.0.0.1:{setup.plain}/slow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.7)
        assert setup.server.proc is not None
        setup.server.proc.send_signal(signal.SIGTERM)
        out, _ = client.communicate(timeout=WAIT)
        text = out.decode("utf-8", "replace")
        # GOAWAY NO_ERROR naming stream 13 (nghttp's first request), then its response whole.
        goaway = text.index("recv GOAWAY frame")
        assert "last_stream_id=13, error_code=NO_ERROR" in text[goaway:], text
        assert "slow done" in text[goaway:] and "END_STREAM" in text[goaway:], text
        assert client.returncode == 0
        assert setup.server.wait() == 0
    finally:
        setup.server.stop()


def test_a_silent_cleartext_client_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    setup = start(tmp_path, "header_timeout = 1\n")
    try:
        with socket.create_connection(("127.0.0.1", setup.plain)) as silent:
            silent.settimeout(10)
            started = time.monotonic()
            assert silent.recv(100) == b""
            assert time.monotonic() - started < 5
        with H2Client(setup.plain) as client:
            # No request within the header timeout: GOAWAY NO_ERROR, closed.
            client.read_until_closed()
            assert client.goaway == (0, 0)
    finally:
        setup.server.stop()
