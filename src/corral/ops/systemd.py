"""systemd's service protocol, with the standard library only: ``sd_notify`` and socket
activation (``sd_listen_fds``).

Notification (``Notifier``): a datagram of ``NAME=value`` lines to the Unix socket that
``NOTIFY_SOCKET`` names (a path, or ``@name`` for an abstract one): ``READY=1`` once every
binding listens, ``RELOADING=1`` with ``MONOTONIC_USEC`` (systemd 253's ``Type=notify-reload``
wants it) then ``READY=1`` around a reload, ``STOPPING=1`` at a graceful stop, ``STATUS=`` lines
for ``systemctl status``, and ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` while the event loop
turns (``watchdog_interval``; only when ``WATCHDOG_PID`` is absent or names this process).

Socket activation (``listen_fds``, ``adopt``, ``match``): when ``LISTEN_PID`` names this process,
``LISTEN_FDS`` sockets start at descriptor 3 (``LISTEN_FDNAMES``: their names, colon-separated).
Each is matched to a configured binding by address: same IP address and port (``match``); a
binding without a passed socket is bound as usual, a passed socket no binding wants is closed
(with a warning, by the caller).

``take_environment`` reads these variables once and removes them from the environment, so that
no worker inherits them (a worker that wrote to the notify socket would be refused anyway under
``NotifyAccess=main``; one that saw ``LISTEN_FDS`` could take the host's sockets for its own).
The parsing functions are pure (tested without systemd); ``Notifier`` and ``adopt`` do I/O.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

logger = logging.getLogger("corral.systemd")

#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3
#: The variables this module reads (and removes from the environment).
VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
)


@dataclass(frozen=True, slots=True)
class Environment:
    """What systemd told this process through its environment."""

    #: ``NOTIFY_SOCKET`` as ``socket.sendto`` takes it (an abstract name starts with NUL).
    notify_address: str | None = None
    #: Seconds between two ``WATCHDOG=1`` (half ``WATCHDOG_USEC``); None: no watchdog.
    watchdog_interval: float | None = None
    #: The passed sockets' descriptors and names.
    listen_fds: tuple[tuple[int, str], ...] = ()


def notify_address(value: str | None) -> str | None:
    """``NOTIFY_SOCKET`` as an address for ``sendto``: a path, or ``@name`` as the abstract
    ``\\0name``; None when unset or not a Unix socket's name."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # (vsock addresses and the like: not for this module)


def watchdog_interval(usec: str | None, pid: str | None, my_pid: int) -> float | None:
    """Seconds between pings: half of ``WATCHDOG_USEC`` when it is set, positive, and
    ``WATCHDOG_PID`` is absent or names ``my_pid``."""
    if not usec or (pid and pid.strip() != str(my_pid)):
        return None
    try:
        micros = int(usec)
    except ValueError:
        return None
    if micros <= 0:
        return None
    return micros / 2 / 1_000_000


def listen_fds(
    count: str | None, pid: str | None, names: str | None, my_pid: int
) -> tuple[tuple[int, str], ...]:
    """The passed descriptors and their names (``unknown`` when unnamed): none unless
    ``LISTEN_PID`` names ``my_pid`` and ``LISTEN_FDS`` is a positive count."""
    if not count or not pid or pid.strip() != str(my_pid):
        return ()
    try:
        n = int(count)
    except ValueError:
        return ()
    if n <= 0:
        return ()
    given = names.split(":") if names else []
    return tuple(
        (LISTEN_FDS_START + i, given[i] if i < len(given) and given[i] else "unknown")
        for i in range(n)
    )


def read_environment(env: Mapping[str, str], my_pid: int) -> Environment:
    """What systemd's variables in ``env`` say to the process ``my_pid`` (pure)."""
    return Environment(
        notify_address(env.get("NOTIFY_SOCKET")),
        watchdog_interval(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"), my_pid),
        listen_fds(env.get("LISTEN_FDS"), env.get("LISTEN_PID"), env.get("LISTEN_FDNAMES"), my_pid),
    )


def take_environment(env: MutableMapping[str, str] | None = None) -> Environment:
    """``read_environment`` for this process, then remove the variables from ``env`` (default:
    ``os.environ``), so that no worker inherits them."""
    env = os.environ if env is None else env
    found = read_environment(env, os.getpid())
    for name in VARIABLES:
        env.pop(name, None)
    return found


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds (``MONOTONIC_USEC=`` of ``RELOADING=1``)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def one_line(text: str) -> str:
    """A ``STATUS=`` value: one line."""
    return " ".join(text.split())


class Notifier:
    """Sends notifications to the service manager (``sd_notify``). A send that fails (the
    manager gone, its queue full) is logged once and otherwise ignored: notifications never
    stop the host."""

    def __init__(self, address: str) -> None:
        self.address = address
        # (Not inherited by workers: Python's sockets are close-on-exec, PEP 446.)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._failed = False

    def send(self, *lines: str) -> bool:
        """One datagram of ``NAME=value`` lines; whether it left."""
        message = "\n".join(lines).encode("utf-8", "replace")
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("cannot notify the service manager (NOTIFY_SOCKET): %s", exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={one_line(status)}")

    def reloading(self, status: str) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", f"STATUS={one_line(status)}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={one_line(status)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={one_line(status)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        self._sock.close()


# -- socket activation ---------------------------------------------------------------------------


@dataclass(slots=True)
class PassedSocket:
    """A listening socket systemd passed, and the address it is bound to."""

    sock: socket.socket
    name: str
    host: str
    port: int

    def describe(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port} (fd {self.sock.fileno()}, name {self.name})"


def adopt(fds: Iterable[tuple[int, str]]) -> list[PassedSocket]:
    """The passed descriptors as sockets (made close-on-exec, so that workers do not inherit
    them). A descriptor that is not a listening TCP socket is closed with a warning."""
    adopted = []
    for fd, name in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            logger.warning("passed descriptor %d (%s) is not a socket: %s", fd, name, exc)
            continue
        os.set_inheritable(fd, False)
        address = sock.getsockname()
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if (
            sock.family not in (socket.AF_INET, socket.AF_INET6)
            or sock.type != socket.SOCK_STREAM
            or not listening
        ):
            logger.warning(
                "passed descriptor %d (%s) is not a listening TCP socket (%r): closed",
                fd,
                name,
                address,
            )
            sock.close()
            continue
        adopted.append(PassedSocket(sock, name, str(address[0]), int(address[1])))
    return adopted


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a == b


def match(
    passed: Iterable[tuple[str, int]], wanted: Iterable[tuple[str, int]]
) -> tuple[dict[int, int], list[int]]:
    """Which passed address serves which wanted one (pure): ``{wanted index: passed index}``,
    and the passed addresses no binding wants. Same IP address (``::1`` and ``0:0::1`` alike)
    and same port; each passed socket serves one binding at most."""
    passed = list(passed)
    used: set[int] = set()
    found: dict[int, int] = {}
    for w, (host, port) in enumerate(wanted):
        for p, (their_host, their_port) in enumerate(passed):
            if p not in used and their_port == port and _same_host(host, their_host):
                found[w] = p
                used.add(p)
                break
    return found, [p for p in range(len(passed)) if p not in used]
