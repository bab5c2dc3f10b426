"""Control groups: find what the machine offers, make one group per application under Corral's,
write its limits, read its OOM kills, remove it. Mechanism (the values are ``tenancy``'s).

Layout: ``<hierarchy>/corral/<server>/<app>`` where ``<hierarchy>`` is ``/sys/fs/cgroup`` under
cgroup v2 (the unified hierarchy, recognised by its ``cgroup.controllers``), or each of
``/sys/fs/cgroup/{memory,cpu,pids}`` under v1 (one hierarchy per controller, as on hosts that
still mount them). ``<server>`` is the server's runtime name (``ops.rundir.name_for``), so that two
Corrals on one machine keep apart. Processes are moved in by the child itself, between fork and
exec, before it drops privileges (``process``): it writes "0" (itself) to ``cgroup.procs`` of
each of the application's groups, so no code of the application ever runs outside its group.

Under v2 the controllers must be enabled in ``cgroup.subtree_control`` of every level above the
application's group (``prepare``); a level that holds processes of its own cannot enable them
(the "no internal processes" rule), which is why Corral's groups are siblings of the front's, not
children. ``CORRAL_CGROUP_ROOT`` overrides ``/sys/fs/cgroup`` (tests), ``CORRAL_CGROUPS=off``
disables cgroups (rlimits only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass

from corral.supervision.tenancy import Limits, Mechanism, cgroup_values

CGROUP_ROOT = "/sys/fs/cgroup"
#: The v1 controllers Corral uses (each its own hierarchy).
V1_CONTROLLERS = ("memory", "cpu", "pids")
#: The v2 controllers Corral enables for its groups.
V2_CONTROLLERS = ("memory", "cpu", "pids")


class CgroupError(OSError):
    """A group could not be made or configured."""


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """The cgroups Corral can use here: the version, and controller -> mount point ("" -> the
    unified hierarchy under v2)."""

    mechanism: Mechanism
    mounts: tuple[tuple[str, str], ...] = ()

    def base(self, server: str) -> tuple[tuple[str, str], ...]:
        """controller -> Corral's folder for ``server`` in each hierarchy."""
        return tuple((c, os.path.join(m, "corral", server)) for c, m in self.mounts)


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def detect(root: str | None = None) -> Hierarchy:
    """What this machine offers: v2 with the memory and pids controllers available, else the
    v1 memory/cpu/pids hierarchies that exist, else nothing (rlimits); a hierarchy this process
    cannot write (not root, nothing delegated) does not count."""
    if os.environ.get("CORRAL_CGROUPS", "").lower() in ("off", "0", "no", "false"):
        return Hierarchy(Mechanism.RLIMITS)
    root = root or os.environ.get("CORRAL_CGROUP_ROOT") or CGROUP_ROOT
    controllers_file = os.path.join(root, "cgroup.controllers")
    if os.path.isfile(controllers_file):
        try:
            with open(controllers_file) as file:
                available = set(file.read().split())
        except OSError:
            available = set()
        if {"memory", "pids"} <= available and _writable(root):
            return Hierarchy(Mechanism.CGROUP_V2, (("", root),))
        return Hierarchy(Mechanism.RLIMITS)
    mounts = tuple(
        (name, os.path.join(root, name))
        for name in V1_CONTROLLERS
        if os.path.isfile(os.path.join(root, name, "cgroup.procs"))
        and _writable(os.path.join(root, name))
    )
    if any(name in ("memory", "pids") for name, _ in mounts):
        return Hierarchy(Mechanism.CGROUP_V1, mounts)
    return Hierarchy(Mechanism.RLIMITS)


def _write(path: str, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


def _enable_controllers(folder: str) -> None:
    """v2: enable Corral's controllers for ``folder``'s children (those it offers)."""
    try:
        with open(os.path.join(folder, "cgroup.controllers")) as file:
            offered = set(file.read().split())
    except OSError:
        return
    wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS if c in offered)
    if wanted:
        _write(os.path.join(folder, "cgroup.subtree_control"), wanted)


