"""Whose is the listening socket at a worker's address: its own process tree's, or another's?

A command that listens itself (``WorkerSocket.PORT``, ``WorkerSocket.UNIX_PATH``) is ready only when
the socket that accepts at its address belongs to it: a worker whose port was taken by another
program (another Corral, a developer's server) would otherwise be declared ready and sent the
users' requests, which that program would answer. ``who_listens(address, pid)`` answers with a
``Claim``:

* **Linux** (``/proc``): the listening sockets at the address are read from ``/proc/net/tcp``
  and ``/proc/net/tcp6`` (state ``0A``, the port, an address that covers the worker's host) or
  ``/proc/net/unix`` (``__SO_ACCEPTCON``, the path), as socket inodes; the worker's process and
  its descendants (``psutil``'s ``children(recursive=True)``) are ours, and their descriptors
  (``/proc/PID/fd/*`` -> ``socket:[INODE]``) say which inodes they hold. A listener none of them
  holds is looked for among every process's descriptors (only then: that scan is the slow part),
  and is ours after all when its holder is in the worker's session (a descendant that its parent
  left); otherwise its holder's pid and name are reported when this user may see them. One
  check reads the socket tables once and ``readlink``s the descriptors of the worker's tree.
  Measured for a Node.js worker (200 checks, 2 busy cores): 3.3 ms with
  1,600 TCP sockets on the machine and 15 ms with 10,000, nearly all of it the kernel writing
  /proc/net/tcp; ``psutil.Process.net_connections`` took 5.9 and 12 ms for *each* process of
  the tree (it reads the whole table every time) and cannot see another program's listener.
  Finding a foreign listener's holder (the every-process scan) took 17 ms.
* **Elsewhere** (macOS: no ``/proc``): ``psutil``'s per-process ``net_connections`` for the
  worker's tree; a listener that the tree does not hold is another program's (named when
  ``psutil.net_connections`` may list the machine's sockets, which macOS allows only to root).
* Where neither works, the claim is ``UNKNOWN`` and the caller keeps to the connection test.

Everything here blocks (file reads, ``readlink``): call it in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import psutil  # type: ignore[import-untyped]

from corral.supervision.launch import Address

#: /proc/net/tcp* state of a listening socket.
_TCP_LISTEN = "0A"
#: /proc/net/unix flag of a listening socket (__SO_ACCEPTCON).
_ACCEPTCON = 0x10000
_PROC = "/proc"


class Verdict(enum.Enum):
    """What ``who_listens`` found at an address."""

    #: Nothing listens there (yet).
    NOT_LISTENING = "not listening"
    #: Only the worker's process tree (or its session) listens there.
    OURS = "ours"
    #: Some other process listens there (perhaps beside the worker).
    OTHERS = "others"
    #: This platform cannot tell.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Holder:
    """A process holding a listening socket, as far as it is visible to this user."""

    pid: int | None = None
    name: str | None = None

    def describe(self) -> str:
        if self.pid is None:
            return "not visible to Corral"
        return f"pid {self.pid}, {self.name}" if self.name else f"pid {self.pid}"


@dataclass(frozen=True, slots=True)
class Claim:
    verdict: Verdict
    #: The other processes that listen (``Verdict.OTHERS``); a ``Holder()`` when not visible.
    others: tuple[Holder, ...] = ()


# ------------------------------------------------------------------------ pure parsers


def _proc_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp* prints it: 32-bit words in the host's byte order."""
    words = [int(text[i : i + 8], 16) for i in range(0, len(text), 8)]
    raw = struct.pack(f"={len(words)}I", *words)
    return ipaddress.ip_address(raw)


def covers(listener: str, host: str) -> bool:
    """Whether a socket listening on address ``listener`` takes connections made to ``host``
    (the same address, a wildcard of its family, ``::`` for IPv4 too (dual stack), or an
    IPv4-mapped IPv6 address). A ``host`` that is a wildcard or a name: every address does."""
    try:
        target = ipaddress.ip_address(host)
        bound = ipaddress.ip_address(listener)
    except ValueError:
        return True
    if target.is_unspecified or bound == target:
        return True
    if isinstance(bound, ipaddress.IPv6Address):
        if bound.is_unspecified:
            return True
        return bound.ipv4_mapped is not None and bound.ipv4_mapped == target
    return bound.is_unspecified and isinstance(target, ipaddress.IPv4Address)


def tcp_listeners(table: str, port: int, host: str) -> set[int]:
    """The inodes of sockets in ``table`` (the text of /proc/net/tcp or tcp6) that listen on
    ``port`` at an address covering ``host``."""
    found: set[int] = set()
    needle = f":{port:04X} "
    for line in table.splitlines()[1:]:
        if needle not in line:  # most lines: skip them before splitting
            continue
        fields = line.split()
        if len(fields) < 10 or fields[3] != _TCP_LISTEN:
            continue
        address, _, hex_port = fields[1].partition(":")
        if int(hex_port, 16) != port:
            continue
        if covers(str(_proc_address(address)), host):
            found.add(int(fields[9]))
    return found


def unix_listeners(table: str, path: str) -> set[int]:
    """The inodes of sockets in ``table`` (the text of /proc/net/unix) listening at ``path``."""
    found: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split(maxsplit=7)
        if len(fields) < 8 or fields[7] != path:
            continue
        if int(fields[3], 16) & _ACCEPTCON:
            found.add(int(fields[6]))
    return found


