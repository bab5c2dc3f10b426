"""The front's privilege drop: from root to its configured user, keeping exactly the
capabilities it needs to start and stop applications as their own users. Mechanism (Linux).

Kept (effective and permitted; everything else leaves the bounding set too, so no child can
ever regain it):

* CAP_SETUID, CAP_SETGID: a worker's or deploy script's child switches to its application's user
  and groups before exec (``process``);
* CAP_KILL: stopping a worker signals its process group, which belongs to another user;
* CAP_CHOWN: each pool's socket folder and private TMPDIR are given to the application's user.

Why capabilities and not a root "spawner" process (docs/security.md): workers stay the front's
children, so the front keeps reaping them, reading their exit status, and watching their
liveness pipes and output pipes as today; a spawner would have to relay all of that over a
socket. The price: code that took over the front could switch to any user (CAP_SETUID), root
included, exactly as it could by asking a spawner that obeys the front. The capabilities are
cleared in each application's process by the kernel at exec (its uid is not 0, it has no file
capabilities, the ambient set stays empty), and ``PR_SET_NO_NEW_PRIVS`` is set in it.

The sequence: ``prctl(PR_SET_KEEPCAPS, 1)``, drop the other capabilities from the bounding set,
``setgroups`` (the user's groups), ``setresgid``, ``setresuid`` (permitted caps survive thanks to
KEEPCAPS, the effective set is emptied), ``capset`` (effective = permitted = the kept ones),
``prctl(PR_SET_KEEPCAPS, 0)``.
"""

from __future__ import annotations

import ctypes
import os
import sys

from corral.supervision.identity import IdentityError
from corral.supervision.tenancy import RunAs

CAP_CHOWN = 0
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
#: What the front keeps after the drop.
KEPT = (CAP_CHOWN, CAP_KILL, CAP_SETGID, CAP_SETUID)
KEPT_NAMES = "CAP_CHOWN, CAP_KILL, CAP_SETGID, CAP_SETUID"

_PR_CAPBSET_DROP = 24
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(IdentityError):
    """The drop could not be done (not Linux, not root, a system call refused)."""


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise PrivilegeError("dropping privileges while keeping capabilities needs Linux")
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"{what}: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 40


def capabilities(pid: int | str = "self") -> dict[str, int]:
    """CapEff, CapPrm, CapBnd... of a process, from /proc (for logs and tests)."""
    result: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("Cap"):
                name, _, value = line.partition(":")
                result[name] = int(value.strip(), 16)
    return result


def drop_to(run_as: RunAs) -> None:
    """Become ``run_as`` (its groups, gid and uid: real, effective and saved), keeping ``KEPT``.

    Call it from the main thread before other threads start (capset applies to the calling
    thread; threads made later inherit its capabilities)."""
    if os.geteuid() != 0:
        raise PrivilegeError("only root can drop to another user")
    libc = _libc()
    _check(libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    for cap in range(_last_cap() + 1):
        if cap not in KEPT:
            _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    try:
        os.setgroups(list(run_as.groups))
        os.setresgid(run_as.gid, run_as.gid, run_as.gid)
        os.setresuid(run_as.uid, run_as.uid, run_as.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to user {run_as.user}: {exc.strerror}") from None
    mask = sum(1 << cap for cap in KEPT)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)(_Data(mask, mask, 0), _Data(0, 0, 0))
    _check(libc.capset(ctypes.byref(header), data), "capset")
    _check(libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS, 0)")
    os.environ["HOME"] = run_as.home
    os.environ["USER"] = os.environ["LOGNAME"] = run_as.user
