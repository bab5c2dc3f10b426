"""systemd's service protocol, the pure parts: reading NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*, and
matching passed sockets to bindings; and one notification through a real datagram socket (an
abstract name)."""

from __future__ import annotations

import os
import socket

from hypothesis import given
from hypothesis import strategies as st

from corral.ops import systemd


def test_notify_address_path_abstract_and_others() -> None:
    assert systemd.notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert systemd.notify_address("@corral/notify") == "\0corral/notify"
    assert systemd.notify_address("") is None
    assert systemd.notify_address(None) is None
    assert systemd.notify_address("vsock:2:1234") is None


def test_watchdog_interval_is_half_and_only_for_this_process() -> None:
    assert systemd.watchdog_interval("4000000", None, 42) == 2.0
    assert systemd.watchdog_interval("4000000", "42", 42) == 2.0
    assert systemd.watchdog_interval("4000000", "43", 42) is None
    assert systemd.watchdog_interval("0", None, 42) is None
    assert systemd.watchdog_interval("soon", None, 42) is None
    assert systemd.watchdog_interval(None, "42", 42) is None


def test_listen_fds_from_3_with_names_only_for_this_process() -> None:
    assert systemd.listen_fds("2", "42", "web:admin", 42) == ((3, "web"), (4, "admin"))
    assert systemd.listen_fds("3", "42", "web", 42) == ((3, "web"), (4, "unknown"), (5, "unknown"))
    assert systemd.listen_fds("1", "42", None, 42) == ((3, "unknown"),)
    assert systemd.listen_fds("1", "41", None, 42) == ()
    assert systemd.listen_fds("0", "42", None, 42) == ()
    assert systemd.listen_fds("x", "42", None, 42) == ()
    assert systemd.listen_fds(None, None, None, 42) == ()


def test_read_and_take_environment_remove_the_variables() -> None:
    env = {
        "NOTIFY_SOCKET": "@n",
        "WATCHDOG_USEC": "1000000",
        "LISTEN_FDS": "1",
        "LISTEN_PID": str(os.getpid()),
        "PATH": "/bin",
    }
    found = systemd.take_environment(env)
    assert found == systemd.Environment("\0n", 0.5, ((3, "unknown"),))
    assert env == {"PATH": "/bin"}


def test_match_by_address_and_port() -> None:
    passed = [("127.0.0.1", 8080), ("::1", 8081), ("0.0.0.0", 80), ("127.0.0.1", 9999)]
    wanted = [("0:0::1", 8081), ("127.0.0.1", 8080), ("0.0.0.0", 80), ("10.0.0.1", 8080)]
    found, unused = systemd.match(passed, wanted)
    assert found == {0: 1, 1: 0, 2: 2}
    assert unused == [3]


@given(
    st.lists(st.tuples(st.sampled_from(["127.0.0.1", "::1", "0.0.0.0"]), st.integers(1, 4))),
    st.lists(st.tuples(st.sampled_from(["127.0.0.1", "::1", "::"]), st.integers(1, 4))),
)
def test_match_uses_each_passed_socket_once(
    passed: list[tuple[str, int]], wanted: list[tuple[str, int]]
) -> None:
    found, unused = systemd.match(passed, wanted)
    assert len(set(found.values())) == len(found)
    assert sorted([*found.values(), *unused]) == list(range(len(passed)))
    for w, p in found.items():
        assert passed[p][1] == wanted[w][1]


def test_a_notification_reaches_an_abstract_socket() -> None:
    name = f"corral-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(5)
        address = systemd.notify_address("@" + name)
        assert address is not None
        notifier = systemd.Notifier(address)
        notifier.ready("serving\n2 apps")
        notifier.close()
        assert manager.recv(4096) == b"READY=1\nSTATUS=serving 2 apps"


def test_a_notification_to_no_manager_is_ignored() -> None:
    notifier = systemd.Notifier("\0corral-test-nobody-listens")
    assert notifier.send("READY=1") is False
    assert notifier.send("READY=1") is False
    notifier.close()
