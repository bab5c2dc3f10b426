"""TCP ports for tests, leased machine-wide so that no other process takes them (issue 10, item 21).

A test whose backends listen on TCP ports (an engine's ``port_lower..port_upper``, php-fpm,
nginx, a service) once received another test's backend's answer: both picked ports at random
from the same range, and a backend counts as ready when anything accepts on its port. Here a
test leases a block of ports that is

- **its own on this machine**: each block has a lock file (``fcntl.flock``, in the system's
  temporary folder, shared by every checkout and every pytest-xdist worker); the lock is held
  until the lease is closed, and the kernel drops it if the process dies;
- **free now**: every port of the block is bound once (without ``SO_REUSEADDR``) before the
  lease is given;
- **out of the kernel's ephemeral range**, so that no outgoing connection of any process is given
  one of its ports between the check and the backend's own ``bind``.

``lease(size)`` is a context manager; the ``ports`` fixture gives a test a 32-port lease. To run
a site's engines on a lease, ``engine_ports_toml`` declares their ``port_lower..port_upper``.
``port()`` is one port for a server a test starts itself (php-fpm, nginx, a worker on TCP): it
comes from blocks this process leases for as long as it runs, and is never given twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from corral.supervision.ports import ephemeral_port_range

#: Every block starts at a multiple of BLOCK from FIRST; a lease takes one block.
BLOCK = 32
#: Leases are drawn from FIRST..LAST, less the kernel's ephemeral range (Linux: 32768-60999).
FIRST, LAST = 20000, 65535
LOCK_DIR = Path(tempfile.gettempdir()) / "corral-test-ports"


@dataclass
class Lease:
    """``size`` consecutive ports, ``low..high``, held by this process until ``close()``."""

    low: int
    high: int
    _lock: IO[str] | None = field(default=None, repr=False)

    @property
    def ports(self) -> range:
        return range(self.low, self.high + 1)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops its flock
            self._lock = None


def _blocks(size: int) -> list[int]:
    ephemeral = ephemeral_port_range() or (32768, 60999)
    starts = [
        low
        for low in range(FIRST, LAST - size + 1, BLOCK)
        if low + size - 1 < ephemeral[0] or low > ephemeral[1]
    ]
    random.shuffle(starts)
    return starts


def _all_free(low: int, high: int) -> bool:
    for port in range(low, high + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def take(size: int = BLOCK) -> Lease:
    """A lease of ``size`` (at most BLOCK) ports; close it when the test is done."""
    if not 1 <= size <= BLOCK:
        raise ValueError(f"a lease has 1..{BLOCK} ports, not {size}")
    LOCK_DIR.mkdir(exist_ok=True)
    for low in _blocks(size):
        lock = open(LOCK_DIR / f"{low}.lock", "w")  # noqa: SIM115 (held by the Lease)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        if _all_free(low, low + size - 1):
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            return Lease(low, low + size - 1, lock)
        lock.close()
    raise AssertionError(f"no block of {size} free ports left in {FIRST}..{LAST}")


@contextlib.contextmanager
def lease(size: int = BLOCK) -> Iterator[Lease]:
    taken = take(size)
    try:
        yield taken
    finally:
        taken.close()


@pytest.fixture
def ports() -> Iterator[Lease]:
    """A 32-port lease for this test (import it into the test module to use it)."""
    with lease() as taken:
        yield taken


def engine_ports_toml(engines: tuple[str, ...] | list[str], taken: Lease) -> str:
    """TOML declaring that each engine's workers take their ports from ``taken`` (a site's
    corral.toml or a server TOML: the engine's other settings stay the built-in ones)."""
    return "".join(
        f'\n[engines."{name}"]\nport_lower = {taken.low}\nport_upper = {taken.high}\n'
        for name in engines
    )


#: The blocks ``port()`` hands out, held until this process exits, and the ports still to give.
_HELD: list[Lease] = []
_SPARE: list[int] = []


def port() -> int:
    """A port no other process on this machine is given, for the rest of this process."""
    if not _SPARE:
        taken = take()
        _HELD.append(taken)
        _SPARE.extend(reversed(taken.ports))
    return _SPARE.pop()


def held(size: int = BLOCK) -> Lease:
    """A lease of ``size`` ports held for the rest of this process (for helpers with no end)."""
    taken = take(size)
    _HELD.append(taken)
    return taken


def held_range(size: int) -> tuple[int, int]:
    """``size`` consecutive ports no other process is given, for the rest of this process."""
    taken = held(size)
    return taken.low, taken.high