def socket_inode(link: str) -> int | None:
    """The inode of a descriptor's link text ``socket:[INODE]``; None for anything else."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None


# ------------------------------------------------------------------------ Linux (/proc)


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as file:
        return file.read()


def _listening_inodes(address: Address) -> set[int]:
    if isinstance(address, str):
        return unix_listeners(_read(f"{_PROC}/net/unix"), address)
    host, port = address
    found: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            found |= tcp_listeners(_read(f"{_PROC}/net/{table}"), port, host)
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
    return found


def _socket_inodes(pid: int) -> Iterator[int]:
    """The socket inodes among ``pid``'s descriptors (none when it is gone or not ours)."""
    fd_dir = f"{_PROC}/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return
    for name in names:
        try:
            inode = socket_inode(os.readlink(f"{fd_dir}/{name}"))
        except OSError:
            continue
        if inode is not None:
            yield inode


def _fds_visible(pid: int) -> bool:
    """Whether this process may read ``pid``'s descriptors (its own user's, or root)."""
    try:
        os.listdir(f"{_PROC}/{pid}/fd")
    except PermissionError:
        return False
    except OSError:
        return True  # gone: nothing hidden
    return True


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (just ``pid`` when psutil cannot list them)."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def _same_session(pid: int, leader: int) -> bool:
    try:
        return os.getsid(pid) == leader
    except OSError:
        return False


def _name(pid: int) -> str | None:
    try:
        name: str = psutil.Process(pid).name()
    except psutil.Error:
        return None
    return name


def _holders(inodes: set[int], skip: Iterable[int]) -> dict[int, list[int]]:
    """Inode -> the pids (other than ``skip``) that hold it, from every visible process."""
    skipped = set(skip)
    held: dict[int, list[int]] = {}
    for entry in os.listdir(_PROC):
        if not entry.isdigit() or int(entry) in skipped:
            continue
        for inode in _socket_inodes(int(entry)):
            if inode in inodes:
                held.setdefault(inode, []).append(int(entry))
    return held


def _claim_proc(address: Address, pid: int) -> Claim:
    listening = _listening_inodes(address)
    if not listening:
        return Claim(Verdict.NOT_LISTENING)
    tree = _tree(pid)
    left = set(listening)
    for member in tree:
        left.difference_update(_socket_inodes(member))
        if not left:
            return Claim(Verdict.OURS)
    if not _fds_visible(pid):
        # A worker of another user, seen by a front that dropped root (docs/tenants.md): its
        # descriptors are not ours to read, so whose listener this is cannot be told.
        return Claim(Verdict.UNKNOWN)
    # Listeners the tree does not hold: whose are they? (Only now: this scans every process.)
    holders = _holders(left, tree)
    others: list[Holder] = []
    for inode in sorted(left):
        pids = holders.get(inode, [])
        if any(_same_session(holder, pid) for holder in pids):
            continue  # a descendant its parent left behind, still in the worker's session
        others += [Holder(holder, _name(holder)) for holder in pids] or [Holder()]
    if not others:
        return Claim(Verdict.OURS)
    return Claim(Verdict.OTHERS, tuple(dict.fromkeys(others)))


# ------------------------------------------------------------------------ psutil (macOS)


class _Connection(Protocol):
    """What is read of one of psutil's socket records (``pconn``/``sconn``)."""

    @property
    def laddr(self) -> tuple[str, int] | tuple[()] | str: ...

    @property
    def status(self) -> str: ...


def _psutil_matches(conn: _Connection, address: Address) -> bool:
    laddr = conn.laddr
    if isinstance(address, str):
        return laddr == address
    if conn.status != psutil.CONN_LISTEN or isinstance(laddr, str) or len(laddr) != 2:
        return False
    host, port = address
    ip, bound_port = laddr
    return bound_port == port and covers(ip, host)


def _claim_psutil(address: Address, pid: int) -> Claim:
    kind = "unix" if isinstance(address, str) else "tcp"
    ours = False
    for member in _tree(pid):
        try:
            conns = psutil.Process(member).net_connections(kind=kind)
        except psutil.NoSuchProcess:
            continue
        if any(_psutil_matches(conn, address) for conn in conns):
            ours = True
            break
    try:
        everyone = psutil.net_connections(kind=kind)
    except (psutil.AccessDenied, OSError):
        # macOS lets only root list every socket: our tree's listener is all we can see, and
        # (the caller asks once a connection was accepted there) anything else is a stranger.
        return Claim(Verdict.OURS) if ours else Claim(Verdict.OTHERS, (Holder(),))
    tree = set(_tree(pid))
    others = tuple(
        dict.fromkeys(
            Holder(conn.pid, _name(conn.pid)) if conn.pid else Holder()
            for conn in everyone
            if _psutil_matches(conn, address)
            and conn.pid not in tree
            and not (conn.pid and _same_session(conn.pid, pid))
        )
    )
    if others:
        return Claim(Verdict.OTHERS, others)
    return Claim(Verdict.OURS) if ours else Claim(Verdict.NOT_LISTENING)


def who_listens(address: Address, pid: int) -> Claim:
    """Whose listening socket is at ``address``: the tree of process ``pid`` (the worker),
    another program's, nobody's, or (where the platform cannot tell) unknown. Blocking; meant
    to be asked once a connection to ``address`` was accepted."""
    if os.path.isdir(f"{_PROC}/self/fd"):
        try:
            return _claim_proc(address, pid)
        except OSError:
            pass
    try:
        return _claim_psutil(address, pid)
    except (psutil.Error, OSError, NotImplementedError):
        return Claim(Verdict.UNKNOWN)
