"""Hosts of their own for the many-nodes tests: Linux network namespaces that a test creates.

A ``Lab`` is a set of namespaces named after this process (``crl<pid>-<random>-<role>``, so that
parallel test processes and other checkouts never meet), one of them holding only a bridge; every
other namespace is a host with its loopback and one ``eth0`` on that bridge (a veth pair created
inside the bridge's namespace, its far end moved straight into the host's: no interface ever
exists in this machine's own namespace), with a private address ``10.77.0.N/24``. What runs in a
host is started with ``ip netns exec`` (``Lab.command``); this process's own client threads enter
a host with ``setns(2)`` (``enter``, ``call_in``: per thread, so pytest's threads stay on this
machine's network).

``Lab.close`` kills whatever still runs in its namespaces (processes of this test: nothing else
can be inside them) and deletes them, the bridge's last: its veths go with their namespaces.
Needs root and iproute2's ``ip``; ``lab()`` skips without them (fails under
CORRAL_REQUIRE_EXTERNAL=1, as ``require_program`` does).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from conftest import require_program, unavailable

#: setns(2)'s flag for a network namespace.
CLONE_NEWNET = 0x40000000
#: Where ``ip netns`` keeps the namespaces it names.
NETNS_DIR = "/run/netns"
#: The lab's private network, inside its namespaces only.
SUBNET = "10.77.0"

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def enter(name: str) -> None:
    """Move the calling thread (only it) into namespace ``name``: the sockets it opens from now
    on, and the processes it starts, are on that host's network."""
    fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def call_in(name: str | None, function: Callable[[], T]) -> T:
    """``function()`` run in a thread inside namespace ``name`` (None: here); its result or its
    exception."""
    if name is None:
        return function()
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            enter(name)
            results.append(function())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"in-{name}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


@dataclass(frozen=True)
class Host:
    """One namespace of a lab: its name and its address on the lab's bridge."""

    netns: str
    address: str


@dataclass
class Lab:
    """Namespaces of one test, linked by a bridge of their own."""

    ip: str
    prefix: str = field(default_factory=lambda: f"crl{os.getpid()}-{secrets.token_hex(2)}")
    created: list[str] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    def _ip(self, *args: str) -> None:
        result = subprocess.run(
            [self.ip, *args], capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")

    def _add(self, name: str) -> None:
        self._ip("netns", "add", name)
        self.created.append(name)
        self._ip("-n", name, "link", "set", "lo", "up")

    def open(self) -> Lab:
        self._add(self.bridge)
        self._ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.bridge, "link", "set", "br0", "up")
        return self

    def host(self, role: str) -> Host:
        """A new namespace on the bridge, with the next address (10.77.0.11, .12, ...)."""
        number = len(self.hosts)
        name = f"{self.prefix}-{role}"
        self._add(name)
        port = f"v{number}"
        self._ip(
            "-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", name,
        )  # fmt: skip
        self._ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
        address = f"{SUBNET}.{11 + number}"
        self._ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip("-n", name, "link", "set", "eth0", "up")
        host = Host(name, address)
        self.hosts.append(host)
        return host

    def command(self, host: Host, *argv: str) -> tuple[str, ...]:
        """``argv`` run on ``host`` (``ip netns exec`` execs it: the pid is the program's)."""
        return (self.ip, "netns", "exec", host.netns, *argv)

    def pids(self, name: str) -> list[int]:
        result = subprocess.run(
            [self.ip, "netns", "pids", name], capture_output=True, text=True, timeout=10
        )
        return [int(pid) for pid in result.stdout.split()]

    def close(self) -> None:
        """Kill what still runs inside and delete every namespace (hosts first)."""
        for name in reversed(self.created):
            for pid in self.pids(name):
                if pid == os.getpid():  # (only threads of this process ever enter: never here)
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(
                [self.ip, "netns", "delete", name], capture_output=True, timeout=10, check=False
            )
        self.created.clear()
        assert not self.left(), f"namespaces left behind: {self.left()}"

    def left(self) -> list[str]:
        """This lab's namespaces that still exist (none after ``close``)."""
        if not os.path.isdir(NETNS_DIR):
            return []
        return sorted(name for name in os.listdir(NETNS_DIR) if name.startswith(self.prefix))


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    """A lab with its bridge, deleted with everything in it on the way out, even on failure."""
    ip = require_program("ip", "/usr/sbin/ip", "/sbin/ip")
    if os.geteuid() != 0:
        unavailable("network namespaces need root (ip netns add)")
    opened = Lab(ip)
    try:
        try:
            opened.open()
        except OSError as exc:
            unavailable(f"cannot create a network namespace: {exc}")
        yield opened
    finally:
        opened.close()
