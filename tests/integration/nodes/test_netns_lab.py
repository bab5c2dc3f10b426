"""tests/netns.py, the hosts of the many-nodes tests: its namespaces reach each other over their
bridge and nothing else, this machine's network never sees their addresses, and closing a lab
leaves no namespace and no process behind; without root it skips (fails when required)."""

from __future__ import annotations

import socket
import subprocess

import pytest
from tests.netns import call_in, lab

import conftest

pytestmark = pytest.mark.external("iproute2")


def test_a_lab_links_its_hosts_and_leaves_nothing_behind() -> None:
    with lab() as hosts:
        a, b = hosts.host("a"), hosts.host("b")
        assert len({a.netns, b.netns, hosts.bridge}) == 3
        # A socket made in a thread inside b stays in b: a's client reaches it over the bridge.
        listener = call_in(b.netns, lambda: socket.create_server((b.address, 8080)))
        with listener:
            client = call_in(a.netns, lambda: socket.create_connection((b.address, 8080), 5))
            with client, listener.accept()[0] as accepted:
                assert accepted.getpeername()[0] == a.address
        # This machine's own network has neither address, and does not reach them.
        here = subprocess.run([hosts.ip, "-o", "addr"], capture_output=True, text=True).stdout
        assert a.address not in here and b.address not in here
        for host in (a, b):
            inside = subprocess.run(
                hosts.command(host, hosts.ip, "-o", "addr"), capture_output=True, text=True
            ).stdout
            assert f"inet {host.address}/24" in inside and "eth0" in inside
        # A process still running in a namespace is ended with it.
        sleeper = subprocess.Popen(hosts.command(a, "sleep", "60"), start_new_session=True)
        assert hosts.left() == sorted([a.netns, b.netns, hosts.bridge])
    assert hosts.left() == []
    assert sleeper.wait(5) == -9


@pytest.mark.parametrize("required", [False, True])
def test_without_root_a_lab_is_skipped_or_fails_when_required(
    monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(conftest, "REQUIRE_EXTERNAL", required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="network namespaces need root"), lab():
        pass
