"""The trusted-proxy policy's pure parts: what a trusted proxy's fields say (``from_proxy``),
the CGI variables made of them (``proxy_params``), and that everyone else's are dropped."""

from __future__ import annotations

from corral.front.cgienv import header_params
from corral.front.forward import TrustedProxies, from_proxy, proxied, proxy_params

TRUSTED = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])


def test_the_client_is_the_nearest_address_that_is_no_trusted_proxy() -> None:
    view = from_proxy([(b"X-Forwarded-For", b"198.51.100.1, 203.0.113.9, 10.1.2.3")], TRUSTED)
    assert view.client == "203.0.113.9"
    assert view.chain == b"198.51.100.1, 203.0.113.9, 10.1.2.3"
    # Every hop trusted: the farthest one.
    assert from_proxy([(b"X-Forwarded-For", b"10.0.0.1, 10.0.0.2")], TRUSTED).client == "10.0.0.1"
    # A name that is no address (RFC 7239's "unknown", an obfuscated "_hidden") names no one.
    assert from_proxy([(b"X-Forwarded-For", b"unknown")], TRUSTED).client is None
    assert from_proxy([(b"Forwarded", b"for=_hidden")], TRUSTED).client is None


def test_forwarded_is_read_when_there_is_no_x_forwarded_for() -> None:
    view = from_proxy(
        [(b"Forwarded", b'for=192.0.2.60;proto=HTTPS;host=shop.example, for="[2001:db8::1]:80"')],
        TRUSTED,
    )
    assert view == ("2001:db8::1", b"https", b"shop.example", None)
    both = [(b"Forwarded", b"for=192.0.2.60"), (b"x-forwarded-for", b"192.0.2.7")]
    assert from_proxy(both, TRUSTED).client == "192.0.2.7"


def test_a_scheme_or_host_that_is_not_one_is_ignored() -> None:
    view = from_proxy(
        [(b"X-Forwarded-Proto", b"javascript"), (b"X-Forwarded-Host", b"a b\r\nX: y")], TRUSTED
    )
    assert view.scheme is None and view.host is None
    assert from_proxy([(b"X-Forwarded-Proto", b"http, https")], TRUSTED).scheme == b"https"


def test_proxy_params_name_the_client_the_scheme_and_the_host() -> None:
    params = [(b"HTTP_HOST", b"internal:8080")]
    view = from_proxy(
        [
            (b"X-Forwarded-For", b"203.0.113.9"),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-Host", b"www.example.org"),
        ],
        TRUSTED,
    )
    name, port = proxy_params(view, params, "127.0.0.1", b"50000", b"internal", b"8080")
    assert (name, port) == (b"www.example.org", b"443")
    assert dict(params) == {
        b"HTTP_HOST": b"www.example.org",
        b"REMOTE_ADDR": b"203.0.113.9",
        b"HTTPS": b"on",
        b"REQUEST_SCHEME": b"https",
        b"HTTP_X_FORWARDED_PROTO": b"https",
        b"HTTP_X_FORWARDED_FOR": b"203.0.113.9, 127.0.0.1",
        b"HTTP_X_FORWARDED_HOST": b"www.example.org",
    }
    # A proxy that says nothing: the peer is the client, with its port.
    params = []
    assert proxy_params(from_proxy([], TRUSTED), params, "10.0.0.5", b"4000", b"h", b"80") == (
        b"h",
        b"80",
    )
    assert dict(params) == {
        b"REMOTE_ADDR": b"10.0.0.5",
        b"REMOTE_PORT": b"4000",
        b"HTTP_X_FORWARDED_FOR": b"10.0.0.5",
    }


def test_forwarding_fields_never_become_cgi_variables_by_themselves() -> None:
    out: list[tuple[bytes, bytes]] = []
    headers = [
        (b"Host", b"a"),
        (b"X-Forwarded-For", b"1.2.3.4"),
        (b"x-forwarded-proto", b"https"),
        (b"X-Forwarded-Host", b"evil"),
        (b"Forwarded", b"for=1.2.3.4"),
    ]
    header_params(headers, out)
    assert out == [(b"HTTP_HOST", b"a")]
    assert proxied(headers) and proxied([(b"X-Real-IP", b"1.2.3.4")])
    assert not proxied([(b"Host", b"a")])
