"""``front.peers``: a connection's CGI variables from tables of client and local addresses are
byte for byte what encoding them whole gives; the tables are bounded and follow a change of
``trusted_proxies``; a listener knows its local facts only when they are the same for every
connection it accepts."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import encode_params
from corral.front import peers as peers_module
from corral.front.cgienv import connection_params
from corral.front.forward import TrustedProxies
from corral.front.peers import TLS_PARAMS, Peers, remote_port_param

hosts = st.one_of(
    st.ip_addresses().map(str),
    st.text(min_size=0, max_size=200),  # (whatever a transport may name; also non-ASCII)
)


def encoded_whole(host: str, port: int, addr: str, trusted: bool, tls: bool) -> bytes:
    """What the front encoded for every connection before ``front.peers``."""
    params = connection_params(
        host.encode("ascii", "replace"), b"%d" % port, addr.encode("ascii", "replace")
    )
    if trusted:
        params = params[2:]
    if tls:
        params += TLS_PARAMS
    return encode_params(params)


@given(
    host=hosts,
    port=st.integers(0, 65535),
    addr=hosts,
    local_port=st.integers(0, 65535),
    trusted=st.booleans(),
    tls=st.booleans(),
)
def test_the_tables_encode_what_encoding_whole_gives(
    host: str, port: int, addr: str, local_port: int, trusted: bool, tls: bool
) -> None:
    table = Peers(TrustedProxies(["*"] if trusted else []))
    for _ in range(2):  # (the second time from the tables)
        client = table.client(host)
        local = table.local(addr, local_port, tls)
        assert client.trusted is trusted
        assert (local.addr, local.port, local.tls) == (addr, local_port, tls)
        assert table.params(client, port, local) == encoded_whole(host, port, addr, trusted, tls)


@given(port=st.integers(0, 10**12))
def test_remote_port_is_one_pair(port: int) -> None:
    assert remote_port_param(port) == encode_params([(b"REMOTE_PORT", b"%d" % port)])


def test_a_client_is_judged_once_then_again_after_trusted_proxies_change() -> None:
    table = Peers(TrustedProxies([]))
    first = table.client("10.0.0.7")
    assert not first.trusted and not first.loopback
    assert table.client("10.0.0.7") is first
    table.retrust(TrustedProxies(["10.0.0.0/8"]))
    again = table.client("10.0.0.7")
    assert again.trusted and again.host == "10.0.0.7"
    assert table.client("::1").loopback and table.client("127.0.0.2").loopback
    assert not table.client("not an address").loopback


def test_the_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "TABLE_MAX", 8)
    table = Peers(TrustedProxies([]))
    for number in range(100):
        table.client(f"10.0.0.{number}")
        table.local(f"10.1.0.{number}", 80, False)
        assert len(table._clients) <= 8 and len(table._locals) <= 8
    assert table.client("10.0.0.99").host == "10.0.0.99"


def test_a_listener_knows_its_local_facts_only_when_they_are_one() -> None:
    table = Peers(TrustedProxies([]))
    with socket.socket() as concrete, socket.socket() as wildcard, socket.socket() as other:
        concrete.bind(("127.0.0.1", 0))
        wildcard.bind(("0.0.0.0", 0))
        other.bind(("127.0.0.1", 0))
        local = table.listener_local([concrete])
        assert local is not None
        assert (local.addr, local.port, local.tls) == (
            "127.0.0.1",
            concrete.getsockname()[1],
            False,
        )
        assert local.params == encode_params([(b"SERVER_ADDR", b"127.0.0.1")])
        assert table.listener_local([wildcard]) is None  # (each connection's own address)
        assert table.listener_local([concrete, other]) is None  # (which one accepted?)
        assert table.listener_local([]) is None
    if socket.has_ipv6:
        with socket.socket(socket.AF_INET6) as any6:
            try:
                any6.bind(("::", 0))
            except OSError:
                return
            assert table.listener_local([any6]) is None


def test_a_unix_socket_listener_has_no_fixed_local_facts(tmp_path: object) -> None:
    table = Peers(TrustedProxies([]))
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(f"{tmp_path}/s")
        assert table.listener_local([unix]) is None


def test_the_servers_loopback_answers_follow_new_clients_after_junk_filled_the_table() -> None:
    """``FrontServer.is_loopback`` answers from ``peers``' client table, emptied when full:
    after ``TABLE_MAX`` junk addresses, a new client's answer is remembered again (a table
    that stopped growing would parse that client's address on every request for the life of
    the process)."""
    import asyncio

    from corral.front.server import FrontServer
    from corral.front.settings import FrontSettings

    loop = asyncio.new_event_loop()
    try:
        server = FrontServer(None, FrontSettings(), loop=loop)  # type: ignore[arg-type]
        for n in range(peers_module.TABLE_MAX):
            assert not server.is_loopback(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        assert server.is_loopback("127.0.0.1")
        assert list(server.peers._clients) == ["127.0.0.1"]
        assert not server.is_loopback("192.0.2.1")
        assert list(server.peers._clients) == ["127.0.0.1", "192.0.2.1"]
        assert server.peers.client("127.0.0.1").loopback
    finally:
        loop.close()
