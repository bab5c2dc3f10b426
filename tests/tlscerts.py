"""Certificates for the TLS tests, made with the `openssl` command line (Debian's openssl).

cert = make_certificate(folder, "a", ["a.example"])    # a.pem, a.key (self-signed, EC P-256)
client = client_context(cert)                            # trusts exactly that certificate
der = presented(port, "a.example")                       # what the server presents for SNI
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_program

WAIT = 20.0


@dataclass(frozen=True)
class Certificate:
    pem: Path
    key: Path

    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.pem.read_text())


def make_certificate(
    folder: Path, name: str, hosts: list[str], *, days: int = 2, rsa: bool = False
) -> Certificate:
    """A self-signed certificate naming ``hosts`` (subjectAltName) and its unencrypted key,
    as ``folder/NAME.pem`` and ``folder/NAME.key`` (mode 600)."""
    openssl = require_program("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    pem, key = folder / f"{name}.pem", folder / f"{name}.key"
    algorithm = (
        ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    )
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            *algorithm,
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(pem),
            "-days",
            str(days),
            "-subj",
            f"/CN={hosts[0] if hosts else name}",
            *(
                ["-addext", "subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts)]
                if hosts
                else []
            ),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    key.chmod(0o600)
    return Certificate(pem, key)


def client_context(
    trusted: Certificate | None = None,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """A client context that trusts ``trusted`` alone (None: checks nothing)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trusted is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=str(trusted.pem))
    context.minimum_version = minimum
    context.maximum_version = maximum
    return context


def tls_connect(
    port: int, server_name: str | None, context: ssl.SSLContext | None = None
) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:``port`` sending ``server_name`` by SNI (None: none)."""
    context = context or client_context()
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def presented(port: int, server_name: str | None) -> bytes:
    """The DER certificate the server presents for ``server_name``."""
    with tls_connect(port, server_name) as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def https_request(
    conn: ssl.SSLSocket, path: str = "/", host: str = "a.example", close: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One request on an open TLS connection (kept alive unless ``close``): status, headers
    (lower-case names), body (Content-Length framed)."""
    extra = "Connection: close\r\n" if close else ""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError(f"closed before the head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("closed in the body")
        body += chunk
    return status, headers, body
