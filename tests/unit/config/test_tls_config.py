"""https bindings in the configuration: the TOML table and applicationHost.config's `<binding>`
and `<hsts>`, the rules `corral check` enforces (one protocol per port, https_redirect needs an
https binding, certificate and key that load), the warnings (expiry, names, key permissions),
HSTS values, and the front's certificate choice for a server name and its redirect Location."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.tlscerts import Certificate, make_certificate

from corral.config import ConfigErrors, load_server
from corral.config.bindings import parse_binding
from corral.config.check import run_check
from corral.config.convert import to_hsts
from corral.config.model import Binding, Location
from corral.config.tlsfiles import pair_warnings
from corral.front.httpspolicy import https_location
from corral.front.tls import PortCertificates
from corral.protocol.x509 import CertificateInfo

WHERE = Location("/etc/corral/server.toml", 7)


def test_an_https_binding_table_names_its_files_relative_to_the_file() -> None:
    binding = parse_binding(
        {
            "address": "*",
            "hosts": ["a.example"],
            "protocol": "https",
            "certificate": "tls/a.pem",
            "key": "/secret/a.key",
        },
        WHERE,
    )
    assert binding == Binding(
        "0.0.0.0",
        443,  # the https default port
        ("a.example",),
        WHERE,
        protocol="https",
        certificate="/etc/corral/tls/a.pem",
        key="/secret/a.key",
    )
    assert binding.tls
    assert not parse_binding("127.0.0.1:8080:a.example", WHERE).tls


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"protocol": "https", "key": "a.key"}, "needs certificate"),
        ({"protocol": "https", "certificate": "a.pem"}, "needs key"),
        ({"protocol": "ftp"}, 'protocol is "http" or "https"'),
        ({"certificate": "a.pem", "key": "a.key"}, 'need protocol "https"'),
        ({"protocol": "https", "certificate": "", "key": "a.key"}, "needs certificate"),
    ],
)
def test_a_bad_https_binding_says_what_is_missing(table: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_binding(table, WHERE)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("max-age=31536000", "max-age=31536000"),
        (" max-age=60 ;includeSubDomains; preload ", "max-age=60; includeSubDomains; preload"),
        ("", ""),
    ],
)
def test_hsts_values(text: str, value: str) -> None:
    assert to_hsts(text) == value


@pytest.mark.parametrize(
    "text", ["includeSubDomains", "max-age=1; max-age=2", "max-age=x", "max-age=1\r\nX: y", "a b"]
)
def test_bad_hsts_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        to_hsts(text)


@given(st.text(max_size=40))
def test_an_accepted_hsts_value_is_a_safe_header_value(text: str) -> None:
    try:
        value = to_hsts(text)
    except ValueError:
        return
    assert value == "" or value.count("max-age=") == 1
    assert all(32 <= ord(char) < 127 for char in value)


# -- the server TOML --------------------------------------------------------------------------


def server(root: Path, sites: str) -> Path:
    (root / "www").mkdir(exist_ok=True)
    path = root / "server.toml"
    path.write_text(textwrap.dedent(sites))
    return path


def tls_site(name: str, port: int, cert: str, extra: str = "") -> str:
    return (
        f"[sites.{name}]\n"
        f'bindings = [{{ port = {port}, hosts = ["{name}.example"], protocol = "https", '
        f'certificate = "{cert}.pem", key = "{cert}.key" }}]\n{extra}'
        f'[sites.{name}.apps."/"]\nphysical_path = "www"\n'
    )


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Certificate]:
    return {
        "a": make_certificate(tmp_path, "a", ["a.example"]),
        "b": make_certificate(tmp_path, "b", ["b.example"]),
    }


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(path))
    return [str(error) for error in caught.value.errors]


def test_https_sites_load_with_their_redirect_and_hsts(
    tmp_path: Path, certs: dict[str, Certificate]
) -> None:
    path = server(
        tmp_path,
        tls_site("a", 8443, "a", 'https_redirect = true\nhsts = "max-age=9"\n').replace(
            "}]", '}, "127.0.0.1:8080:a.example"]'
        )
        + tls_site("b", 8443, "b"),
    )
    config = load_server(str(path))
    a, b = config.sites
    assert a.https_redirect and a.https_port() == 8443 and a.hsts == "max-age=9"
    assert not b.https_redirect and b.hsts is None
    assert [binding.tls for binding in a.bindings] == [True, False]
    assert a.bindings[0].certificate == str(certs["a"].pem)


def test_a_port_serves_one_protocol(tmp_path: Path, certs: dict[str, Certificate]) -> None:
    path = server(
        tmp_path,
        tls_site("a", 8443, "a")
        + '[sites.b]\nbindings = ["127.0.0.1:8443:b.example"]\n'
        + '[sites.b.apps."/"]\nphysical_path = "www"\n',
    )
    (error,) = errors_of(path)
    assert f"{path}:6: bindings: port 8443 is bound as http here and as https at {path}:2" in error


def test_https_redirect_needs_an_https_binding(tmp_path: Path) -> None:
    path = server(
        tmp_path,
        '[sites.a]\nbindings = ["127.0.0.1:8080"]\nhttps_redirect = true\n'
        '[sites.a.apps."/"]\nphysical_path = "www"\n',
    )
    (error,) = errors_of(path)
    assert error == (
        f"{path}:1: https_redirect: site 'a' redirects to https but has no https binding"
    )


def test_certificate_and_key_problems_name_the_file_line_and_setting(
    tmp_path: Path, certs: dict[str, Certificate]
) -> None:
    (tmp_path / "garbage.pem").write_text("hello\n")
    (tmp_path / "encrypted.key").write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n"
        "-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    cases = {
        ("missing", "a"): "certificate: {root}/missing.pem: no such file",
        ("a", "missing"): "key: {root}/missing.key: no such file",
        ("garbage", "a"): "certificate: {root}/garbage.pem: no PEM certificate",
        ("a", "b"): "key: {root}/b.key: does not match the certificate {root}/a.pem",
        ("a", "garbage"): "key: {root}/garbage.pem: not a PEM private key",
    }
    for (cert, key), expected in cases.items():
        text = tls_site("a", 8443, "x").replace("x.pem", f"{cert}.pem")
        text = text.replace("x.key", f"{key}.key" if key != "garbage" else "garbage.pem")
        (error,) = errors_of(server(tmp_path, text))
        assert error.startswith(f"{tmp_path}/server.toml:2: "), error
        assert expected.format(root=tmp_path) in error, error


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    make_certificate(tmp_path, "a", ["a.example"])
    import subprocess

    from tests.conftest import require_program

    subprocess.run(
        [
            require_program("openssl"),
            "pkey",
            "-in",
            str(tmp_path / "a.key"),
            "-out",
            str(tmp_path / "enc.key"),
            "-aes256",
            "-passout",
            "pass:secret",
        ],
        check=True,
        capture_output=True,
    )
    text = tls_site("a", 8443, "a").replace("a.key", "enc.key")
    (error,) = errors_of(server(tmp_path, text))
    assert "key: " in error and "the key is encrypted" in error


def test_warnings_for_expiry_names_and_key_permissions(
    tmp_path: Path, certs: dict[str, Certificate]
) -> None:
    cert = certs["a"]
    binding = Binding(
        port=443,
        hosts=("a.example", "other.example"),
        location=WHERE,
        protocol="https",
        certificate=str(cert.pem),
        key=str(cert.key),
    )
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    info = CertificateInfo(now - dt.timedelta(days=10), now - dt.timedelta(days=1), ("a.example",))
    cert.key.chmod(0o644)
    warnings = pair_warnings(binding, info, now)
    assert warnings == [
        f"{WHERE}: certificate {cert.pem} expired on 2025-12-31 (clients refuse it)",
        f"{WHERE}: certificate {cert.pem} does not name other.example (it names a.example)",
        f"{WHERE}: key {cert.key} may be read by other users (chmod 600 it)",
    ]
    cert.key.chmod(0o600)
    early = CertificateInfo(now + dt.timedelta(days=1), now + dt.timedelta(days=9), ())
    assert pair_warnings(binding, early, now) == [
        f"{WHERE}: certificate {cert.pem} is not valid before 2026-01-02 00:00 UTC"
    ]


def test_iis_bindings_and_hsts_from_application_host_config(
    tmp_path: Path, certs: dict[str, Certificate]
) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "applicationHost.config").write_text(
        textwrap.dedent(
            """\
            <configuration>
              <system.applicationHost>
                <sites>
                  <site name="a" id="1">
                    <bindings>
                      <binding protocol="http" bindingInformation="127.0.0.1:8080:a.example" />
                      <binding protocol="https" bindingInformation="*:8443:a.example"
                               certificateFile="a.pem" certificateKeyFile="a.key" />
                    </bindings>
                    <hsts enabled="true" max-age="31536000" includeSubDomains="true"
                          redirectHttpToHttps="true" />
                  </site>
                  <site name="b" id="2">
                    <bindings>
                      <binding protocol="https" bindingInformation="*:9443:" />
                    </bindings>
                  </site>
                </sites>
              </system.applicationHost>
            </configuration>
            """
        )
    )
    path = tmp_path / "server.toml"
    path.write_text(
        '[server]\napplication_host = "applicationHost.config"\n'
        '[sites.a.apps."/"]\nphysical_path = "www"\n'
    )
    (site,) = load_server(str(path)).sites
    assert [(b.protocol, b.address, b.port, b.hosts) for b in site.bindings] == [
        ("http", "127.0.0.1", 8080, ("a.example",)),
        ("https", "0.0.0.0", 8443, ("a.example",)),
    ]
    assert site.bindings[1].certificate == str(certs["a"].pem)
    assert site.https_redirect and site.https_port() == 8443
    assert site.hsts == "max-age=31536000; includeSubDomains"
    # Site b's https binding names no files: an error at its <binding> line.
    path.write_text(path.read_text() + '[sites.b.apps."/"]\nphysical_path = "www"\n')
    (error,) = errors_of(path)
    assert error == (
        f"{tmp_path}/applicationHost.config:15: binding: an https binding needs "
        "certificateFile (the path of a PEM file)"
    )


# -- the front's choices (pure) ---------------------------------------------------------------


def test_sni_picks_a_pair_and_the_default_serves_the_rest() -> None:
    def tls(hosts: tuple[str, ...], name: str) -> Binding:
        return Binding(hosts=hosts, protocol="https", certificate=name + ".pem", key=name + ".key")

    named = PortCertificates.from_bindings(
        [tls(("a.example",), "a"), tls(("*.b.example",), "b"), tls((), "any")]
    )
    assert named.pick("a.example") == ("a.pem", "a.key")
    assert named.pick("A.EXAMPLE.") == ("a.pem", "a.key")
    assert named.pick("x.y.b.example") == ("b.pem", "b.key")
    assert named.pick("b.example") == ("any.pem", "any.key")  # host-less binding: default
    assert named.pick(None) == ("any.pem", "any.key")
    first = PortCertificates.from_bindings([tls(("a.example",), "a"), tls(("c.example",), "c")])
    assert first.pick(None) == ("a.pem", "a.key")  # no host-less binding: the first one
    assert first.pick("zzz") == ("a.pem", "a.key")


def test_the_https_location_of_a_redirect() -> None:
    assert https_location(b"a.example:8080", 8443, b"/x?y=1") == b"https://a.example:8443/x?y=1"
    assert https_location(b"a.example", 443, b"/") == b"https://a.example/"
    assert https_location(b"[::1]:80", 443, b"/p") == b"https://[::1]/p"
    assert https_location(b"evil.example/x", 443, b"/") is None
    assert https_location(b"a.example\r\nX: y", 443, b"/") is None


def test_check_shows_https_bindings_the_redirect_hsts_and_warnings(
    tmp_path: Path, certs: dict[str, Certificate]
) -> None:
    path = server(
        tmp_path,
        tls_site("a", 8443, "a", 'https_redirect = true\nhsts = ""\n')
        .replace('hosts = ["a.example"]', 'hosts = ["a.example", "www.a.example"]')
        .replace("}]", '}, "127.0.0.1:8080:a.example"]'),
    )
    code, text = run_check(str(path))
    assert code == 0, text
    assert (
        f"bindings: https 127.0.0.1:8443 (a.example, www.a.example; certificate "
        f"{certs['a'].pem}); 127.0.0.1:8080 (a.example)"
    ) in text
    assert "https_redirect: plain HTTP -> https port 8443" in text
    assert "hsts: (none)" in text
    assert f"certificate {certs['a'].pem} does not name www.a.example" in text
