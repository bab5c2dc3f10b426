"""The front's TLS contexts without sockets: handshakes over memory BIOs between a client
context and the listener context `TlsCertificates` makes (its defaults, SNI, ALPN, a certificate
changed on disk, a broken one refused), with certificates made by openssl."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from tests.tlscerts import Certificate, make_certificate

from corral.config import load_server
from corral.front.tls import (
    ALPN_PROTOCOLS,
    TlsCertificates,
    https_certificates,
    links_to,
    negotiated_protocol,
    server_context,
)


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_name: str | None
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A complete handshake in memory: (client side, server side)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=server_name)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = [False, False]
    for _ in range(20):
        for index, (side, out, peer_in) in enumerate(
            ((client_side, c_out, s_in), (server_side, s_out, c_in))
        ):
            if not done[index]:
                try:
                    side.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done):
            return client_side, server_side
    raise AssertionError("the handshake did not finish")


def client(maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[TlsCertificates, Certificate, Certificate]:
    a = make_certificate(tmp_path, "a", ["a.example"])
    b = make_certificate(tmp_path, "b", ["b.example"])
    (tmp_path / "www").mkdir()
    path = tmp_path / "server.toml"
    sites = ""
    for name in ("a", "b"):
        sites += (
            f"[sites.{name}]\n"
            f'bindings = [{{ port = 8443, hosts = ["{name}.example"], protocol = "https", '
            f'certificate = "{name}.pem", key = "{name}.key" }}]\n'
            f'[sites.{name}.apps."/"]\nphysical_path = "www"\n'
        )
    path.write_text(sites)
    loaded = https_certificates(load_server(str(path)))
    assert loaded is not None
    return loaded, a, b


def test_the_defaults_are_tls_1_2_and_up_with_ecdhe_and_aead_only() -> None:
    context = server_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12), tls12
    assert ALPN_PROTOCOLS == ("h2", "http/1.1")


def test_sni_alpn_and_versions_in_a_handshake(
    certificates: tuple[TlsCertificates, Certificate, Certificate],
) -> None:
    loaded, a, b = certificates
    listener = loaded.listener_context(8443)
    for name, expected in (("a.example", a), ("b.example", b), (None, a), ("c.example", a)):
        client_side, server_side = handshake(listener, client(), name)
        assert client_side.getpeercert(binary_form=True) == expected.der()
        # Offered h2 and http/1.1: h2 is chosen, with every certificate's context (the SNI
        # callback switches contexts: each must offer it).
        assert negotiated_protocol(server_side) == "h2"
        assert client_side.selected_alpn_protocol() == "h2"
    # A client offering http/1.1 only gets it; one offering nothing: http/1.1 too.
    only = client()
    only.set_alpn_protocols(["http/1.1"])
    _, server_side = handshake(listener, only, "a.example")
    assert negotiated_protocol(server_side) == "http/1.1"
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.check_hostname = False
    plain.verify_mode = ssl.CERT_NONE
    _, server_side = handshake(listener, plain, "a.example")
    assert negotiated_protocol(server_side) == "http/1.1"
    client_side, _ = handshake(listener, client(ssl.TLSVersion.TLSv1_2), "a.example")
    assert client_side.version() == "TLSv1.2"
    assert negotiated_protocol(None) == "http/1.1"


def test_a_changed_pair_is_loaded_again_and_a_broken_one_refused(
    certificates: tuple[TlsCertificates, Certificate, Certificate], tmp_path: Path
) -> None:
    loaded, a, _ = certificates
    listener = loaded.listener_context(8443)
    fresh = make_certificate(tmp_path / "new", "a", ["a.example"])
    fresh_der = fresh.der()
    os.replace(fresh.key, a.key)
    os.replace(fresh.pem, a.pem)
    loaded.refresh()
    client_side, _ = handshake(listener, client(), "a.example")  # the same listener context
    assert client_side.getpeercert(binary_form=True) == fresh_der
    a.pem.write_text("not a certificate\n")
    loaded.refresh()
    client_side, _ = handshake(listener, client(), "a.example")
    assert client_side.getpeercert(binary_form=True) == fresh_der


def test_the_symlinks_on_the_way_to_a_file(tmp_path: Path) -> None:
    # certbot: live/NAME/fullchain.pem -> ../../archive/NAME/fullchain1.pem
    archive = tmp_path / "archive" / "a"
    archive.mkdir(parents=True)
    (archive / "fullchain1.pem").write_text("x")
    live = tmp_path / "live" / "a"
    live.mkdir(parents=True)
    (live / "fullchain.pem").symlink_to("../../archive/a/fullchain1.pem")
    path = str(live / "fullchain.pem")
    assert links_to(path) == {path}
    # A Kubernetes secret: tls.crt -> ..data/tls.crt, ..data -> ..2026_01_01 (a folder).
    secret = tmp_path / "secret"
    (secret / "..2026_01_01").mkdir(parents=True)
    (secret / "..2026_01_01" / "tls.crt").write_text("x")
    (secret / "..data").symlink_to("..2026_01_01")
    (secret / "tls.crt").symlink_to("..data/tls.crt")
    path = str(secret / "tls.crt")
    assert links_to(path) == {path, str(secret / "..data")}
    plain = tmp_path / "plain.pem"
    plain.write_text("x")
    assert links_to(str(plain)) == {str(plain)}
