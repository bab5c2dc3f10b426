"""What one application's processes are confined to: their user, groups and hard limits. Policy.

Plain, frozen data and pure functions (no I/O: the user lookups are ``identity``'s, the cgroup
files ``cgroups``', the spawning ``process``'): from the configuration's ``Tenancy`` and what the
machine offers (``Mechanism``), ``Confinement`` says which user, groups, HOME and TMPDIR a worker
gets, which cgroup values its application's group has, and which rlimits each process gets.

Which mechanism enforces which limit (docs/tenants.md):

=================  ===========================  ===========================  ==================
limit              cgroup v2                    cgroup v1                    neither (rlimits)
=================  ===========================  ===========================  ==================
memory_hard_limit  memory.max (all processes)   memory.limit_in_bytes        RLIMIT_AS per proc
cpu_quota          cpu.max                      cpu.cfs_quota_us             not enforced
max_processes      pids.max                     pids.max                     RLIMIT_NPROC (user)
max_open_files     RLIMIT_NOFILE per process    RLIMIT_NOFILE                RLIMIT_NOFILE
=================  ===========================  ===========================  ==================
"""

from __future__ import annotations

import enum
import hashlib
import re
import resource
from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024
#: cpu.max / cpu.cfs_period_us: the period the quota is a share of (the kernel's default).
CPU_PERIOD_US = 100_000


class Mechanism(enum.StrEnum):
    """What enforces an application's limits on this machine."""

    CGROUP_V2 = "cgroup v2"
    CGROUP_V1 = "cgroup v1"
    RLIMITS = "rlimits"

    @property
    def cgroups(self) -> bool:
        return self is not Mechanism.RLIMITS


@dataclass(frozen=True, slots=True)
class RunAs:
    """A user an application runs as, looked up in the passwd and group databases."""

    user: str
    uid: int
    gid: int
    #: Supplementary groups (the user's, as initgroups gives them).
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits of one application (0 = none)."""

    memory_mb: int = 0
    #: Percent of one core.
    cpu_percent: int = 0
    max_processes: int = 0
    max_open_files: int = 0

    @property
    def any(self) -> bool:
        return bool(self.memory_mb or self.cpu_percent or self.max_processes or self.max_open_files)


@dataclass(frozen=True, slots=True)
class Confinement:
    """What every worker (and deploy script) of one application is started under."""

    #: None: the user Corral runs as.
    run_as: RunAs | None = None
    limits: Limits = Limits()
    mechanism: Mechanism = Mechanism.RLIMITS
    #: The application's cgroup folders (one per hierarchy: one under v2, one per controller
    #: under v1); the child moves itself into each before it drops privileges.
    cgroup_dirs: tuple[str, ...] = ()
    #: Its private temporary folder (TMPDIR), owned by ``run_as``, mode 0700.
    tmpdir: str | None = None


def cgroup_values(limits: Limits, mechanism: Mechanism) -> dict[str, tuple[tuple[str, str], ...]]:
    """The files to write in an application's cgroup: controller -> ((file, value), ...).

    Under v2 there is one group (controller ""); under v1 one per controller (memory, cpu,
    pids). Limits that are 0 are written as "no limit", so that a changed configuration that
    removes one takes effect in a group that already exists.
    """
    memory = str(limits.memory_mb * MIB) if limits.memory_mb else None
    quota = limits.cpu_percent * CPU_PERIOD_US // 100 if limits.cpu_percent else None
    pids = str(limits.max_processes) if limits.max_processes else None
    if mechanism is Mechanism.CGROUP_V2:
        return {
            "": (
                ("memory.max", memory or "max"),
                ("cpu.max", f"{quota if quota else 'max'} {CPU_PERIOD_US}"),
                ("pids.max", pids or "max"),
            )
        }
    if mechanism is Mechanism.CGROUP_V1:
        return {
            "memory": (("memory.limit_in_bytes", memory or "-1"),),
            "cpu": (
                ("cpu.cfs_period_us", str(CPU_PERIOD_US)),
                ("cpu.cfs_quota_us", str(quota) if quota else "-1"),
            ),
            "pids": (("pids.max", pids or "max"),),
        }
    return {}


def rlimits(limits: Limits, mechanism: Mechanism) -> tuple[tuple[int, int], ...]:
    """(resource, value) pairs each process gets, soft = hard: open files always; memory (as
    address space) and processes (of the user) only where no cgroup counts them."""
    result: list[tuple[int, int]] = []
    if limits.max_open_files:
        result.append((resource.RLIMIT_NOFILE, limits.max_open_files))
    if not mechanism.cgroups:
        if limits.memory_mb:
            result.append((resource.RLIMIT_AS, limits.memory_mb * MIB))
        if limits.max_processes:
            result.append((resource.RLIMIT_NPROC, limits.max_processes))
    return tuple(result)


def enforcement(limits: Limits, mechanism: Mechanism) -> tuple[str, ...]:
    """How each limit that is set is enforced, in words (``corral check``, the start log)."""
    said: list[str] = []
    if limits.memory_mb:
        how = {
            Mechanism.CGROUP_V2: "cgroup v2 memory.max, all processes together",
            Mechanism.CGROUP_V1: "cgroup v1 memory.limit_in_bytes, all processes together",
            Mechanism.RLIMITS: "RLIMIT_AS, address space per process (no cgroups)",
        }[mechanism]
        said.append(f"memory_hard_limit {limits.memory_mb} MB: {how}")
    if limits.cpu_percent:
        how = {
            Mechanism.CGROUP_V2: "cgroup v2 cpu.max",
            Mechanism.CGROUP_V1: "cgroup v1 cpu.cfs_quota_us",
            Mechanism.RLIMITS: "NOT ENFORCED (no cgroups)",
        }[mechanism]
        said.append(f"cpu_quota {limits.cpu_percent}%: {how}")
    if limits.max_processes:
        how = (
            f"{mechanism.value} pids.max"
            if mechanism.cgroups
            else "RLIMIT_NPROC, counted per user across the machine (no cgroups)"
        )
        said.append(f"max_processes {limits.max_processes}: {how}")
    if limits.max_open_files:
        said.append(f"max_open_files {limits.max_open_files}: RLIMIT_NOFILE per process")
    return tuple(said)


def worker_env(env: Mapping[str, str], confinement: Confinement | None) -> dict[str, str]:
    """The worker's environment: ``env`` with the user's HOME, USER and LOGNAME, and the
    private TMPDIR (the host's own would otherwise leak through ``os.environ``)."""
    result = dict(env)
    if confinement is None:
        return result
    if confinement.run_as is not None:
        result["HOME"] = confinement.run_as.home
        result["USER"] = result["LOGNAME"] = confinement.run_as.user
    if confinement.tmpdir is not None:
        for name in ("TMPDIR", "TMP", "TEMP"):
            result[name] = confinement.tmpdir
    return result


def group_name(label: str) -> str:
    """A file name for an application's label (``site:/path:name``): readable, and unique by
    a short hash of the whole label."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.")[:60] or "app"
    return f"{slug}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def root_app_problem(run_as: RunAs | None, corral_uid: int) -> bool:
    """Whether an application would run as root: no user of its own while Corral is root, or
    a user whose uid is 0."""
    if run_as is None:
        return corral_uid == 0
    return run_as.uid == 0
