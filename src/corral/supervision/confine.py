"""One pool's confinement at run time: its application's cgroup and private TMPDIR, made when
its first worker starts and removed when the pool closes, and its memory-limit kills. Mechanism.

The ``Confinement`` data each spawn carries (``LaunchPlan.confinement``) comes from ``ready``;
the child applies it between fork and exec (``process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from corral.supervision import identity
from corral.supervision.cgroups import AppCgroup, CgroupError, Hierarchy
from corral.supervision.identity import IdentityError
from corral.supervision.tenancy import Confinement, Limits, RunAs, group_name

_log = logging.getLogger("corral.supervision")

#: How a worker the kernel killed for its application's memory limit is described.
OOM_REASON = "killed by the memory limit (cgroup)"


class ConfineError(OSError):
    """The application's cgroup or TMPDIR could not be made: its workers cannot start."""


class Confiner:
    """The user, groups, limits, cgroup and TMPDIR of one pool's workers."""

    def __init__(
        self,
        label: str,
        *,
        server: str,
        run_as: RunAs | None,
        limits: Limits,
        hierarchy: Hierarchy,
    ) -> None:
        self.label = label
        self.run_as = run_as
        self.limits = limits
        self._server = server
        self._name = group_name(label)
        self.cgroup: AppCgroup | None = None
        if hierarchy.mechanism.cgroups and (limits.any or run_as is not None):
            self.cgroup = AppCgroup(hierarchy, server, self._name)
        self._data = Confinement(
            run_as=run_as,
            limits=limits,
            mechanism=hierarchy.mechanism,
            cgroup_dirs=self.cgroup.paths if self.cgroup is not None else (),
        )
        self._prepared = False
        self._oom_seen = 0

    def ready(self) -> Confinement:
        """Make (once) the TMPDIR and (each time: a reload may change the limits, and a tmp
        cleaner may remove nothing here) the cgroup with its limits; the data a spawn needs."""
        try:
            if self.cgroup is not None:
                self.cgroup.apply(self.limits)
            if not self._prepared:
                if self.run_as is not None:
                    tmpdir = identity.make_tmpdir(self._server, self._name, self.run_as)
                    self._data = replace(self._data, tmpdir=tmpdir)
                self._oom_seen = self.oom_kills()
                self._prepared = True
        except (CgroupError, IdentityError, OSError) as exc:
            raise ConfineError(f"cannot confine {self.label}: {exc}") from None
        return self._data

    def socket_parent(self) -> str | None:
        """Where the pool's socket folder goes: under Corral's tenant folder for an application
        with a user (a folder the front owns, so that it can remove what it gave away)."""
        if self.run_as is None:
            return None
        try:
            return identity.tenant_folder(self._server, "run")
        except (IdentityError, OSError) as exc:
            raise ConfineError(f"cannot make the socket folder of {self.label}: {exc}") from None

    def hand_over(self, socket_dir: str) -> None:
        """Give the pool's socket folder to the application's user (group: the front's)."""
        if self.run_as is not None:
            identity.hand_over_socket_dir(socket_dir, self.run_as)

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    def killed_by_limit(self, returncode: int) -> bool:
        """Whether a worker that ended with ``returncode`` was the kernel's memory-limit kill
        (SIGKILL, and the group's OOM-kill counter moved since the last exit looked)."""
        if self.cgroup is None or returncode != -9:
            return False
        now = self.oom_kills()
        moved = now > self._oom_seen
        self._oom_seen = now
        return moved

    def close(self) -> None:
        """Remove the TMPDIR and (once its processes are gone) the cgroup. Never blocks: a
        group not yet empty is retried from a thread."""
        tmpdir = self._data.tmpdir
        if tmpdir is not None:
            identity.remove_tmpdir(tmpdir)
            self._data = replace(self._data, tmpdir=None)
            self._prepared = False
        cgroup = self.cgroup
        if cgroup is None or cgroup.remove(within=0):
            return
        with contextlib.suppress(RuntimeError):  # no running loop: left for the next start
            asyncio.get_running_loop().run_in_executor(None, cgroup.remove, 2.0)