def prepare(hierarchy: Hierarchy, server: str, owner: tuple[int, int] | None = None) -> None:
    """Make Corral's folders for ``server`` (``corral/<server>`` in each hierarchy); under v2
    enable the controllers down to them. With ``owner`` (uid, gid), give those folders and
    their files to that user: the front keeps making its applications' groups after it drops
    to it (docs/security.md)."""
    for controller, mount in hierarchy.mounts:
        folder = mount
        for part in ("corral", server):
            if controller == "":
                _enable_controllers(folder)
            folder = os.path.join(folder, part)
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise CgroupError(exc.errno, f"cannot make the cgroup {folder}: {exc}") from None
        if controller == "":
            _enable_controllers(folder)
        if owner is not None:
            os.chown(folder, *owner)
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    os.chown(path, *owner)


class AppCgroup:
    """One application's group in each hierarchy (made and configured by ``apply``)."""

    def __init__(self, hierarchy: Hierarchy, server: str, name: str) -> None:
        self.mechanism = hierarchy.mechanism
        self.dirs: dict[str, str] = {
            controller: os.path.join(base, name) for controller, base in hierarchy.base(server)
        }

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(self.dirs.values())

    def apply(self, limits: Limits) -> None:
        """Make the groups if needed and write the limits (again: a reload may change them)."""
        values = cgroup_values(limits, self.mechanism)
        for controller, folder in self.dirs.items():
            try:
                os.makedirs(folder, exist_ok=True)
                memsw = os.path.join(folder, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):
                    # v1 keeps memory+swap >= memory: lift it first, so that the memory limit
                    # may go up as well as down (a reload), then set it again below.
                    _write(memsw, "-1")
                for name, value in values.get(controller, ()):
                    path = os.path.join(folder, name)
                    if os.path.exists(path):
                        _write(path, value)
                if controller in ("", "memory"):
                    self._no_swap(folder, limits)
            except OSError as exc:
                raise CgroupError(exc.errno, f"cannot set up the cgroup {folder}: {exc}") from None

    def _no_swap(self, folder: str, limits: Limits) -> None:
        """A hard memory limit is not to be escaped into swap (where the kernel accounts it)."""
        if self.mechanism is Mechanism.CGROUP_V2:
            name, value = "memory.swap.max", "0" if limits.memory_mb else "max"
        else:
            name = "memory.memsw.limit_in_bytes"
            value = str(limits.memory_mb * 1024 * 1024) if limits.memory_mb else "-1"
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                _write(path, value)

    def oom_kills(self) -> int:
        """How many processes the kernel killed in the group for its memory limit (v2:
        memory.events oom_kill; v1: memory.oom_control oom_kill)."""
        folder = self.dirs.get("" if self.mechanism is Mechanism.CGROUP_V2 else "memory")
        if folder is None:
            return 0
        name = "memory.events" if self.mechanism is Mechanism.CGROUP_V2 else "memory.oom_control"
        try:
            with open(os.path.join(folder, name)) as file:
                for line in file:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            return 0
        return 0

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.paths:
            with (
                contextlib.suppress(OSError, ValueError),
                open(os.path.join(folder, "cgroup.procs")) as file,
            ):
                found.update(int(line) for line in file if line.strip())
        return found

    def kill_all(self) -> None:
        """SIGKILL every process left in the group (v2: cgroup.kill where the kernel has it)."""
        folder = self.dirs.get("")
        if folder is not None and os.path.exists(os.path.join(folder, "cgroup.kill")):
            with contextlib.suppress(OSError):
                _write(os.path.join(folder, "cgroup.kill"), "1")
                return
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, within: float = 2.0) -> bool:
        """Remove the groups once empty (processes take a moment to leave after they die);
        False when some group still holds processes (a newer pool of the same application
        after a reload: it is left to that pool)."""
        deadline = time.monotonic() + within
        left = dict(self.dirs)
        while left:
            for controller, folder in list(left.items()):
                try:
                    os.rmdir(folder)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        del left[controller]
                        continue
                    if self.pids() or time.monotonic() > deadline:
                        return False
                    continue
                del left[controller]
            if left:
                time.sleep(0.05)
        return True
