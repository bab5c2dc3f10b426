"""The X.509 reader (`corral.protocol.x509`): validity and DNS names of certificates made by
openssl (embedded: no external program), and nothing but ValueError on damaged input."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.protocol.x509 import (
    first_pem_certificate,
    parse_certificate,
    read_pem_certificate,
)

#: openssl req -x509 -newkey ec -days 3650 -subj /CN=a.example
#:   -addext subjectAltName=DNS:a.example,DNS:*.b.example,IP:127.0.0.1
WITH_NAMES = """-----BEGIN CERTIFICATE-----
MIIBpTCCAUygAwIBAgIUeFWau2iW+4POXCJCn7yMq7B4bccwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJYS5leGFtcGxlMB4XDTI2MTIwNzEwNDkzN1oXDTM2MTIwNDEw
NDkzN1owFDESMBAGA1UEAwwJYS5leGFtcGxlMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEUJoynzK+lE9A+kamC7urs87rCWysz5XR67QCtij4mvefCkIz1+++Ok1Y
Oy/oqxjnrKt2hFjCho+I9KIHBDYimaN8MHowHQYDVR0OBBYEFDMATZiAchpoaLdY
r5VWOjzqguVeMB8GA1UdIwQYMBaAFDMATZiAchpoaLdYr5VWOjzqguVeMA8GA1Ud
EwEB/wQFMAMBAf8wJwYDVR0RBCAwHoIJYS5leGFtcGxlggsqLmIuZXhhbXBsZYcE
fwAAATAKBggqhkjOPQQDAgNHADBEAiAUaKD26zmuboJYuNmKd7aNckTCge9YjZpX
nAYRpkyeLwIgFJ10Hqyx0uN2G4ebrQXGlvsqxa5tFPXnrHR5Hz2lj1c=
-----END CERTIFICATE-----
"""

#: The same without subjectAltName.
WITHOUT_NAMES = """-----BEGIN CERTIFICATE-----
MIIBhjCCASugAwIBAgIUBnXoZZAbZlWr55ib6EKy6utezO8wCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNbm9zYW4uZXhhbXBsZTAeFw0yNjEyMDcxMDQ5MzdaFw0zNjEy
MDQxMDQ5MzdaMBgxFjAUBgNVBAMMDW5vc2FuLmV4YW1wbGUwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATgoA4MzTH4bmkk7L/VZ9EwKKoWtQ5NJGybnE6QLa9IFmQY
n8aLSYwfrEUxfW48YdWBGe2qGPedGAqE4jmnjRHjo1MwUTAdBgNVHQ4EFgQUbdr8
TmBv7NUskluOShVU9wQt5TAwHwYDVR0jBBgwFoAUbdr8TmBv7NUskluOShVU9wQt
5TAwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEA0kC/vKaMvc7w
fPE7AtTD1VsSqtmUbEA1XE9XlBal3SoCIQCkrrFx4WX+QZOcfB0SusDdTtZSEjoZ
a29Obb91pEZriw==
-----END CERTIFICATE-----
"""

UTC = dt.UTC


def test_validity_and_dns_names() -> None:
    info = read_pem_certificate(WITH_NAMES.encode())
    assert info.not_before == dt.datetime(2026, 12, 7, 10, 49, 37, tzinfo=UTC)
    assert info.not_after == dt.datetime(2036, 12, 4, 10, 49, 37, tzinfo=UTC)
    assert info.dns_names == ("a.example", "*.b.example")  # (the IP address is not a name)
    assert read_pem_certificate(WITHOUT_NAMES.encode()).dns_names == ()


def test_the_first_certificate_of_a_chain_is_the_leaf() -> None:
    chain = (WITH_NAMES + WITHOUT_NAMES).encode()
    assert read_pem_certificate(chain).dns_names == ("a.example", "*.b.example")
    assert first_pem_certificate(chain) == ssl.PEM_cert_to_DER_cert(WITH_NAMES)


def test_names_covered_as_tls_clients_check_them() -> None:
    info = read_pem_certificate(WITH_NAMES.encode())
    assert info.covers("a.example") and info.covers("A.Example.")
    assert info.covers("x.b.example")
    assert not info.covers("b.example")  # a wildcard stands for exactly one label
    assert not info.covers("y.x.b.example")
    assert not info.covers("other.example")
    assert info.covers("*.b.example")  # a binding's own wildcard host


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "no END line"),
        (b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", "base64"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a certificate"),
    ],
)
def test_what_is_not_a_certificate_says_why(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_pem_certificate(data)


@given(st.binary(max_size=600))
def test_any_bytes_are_a_certificate_or_a_value_error(data: bytes) -> None:
    try:
        parse_certificate(data)
    except ValueError:
        pass


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_a_damaged_certificate_is_read_or_refused_with_value_error(where: int, byte: int) -> None:
    der = bytearray(ssl.PEM_cert_to_DER_cert(WITH_NAMES))
    der[where % len(der)] = byte
    try:
        info = parse_certificate(bytes(der))
    except ValueError:
        return
    assert all(isinstance(name, str) for name in info.dns_names)


@given(st.integers(min_value=1, max_value=420))
def test_a_truncated_certificate_is_refused(keep: int) -> None:
    der = ssl.PEM_cert_to_DER_cert(WITH_NAMES)
    with pytest.raises(ValueError):
        parse_certificate(der[: min(keep, len(der) - 1)])
