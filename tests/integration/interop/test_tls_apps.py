"""Applications learn that a request came over TLS, whatever their stack, over HTTP/1.1 and
HTTP/2 (curl --http2 and nghttp, ALPN h2): one `corral serve` with
an https binding per site (SNI) in front of an ASGI app (Corral's worker: the scope's ``scheme``),
a PHP site (php-cgi: ``$_SERVER['HTTPS']`` and ``REQUEST_SCHEME``) and the Node.js example (an
HTTP backend: ``X-Forwarded-Proto``). The same requests over the plain binding say http. (WSGI:
tests/integration/front/test_tls.py.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require_program
from tests.harness import CorralServer, request
from tests.tlscerts import Certificate, client_context, https_request, make_certificate, tls_connect

from ports import engine_ports_toml, lease
from ports import port as leased_port

ROOT = Path(__file__).resolve().parents[3]
PHP_SITE = ROOT / "tests" / "fixtures" / "sites" / "php-site"
NODE_SITE = ROOT / "examples" / "nodejs"

ASGI_APP = textwrap.dedent(
    """
    import json

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = json.dumps({"scheme": scope["scheme"]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    """
)

PHP_SCHEME = (
    "<?php header('Content-Type: application/json'); echo json_encode(["
    "'HTTPS' => $_SERVER['HTTPS'] ?? null, 'REQUEST_SCHEME' => $_SERVER['REQUEST_SCHEME'] ?? null"
    "]);\n"
)


@dataclass
class Apps:
    server: CorralServer
    https: int
    plain: int
    certificate: Certificate


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    require_program("php-cgi")
    require_program("node", "nodejs")
    root = tmp_path_factory.mktemp("tls-apps")
    certificate = make_certificate(
        root / "certs", "apps", ["asgi.example", "php.example", "node.example"]
    )
    asgi = root / "asgi"
    asgi.mkdir()
    (asgi / "app.py").write_text(ASGI_APP)
    (asgi / "corral.toml").write_text('[apps.main]\nengine = "python"\nasgi_app = "app:app"\n')
    shutil.copytree(PHP_SITE, root / "php")
    (root / "php" / "scheme.php").write_text(PHP_SCHEME)
    shutil.copytree(NODE_SITE, root / "node")
    https, plain = leased_port(), leased_port()
    sites = ""
    for name in ("asgi", "php", "node"):
        binding = (
            f'{{ address = "127.0.0.1", port = {https}, hosts = ["{name}.example"], '
            'protocol = "https", certificate = "certs/apps.pem", key = "certs/apps.key" }'
        )
        sites += (
            f"\n[sites.{name}]\n"
            f'bindings = [{binding}, "127.0.0.1:{plain}:{name}.example"]\n'
            f'[sites.{name}.apps."/"]\nphysical_path = "{name}"\n'
        )
    with lease() as taken:
        path = root / "server.toml"
        path.write_text(
            "[server]\nhttp2_cleartext = true\n" + engine_ports_toml(["nodejs.http"], taken) + sites
        )
        server = CorralServer(path, args=("--no-access-log",), listen=None)
        try:
            server.start(wait_ready=False)
            yield Apps(server, https, plain, certificate)
        finally:
            server.stop()


def over_tls(apps: Apps, host: str, path: str) -> dict[str, object]:
    with tls_connect(apps.https, host, client_context(apps.certificate)) as conn:
        status, _, body = https_request(conn, path, host=host, close=True)
    assert status == 200, apps.server.text()
    result: dict[str, object] = json.loads(body)
    return result


def over_plain(apps: Apps, host: str, path: str) -> dict[str, object]:
    response = request(apps.plain, path=path, host=host)
    assert response.status == 200, apps.server.text()
    result: dict[str, object] = json.loads(response.body)
    return result


def test_an_asgi_app_sees_the_https_scheme(apps: Apps) -> None:
    assert over_tls(apps, "asgi.example", "/") == {"scheme": "https"}
    assert over_plain(apps, "asgi.example", "/") == {"scheme": "http"}


def test_a_php_app_sees_https_on(apps: Apps) -> None:
    assert over_tls(apps, "php.example", "/scheme.php") == {
        "HTTPS": "on",
        "REQUEST_SCHEME": "https",
    }
    assert over_plain(apps, "php.example", "/scheme.php") == {
        "HTTPS": None,
        "REQUEST_SCHEME": None,
    }


def test_a_node_app_gets_x_forwarded_proto_https(apps: Apps) -> None:
    headers = over_tls(apps, "node.example", "/headers")
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "node.example"
    assert over_plain(apps, "node.example", "/headers")["x-forwarded-proto"] == "http"


# -- the same apps over HTTP/2 (front/http2.py) ----------------------------------------------------


def h2_curl(apps: Apps, host: str, path: str) -> dict[str, object]:
    """``curl --http2`` over TLS: ALPN chooses h2; the JSON body."""
    done = subprocess.run(
        [
            require_program("curl"),
            "-sS",
            "-v",
            "--http2",
            "--max-time",
            "20",
            "--cacert",
            str(apps.certificate.pem),
            "--resolve",
            f"{host}:{apps.https}:127.0.0.1",
            f"https://{host}:{apps.https}{path}",
        ],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"< HTTP/2 200" in done.stderr, done.stderr.decode()
    result: dict[str, object] = json.loads(done.stdout)
    return result


def h2_prior_knowledge(apps: Apps, host: str, path: str) -> dict[str, object]:
    """``curl --http2-prior-knowledge`` on the plain binding (``http2_cleartext``)."""
    done = subprocess.run(
        [
            require_program("curl"),
            "-sS",
            "-v",
            "--http2-prior-knowledge",
            "--max-time",
            "20",
            "-H",
            f"Host: {host}",
            f"http://127.0.0.1:{apps.plain}{path}",
        ],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"< HTTP/2 200" in done.stderr, done.stderr.decode()
    result: dict[str, object] = json.loads(done.stdout)
    return result


def h2_nghttp(apps: Apps, host: str, path: str, count: int = 20) -> None:
    """``count`` concurrent streams of ``nghttp`` on one TLS connection (ALPN h2), all 200
    (the port's default certificate: nghttp sends no SNI for an address)."""
    done = subprocess.run(
        [
            require_program("nghttp"),
            "-s",
            "-m",
            str(count),
            "-H",
            f":authority: {host}",
            f"https://127.0.0.1:{apps.https}{path}",
        ],
        capture_output=True,
        timeout=60,
    )
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, out[-2000:] + done.stderr.decode()
    assert sum(1 for line in out.splitlines() if " 200 " in line) == count, out[-2000:]


@pytest.mark.parametrize(
    ("host", "path", "expected", "plain"),
    [
        ("asgi.example", "/", {"scheme": "https"}, {"scheme": "http"}),
        (
            "php.example",
            "/scheme.php",
            {"HTTPS": "on", "REQUEST_SCHEME": "https"},
            {"HTTPS": None, "REQUEST_SCHEME": None},
        ),
    ],
)
def test_fastcgi_apps_over_http2(
    apps: Apps, host: str, path: str, expected: dict[str, object], plain: dict[str, object]
) -> None:
    assert h2_curl(apps, host, path) == expected
    h2_nghttp(apps, host, path)
    assert h2_prior_knowledge(apps, host, path) == plain


def test_a_node_app_over_http2_gets_http11_from_the_front(apps: Apps) -> None:
    headers = h2_curl(apps, "node.example", "/headers")
    # The HTTP backend got an HTTP/1.1 request with the client's :authority as its Host.
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == f"node.example:{apps.https}"
    h2_nghttp(apps, "node.example", "/headers")
    assert h2_prior_knowledge(apps, "node.example", "/headers")["x-forwarded-proto"] == "http"
