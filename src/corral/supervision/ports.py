"""Which port a worker that listens itself (``WorkerSocket.PORT``) is given, from its plan's range.

A port is handed out when it is free now (bound once, without ``SO_REUSEADDR``, so a port in
TIME_WAIT is skipped too), is not held by another live worker of this host, and was not found
taken by another program lately. Candidates start at a random offset (several hosts sharing a
range rarely collide) and ports outside the kernel's ephemeral range come first.

A port can still be lost between the check and the command's own ``bind``: the readiness check
(``supervision.listeners``) then finds another program's listener on it, the start fails with
that program named, and the port is remembered as taken (``note_taken``) for ``TAKEN_FOR``
seconds, so that the next start picks another one at once instead of racing for it again.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

from corral.errors import CorralError

#: How many ports are tried (by binding them) before giving up on a range.
PORT_ATTEMPTS = 512
#: Seconds a port found held by another program is not offered again.
TAKEN_FOR = 300.0

#: Where Linux keeps the range it draws ephemeral (client) ports from.
_EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


class NoFreePort(CorralError):
    """Every port of a range is in use."""


def ephemeral_port_range(path: str = _EPHEMERAL_RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's ephemeral port range, or None where it cannot be read (macOS...)."""
    try:
        with open(path, encoding="ascii") as file:
            low, high = (int(part) for part in file.read().split())
    except (OSError, ValueError):
        return None
    return low, high


def port_candidates(
    low: int, high: int, start: int, ephemeral: tuple[int, int] | None
) -> list[int]:
    """The ports of ``low..high`` in the order to try them, beginning at offset ``start``.

    Ports outside the kernel's ephemeral range come first: a port inside it may be taken by any
    outgoing connection between our check and the backend's own bind, which fails that start
    (Zoo's default range, 49152-65535, overlaps Linux's 32768-60999 by 11,848 ports).
    """
    count = high - low + 1
    ordered = [low + (start + step) % count for step in range(count)]
    if ephemeral is None:
        return ordered
    first, last = ephemeral
    outside = [port for port in ordered if not first <= port <= last]
    inside = [port for port in ordered if first <= port <= last]
    return outside + inside


class PortBook:
    """The ports this host's workers hold, and the ones lately found taken by other programs.

    One per host process (``PORTS``): every pool of the host picks from it, so no port is
    handed to two live workers.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, taken_for: float = TAKEN_FOR
    ) -> None:
        self._clock = clock
        self._taken_for = taken_for
        #: Ports handed to live workers (never handed out twice).
        self.held: set[int] = set()
        #: Port -> until when (clock) it is not offered: another program held it.
        self._taken: dict[int, float] = {}

    def note_taken(self, port: int) -> None:
        """Another program was found listening on ``port``: do not offer it for a while."""
        self._taken[port] = self._clock() + self._taken_for

    def taken(self, port: int) -> bool:
        """Whether ``port`` was found held by another program lately."""
        until = self._taken.get(port)
        if until is None:
            return False
        if until <= self._clock():
            del self._taken[port]
            return False
        return True

    def release(self, port: int) -> None:
        """The worker given ``port`` is gone."""
        self.held.discard(port)

    def pick(self, host: str, low: int, high: int) -> int:
        """A port of ``low..high`` on ``host`` that is free now, held by no worker of this host
        and not lately found taken; it is held until ``release``.

        Raises:
            NoFreePort: none is (after ``PORT_ATTEMPTS`` binds at most).
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        start = random.randrange(high - low + 1)
        attempts = 0
        last_error: OSError | None = None
        skipped = 0
        for port in port_candidates(low, high, start, ephemeral_port_range()):
            if port in self.held:
                continue
            if self.taken(port):
                skipped += 1
                continue
            attempts += 1
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((host, port))
                except OSError as exc:
                    last_error = exc
                    if attempts >= PORT_ATTEMPTS:
                        break
                    continue
            self.held.add(port)
            return port
        detail = f" (last: {last_error.strerror or last_error})" if last_error else ""
        if skipped:
            detail += f"; {skipped} held by other programs lately"
        raise NoFreePort(f"no free port in {low}..{high} on {host}{detail}")


#: This host's ports.
PORTS = PortBook()
