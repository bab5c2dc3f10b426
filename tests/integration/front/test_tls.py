"""TLS at the front, end to end: a real `corral serve` on https bindings with certificates the
tests make (openssl), reached by curl, Python's ssl module, openssl s_client and headless
Chromium.

What is proved: TLS 1.2 and 1.3 served (curl), SNI choosing each site's certificate and the
default one for clients without SNI, TLS 1.0/1.1 and a non-AEAD TLS 1.2 cipher refused, plain
HTTP redirected to https (308) per site, HSTS on TLS responses only, the scheme reaching the
application (HTTPS, REQUEST_SCHEME, wsgi.url_scheme), a stalled or non-TLS client not disturbing
others (tls_handshake_timeout), a certificate replaced on disk while a connection is open (that
one keeps working, a new one sees the new certificate; a broken replacement is refused and the
old one stays), a reload (SIGHUP) taking a new certificate, session ticket keys renewed, and
`corral check`/`corral serve` naming the file, line and setting of a bad certificate or key.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import textwrap
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests import chromium
from tests.conftest import require_program
from tests.harness import WAIT, CorralServer, request, run_corral
from tests.tlscerts import (
    Certificate,
    client_context,
    https_request,
    make_certificate,
    presented,
    tls_connect,
)

from ports import port as leased_port

#: Reports what the application saw of the scheme; /page is an HTML page; /own-hsts sends its
#: own Strict-Transport-Security.
APP = textwrap.dedent(
    """
    import json

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/page":
            body = ("<html><head><title>over %s</title></head><body><p id=scheme>%s</p>"
                    "</body></html>" % (environ["wsgi.url_scheme"], environ["wsgi.url_scheme"]))
            body = body.encode()
            start_response("200 OK", [("Content-Type", "text/html"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        seen = {key: environ.get(key) for key in
                ("wsgi.url_scheme", "HTTPS", "REQUEST_SCHEME", "SERVER_PORT", "HTTP_HOST")}
        body = json.dumps(seen).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if path == "/own-hsts":
            headers.append(("Strict-Transport-Security", "max-age=5"))
        start_response("200 OK", headers)
        return [body]
    """
)


@dataclass
class TlsSetup:
    root: Path
    server: CorralServer
    https: int
    plain: int
    a: Certificate
    b: Certificate


def tls_binding(port: int, name: str) -> str:
    return (
        f'{{ address = "127.0.0.1", port = {port}, hosts = ["{name}.example"], protocol = '
        f'"https", certificate = "certs/{name}.pem", key = "certs/{name}.key" }}'
    )


def write_setup(root: Path, https: int, plain: int, server_table: str = "") -> Path:
    """Sites a (a.example: https + plain, redirected, the server's HSTS) and b (b.example:
    https + plain, its own HSTS), the same WSGI application; certificates in root/certs."""
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "wsgi.py").write_text(APP)
    (site / "corral.toml").write_text(
        '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
    )
    path = root / "server.toml"
    path.write_text(
        "[server]\n"
        'hsts = "max-age=600"\n'
        + textwrap.dedent(server_table)
        + textwrap.dedent(
            f"""
            [sites.a]
            bindings = [
                {tls_binding(https, "a")},
                "127.0.0.1:{plain}:a.example",
            ]
            https_redirect = true
            [sites.a.apps."/"]
            physical_path = "site"

            [sites.b]
            bindings = [
                {tls_binding(https, "b")},
                "127.0.0.1:{plain}:b.example",
            ]
            hsts = "max-age=100; includeSubDomains"
            [sites.b.apps."/"]
            physical_path = "site"
            """
        )
    )
    return path


def start_setup(root: Path, server_table: str = "") -> TlsSetup:
    a = make_certificate(root / "certs", "a", ["a.example"])
    b = make_certificate(root / "certs", "b", ["b.example"])
    https, plain = leased_port(), leased_port()
    path = write_setup(root, https, plain, server_table)
    server = CorralServer(path, args=("--no-access-log",), listen=None)
    server.start(wait_ready=False)
    assert server.port == https, server.text()
    return TlsSetup(root, server, https, plain, a, b)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSetup]:
    setup = start_setup(tmp_path_factory.mktemp("tls"), "tls_handshake_timeout = 1\n")
    try:
        yield setup
    finally:
        setup.server.stop()


@pytest.fixture
def own_tls(tmp_path: Path) -> Iterator[list[TlsSetup]]:
    """Servers a test starts itself (it changes their certificates or settings)."""
    started: list[TlsSetup] = []
    yield started
    for setup in started:
        setup.server.stop()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_program("curl"), "-sS", "--max-time", str(WAIT), *args],
        capture_output=True,
        text=True,
        timeout=WAIT + 5,
    )


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` (what it sends first must not
    be HTTP)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return b"HTTP/" not in got


# -- serving -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "version"),
    [(("--tlsv1.2", "--tls-max", "1.2"), "TLSv1.2"), (("--tlsv1.3",), "TLSv1.3")],
)
def test_curl_gets_the_application_over_tls(
    tls: TlsSetup, flags: tuple[str, ...], version: str
) -> None:
    url = f"https://a.example:{tls.https}/scheme"
    done = curl(
        "-v",
        *flags,
        "--cacert",
        str(tls.a.pem),
        "--resolve",
        f"a.example:{tls.https}:127.0.0.1",
        url,
    )
    assert done.returncode == 0, done.stderr
    assert f"SSL connection using {version}" in done.stderr
    assert "ALPN: server accepted h2" in done.stderr  # (curl prefers HTTP/2: docs/http2.md)
    seen = json.loads(done.stdout)
    assert seen == {
        "wsgi.url_scheme": "https",
        "HTTPS": "on",
        "REQUEST_SCHEME": "https",
        "SERVER_PORT": str(tls.https),
        "HTTP_HOST": f"a.example:{tls.https}",
    }


def test_sni_picks_each_sites_certificate_and_the_default_serves_the_rest(tls: TlsSetup) -> None:
    assert presented(tls.https, "a.example") == tls.a.der()
    assert presented(tls.https, "b.example") == tls.b.der()
    # No SNI, or a name no binding has: the port's first https binding's certificate.
    assert presented(tls.https, None) == tls.a.der()
    assert presented(tls.https, "other.example") == tls.a.der()
    # curl, trusting b's certificate alone, reaches b.example (and not a.example) by SNI.
    for name, trusted, ok in (("b", tls.b, True), ("a", tls.b, False)):
        done = curl(
            "--cacert",
            str(trusted.pem),
            "--resolve",
            f"{name}.example:{tls.https}:127.0.0.1",
            f"https://{name}.example:{tls.https}/scheme",
        )
        assert (done.returncode == 0) is ok, done.stderr
        if not ok:
            assert done.returncode == 60, done.stderr  # (the peer's certificate: not trusted)
    # A client that checks the certificate against the name it asked for is satisfied.
    with tls_connect(tls.https, "b.example", client_context(tls.b)) as conn:
        status, _, body = https_request(conn, "/scheme", host="b.example")
    assert status == 200
    assert json.loads(body)["HTTPS"] == "on"


def test_tls_1_0_and_1_1_and_weak_tls_1_2_ciphers_are_refused(tls: TlsSetup) -> None:
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with warnings.catch_warnings():  # (Python deprecates these versions: we want them)
            warnings.simplefilter("ignore", DeprecationWarning)
            context = client_context(minimum=old, maximum=old)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # (this client would speak it)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(tls.https, "a.example", context).close()
    # openssl s_client says what was negotiated: nothing.
    openssl = require_program("openssl")
    for flag in ("-tls1", "-tls1_1"):
        done = subprocess.run(
            [
                openssl,
                "s_client",
                flag,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-connect",
                f"127.0.0.1:{tls.https}",
                "-servername",
                "a.example",
            ],
            input=b"",
            capture_output=True,
            timeout=WAIT,
        )
        assert b"Cipher is (NONE)" in done.stdout or b"no protocols available" in done.stderr
    # TLS 1.2 with a CBC (non-AEAD) suite, even with ECDHE: refused.
    context = client_context(maximum=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(tls.https, "a.example", context).close()
    # The same client with an AEAD suite is served.
    context = client_context(maximum=ssl.TLSVersion.TLSv1_2)
    with tls_connect(tls.https, "a.example", context) as conn:
        assert conn.version() == "TLSv1.2"
        assert "GCM" in conn.cipher()[0] or "CHACHA20" in conn.cipher()[0]


def test_plain_http_is_redirected_to_https_and_hsts_goes_on_tls_responses_only(
    tls: TlsSetup,
) -> None:
    redirected = request(tls.plain, path="/some/where?x=1&y=2", host=f"a.example:{tls.plain}")
    assert redirected.status == 308
    assert redirected.header("Location") == f"https://a.example:{tls.https}/some/where?x=1&y=2"
    assert redirected.header("Strict-Transport-Security") is None
    # Site b does not redirect: served over plain HTTP, without HSTS (never over plain HTTP).
    plain = request(tls.plain, path="/scheme", host="b.example")
    assert plain.status == 200
    assert plain.header("Strict-Transport-Security") is None
    seen = json.loads(plain.body)
    assert seen["wsgi.url_scheme"] == "http" and seen["HTTPS"] is None
    # Over TLS: the server's value for a, b's own, and an application's own wins.
    with tls_connect(tls.https, "a.example") as conn:
        _, headers, _ = https_request(conn, "/scheme", host="a.example")
        assert headers["strict-transport-security"] == "max-age=600"
        _, headers, _ = https_request(conn, "/own-hsts", host="a.example")
        assert headers["strict-transport-security"] == "max-age=5"
    with tls_connect(tls.https, "b.example") as conn:
        _, headers, _ = https_request(conn, "/scheme", host="b.example")
        assert headers["strict-transport-security"] == "max-age=100; includeSubDomains"


def test_a_stalled_or_plaintext_client_does_not_disturb_the_others(tls: TlsSetup) -> None:
    silent = socket.create_connection(("127.0.0.1", tls.https), timeout=WAIT)
    half = socket.create_connection(("127.0.0.1", tls.https), timeout=WAIT)
    plaintext = socket.create_connection(("127.0.0.1", tls.https), timeout=WAIT)
    try:
        # A client that starts a handshake and stops (a few bytes of a ClientHello).
        half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        plaintext.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        assert closed_by_peer(plaintext)  # (a TLS alert at most, never an HTTP answer)
        started = time.monotonic()
        for _ in range(3):
            with tls_connect(tls.https, "a.example") as conn:
                status, _, _ = https_request(conn, "/scheme", host="a.example", close=True)
                assert status == 200
        # tls_handshake_timeout = 1: both are cut off soon after, the others never were.
        for stalled in (silent, half):
            assert closed_by_peer(stalled)
        assert time.monotonic() - started < 10.0
    finally:
        for sock in (silent, half, plaintext):
            sock.close()
    assert "Traceback" not in tls.server.text()


def test_chromium_loads_a_page_over_https(tls: TlsSetup) -> None:
    url = f"https://a.example:{tls.https}/page"
    done = chromium.run(
        url,
        "--ignore-certificate-errors",
        "--host-resolver-rules=MAP a.example 127.0.0.1",
        "--dump-dom",
    )
    page = chromium.Page(done.stdout.decode("utf-8", "replace"))
    assert page.title == "over https"


# -- certificates changing -----------------------------------------------------------------------


def replace_certificate(target: Certificate, new: Certificate) -> None:
    """Put ``new``'s files in ``target``'s place, each by an atomic rename (as certbot's
    deploy hooks and configuration managers do)."""
    os.replace(new.key, target.key)
    os.replace(new.pem, target.pem)


def test_a_certificate_replaced_on_disk_serves_new_connections_and_spares_open_ones(
    tmp_path: Path, own_tls: list[TlsSetup]
) -> None:
    setup = start_setup(tmp_path)
    own_tls.append(setup)
    old = setup.a.der()
    kept = tls_connect(setup.https, "a.example")
    try:
        assert https_request(kept, "/scheme")[0] == 200
        fresh = make_certificate(tmp_path / "new", "a", ["a.example"])
        fresh_der = fresh.der()
        replace_certificate(setup.a, fresh)
        setup.server.wait_log(r"certificate .*a\.pem: loaded again")
        assert presented(setup.https, "a.example") == fresh_der
        assert presented(setup.https, "b.example") == setup.b.der()
        # The connection opened before goes on with the certificate it shook hands with.
        assert kept.getpeercert(binary_form=True) == old
        status, _, body = https_request(kept, "/scheme")
        assert status == 200 and json.loads(body)["HTTPS"] == "on"
        # A broken replacement is refused with its file and reason; the one in use stays.
        setup.a.pem.write_text(
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
        )
        line = setup.server.wait_log(r"a\.pem: .*the certificate in use stays")
        assert "not valid base64" in line
        assert presented(setup.https, "a.example") == fresh_der
        assert https_request(kept, "/scheme")[0] == 200
    finally:
        kept.close()
    assert "BEGIN PRIVATE KEY" not in setup.server.text()


def test_certificates_behind_swapped_symlinks_are_followed(
    tmp_path: Path, own_tls: list[TlsSetup]
) -> None:
    """certbot's layout: the configured files are symlinks into an archive, renewed by
    pointing them at new files (the change is the links', in the watched folder)."""
    setup = start_setup(tmp_path)
    own_tls.append(setup)
    (setup.a.pem.parent / "corral.log").write_text("")  # (changes beside them: ignored)
    time.sleep(1.0)  # (the file watcher starts with the server: let it settle)
    archive = tmp_path / "archive"
    second = make_certificate(archive, "a2", ["a.example"])
    for link, target in ((setup.a.pem, second.pem), (setup.a.key, second.key)):
        temporary = link.with_suffix(".new")
        temporary.symlink_to(target)
        os.replace(temporary, link)
    deadline = time.monotonic() + WAIT
    while presented(setup.https, "a.example") != second.der():
        assert time.monotonic() < deadline, setup.server.text()
        with (setup.a.pem.parent / "corral.log").open("a") as log:
            log.write("a line in a file beside the certificates\n")
        time.sleep(0.1)
    time.sleep(1.5)  # (what the log lines above would wake up: nothing)
    assert setup.server.text().count("loaded again") <= 2, setup.server.text()


def test_a_reload_takes_the_certificates_the_configuration_names_now(
    tmp_path: Path, own_tls: list[TlsSetup]
) -> None:
    setup = start_setup(tmp_path)
    own_tls.append(setup)
    other = make_certificate(tmp_path / "certs", "a2", ["a.example"])
    path = setup.root / "server.toml"
    path.write_text(
        path.read_text()
        .replace("certs/a.pem", "certs/a2.pem")
        .replace("certs/a.key", "certs/a2.key")
    )
    setup.server.signal(signal.SIGHUP)
    setup.server.wait_log("configuration reloaded")
    deadline = time.monotonic() + WAIT
    while presented(setup.https, "a.example") != other.der():
        assert time.monotonic() < deadline, setup.server.text()
        time.sleep(0.1)
    # A reload whose key does not match its certificate is refused; the running one stays.
    path.write_text(path.read_text().replace("certs/a2.key", "certs/b.key"))
    setup.server.signal(signal.SIGHUP)
    line = setup.server.wait_log(r"server\.toml:\d+: key: .*b\.key: does not match")
    assert "a2.pem" in line
    assert presented(setup.https, "a.example") == other.der()


def test_session_ticket_keys_are_renewed_without_dropping_connections(
    tmp_path: Path, own_tls: list[TlsSetup]
) -> None:
    setup = start_setup(tmp_path, "tls_ticket_key_lifetime = 2\n")
    own_tls.append(setup)
    context = client_context(maximum=ssl.TLSVersion.TLSv1_2)

    def resumes(session: ssl.SSLSession) -> bool:
        raw = socket.create_connection(("127.0.0.1", setup.https), timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="a.example", session=session) as conn:
            assert https_request(conn, "/scheme")[0] == 200
            return conn.session_reused

    kept = tls_connect(setup.https, "a.example", context)
    try:
        assert https_request(kept, "/scheme")[0] == 200  # (the worker is up from here)
        # A ticket resumes at once (tried again should a renewal fall between the two
        # connections: one comes every 2 s).
        for _ in range(3):
            with tls_connect(setup.https, "a.example", context) as first:
                assert https_request(first, "/scheme")[0] == 200
                session = first.session
            assert session is not None
            if resumes(session):
                break
        else:
            raise AssertionError("a fresh session ticket never resumed")
        time.sleep(3.5)  # past the lifetime: the listener has new ticket keys
        assert not resumes(session)
        assert https_request(kept, "/scheme")[0] == 200  # opened before: still served
    finally:
        kept.close()


# -- configuration errors --------------------------------------------------------------------


def test_check_and_serve_name_the_file_line_and_setting_of_a_bad_certificate(
    tmp_path: Path,
) -> None:
    make_certificate(tmp_path / "certs", "a", ["a.example"])
    make_certificate(tmp_path / "certs", "b", ["b.example"])
    path = write_setup(tmp_path, 8443, 8080)
    path.write_text(path.read_text().replace("certs/b.key", "certs/missing.key"))
    checked = run_corral("check", str(path))
    assert checked.returncode == 1
    # (The line of the binding's `bindings =`: TOML values inside an array are reported there.)
    lines = path.read_text().splitlines()
    missing = next(n for n, text in enumerate(lines) if "missing" in text)
    line = max(n for n, text in enumerate(lines[:missing], 1) if text.startswith("bindings"))
    expected = f"{path}:{line}: key: {tmp_path}/certs/missing.key: no such file"
    assert expected in checked.stdout + checked.stderr
    served = run_corral("serve", str(path))
    assert served.returncode == 1
    assert expected in served.stdout + served.stderr
    assert "serving" not in served.stdout + served.stderr
    # A key that belongs to another certificate.
    path.write_text(path.read_text().replace("certs/missing.key", "certs/a.key"))
    checked = run_corral("check", str(path))
    assert checked.returncode == 1
    output = checked.stdout + checked.stderr
    assert f"key: {tmp_path}/certs/a.key: does not match the certificate" in output


def test_a_rewrite_rule_sees_https_on_over_tls_and_off_over_plain_http(
    own_tls: list[TlsSetup], tmp_path: Path
) -> None:
    setup = start_setup(tmp_path)
    own_tls.append(setup)
    (setup.root / "site" / "corral.toml").write_text(
        '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n\n'
        "[[rewrite]]\n"
        'name = "which scheme"\n'
        'match = "^where$"\n'
        'conditions = [{ input = "{HTTPS}", pattern = "^on$" }]\n'
        'action = { type = "CustomResponse", status_code = 418, status_reason = "Over TLS" }\n'
    )
    assert setup.server.proc is not None
    setup.server.proc.send_signal(signal.SIGHUP)  # (the file's change reloads it too)
    args = ("--cacert", str(setup.b.pem), "--resolve", f"b.example:{setup.https}:127.0.0.1")
    deadline = time.monotonic() + WAIT
    while True:
        code = curl(
            *args, "-o", "/dev/null", "-w", "%{http_code}", f"https://b.example:{setup.https}/where"
        ).stdout
        if code == "418" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert code == "418", setup.server.text()
    plain = request(setup.plain, "GET", "/where", host="b.example")
    assert plain.status == 200  # the rule's condition fails: the application answers
