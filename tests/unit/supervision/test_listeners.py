"""Whose listening socket is at an address (``supervision.listeners``): the /proc tables parsed
from sample text, then real sockets held by this process, by a child, or by a stranger."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.supervision.listeners import (
    Verdict,
    covers,
    socket_inode,
    tcp_listeners,
    unix_listeners,
    who_listens,
)
from ports import port

LINUX = os.path.isdir("/proc/self/fd")

# Port 0x1F90 = 8080. 127.0.0.1 listening (inode 111), 0.0.0.0 listening (222), an established
# connection from 127.0.0.1:8080 (333), 10.0.0.1 listening (444), another port (555).
_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 333 1
   3: 0100000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1
   4: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1
"""
# [::] listening on 8080 (666), [::1] (777).
_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 666 1
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1
"""  # noqa: E501
_UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 1001 /run/app/1.sock
0000000000000000: 00000003 00000000 00000000 0001 03 1002 /run/app/1.sock
0000000000000000: 00000002 00000000 00010000 0001 01 1003 /run/app/2.sock
0000000000000000: 00000002 00000000 00010000 0001 01 1004 /run/my app/3.sock
0000000000000000: 00000002 00000000 00000000 0002 01 1005
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the sample tables are little-endian")
def test_tcp_listeners_on_a_port_covering_the_host() -> None:
    assert tcp_listeners(_TCP, 8080, "127.0.0.1") == {111, 222}
    assert tcp_listeners(_TCP, 8080, "10.0.0.1") == {222, 444}
    assert tcp_listeners(_TCP, 8081, "127.0.0.1") == {555}
    assert tcp_listeners(_TCP, 9, "127.0.0.1") == set()
    assert tcp_listeners(_TCP6, 8080, "127.0.0.1") == {666}  # [::] takes IPv4 too
    assert tcp_listeners(_TCP6, 8080, "::1") == {666, 777}


def test_which_bound_addresses_take_connections_to_a_host() -> None:
    assert covers("127.0.0.1", "127.0.0.1")
    assert covers("0.0.0.0", "127.0.0.1")
    assert covers("::", "127.0.0.1")
    assert covers("::ffff:127.0.0.1", "127.0.0.1")
    assert not covers("127.0.0.2", "127.0.0.1")
    assert not covers("::1", "127.0.0.1")
    assert not covers("0.0.0.0", "::1")
    assert covers("127.0.0.2", "0.0.0.0")  # a wildcard host: every listener on the port
    assert covers("127.0.0.2", "localhost")


def test_unix_listeners_at_a_path() -> None:
    assert unix_listeners(_UNIX, "/run/app/1.sock") == {1001}  # not the accepted connection
    assert unix_listeners(_UNIX, "/run/my app/3.sock") == {1004}
    assert unix_listeners(_UNIX, "/run/app/9.sock") == set()
    assert socket_inode("socket:[1234]") == 1234
    assert socket_inode("pipe:[1234]") is None
    assert socket_inode("/dev/null") is None


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port()))
        sock.listen()
        yield sock.getsockname()


@pytest.fixture
def stranger() -> Iterator[int]:
    """A process that is neither this one nor its descendant... as far as the check goes: a
    child in a session of its own, asked about as if it were the worker."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_a_listener_of_the_process_itself_is_ours(listener: tuple[str, int]) -> None:
    assert who_listens(listener, os.getpid()).verdict is Verdict.OURS


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_a_listener_of_another_process_is_named(listener: tuple[str, int], stranger: int) -> None:
    claim = who_listens(listener, stranger)
    assert claim.verdict is Verdict.OTHERS
    assert [holder.pid for holder in claim.others] == [os.getpid()]
    assert claim.others[0].name  # this interpreter's process name
    assert claim.others[0].describe().startswith(f"pid {os.getpid()}, ")


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_a_listener_of_a_descendant_is_ours_and_nothing_is_nothing(stranger: int) -> None:
    number = port()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            f"s = socket.create_server(('127.0.0.1', {number}))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        # This process is the child's parent: its tree holds the listener.
        assert who_listens(("127.0.0.1", number), os.getpid()).verdict is Verdict.OURS
        claim = who_listens(("127.0.0.1", number), stranger)
        assert claim.verdict is Verdict.OTHERS
        assert [holder.pid for holder in claim.others] == [child.pid]
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while who_listens(("127.0.0.1", number), os.getpid()).verdict is not Verdict.NOT_LISTENING:
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_a_unix_socket_is_ours_or_a_strangers(tmp_path: Path, stranger: int) -> None:
    path = str(tmp_path / "app.sock")
    assert who_listens(path, os.getpid()).verdict is Verdict.NOT_LISTENING
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)
        sock.listen()
        assert who_listens(path, os.getpid()).verdict is Verdict.OURS
        claim = who_listens(path, stranger)
        assert claim.verdict is Verdict.OTHERS
        assert [holder.pid for holder in claim.others] == [os.getpid()]
