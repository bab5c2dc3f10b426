"""The host's tenants: which user each application runs as and what enforces its limits, the
checks ``corral check`` and ``corral serve`` make of them, and the front's own privilege drop.

* ``Tenants(config, front, server)`` looks every application's user up (an unknown user is a
  configuration error naming file, line and setting), finds what the machine offers for limits
  (``cgroups.detect``), and makes each pool's ``Confiner``.
* ``problems()``: the errors (``ConfigError``) and warnings of the configuration as it would run
  here: an application that would run as root (a warning, or with ``[server] allow_root_apps =
  false`` a refusal), a user Corral cannot switch to (not started as root).
* ``report()``: the lines ``corral check`` prints and ``corral serve`` logs at start: each
  application's user and how each of its limits is enforced.
* ``before_serving()``: once the listeners are bound, make Corral's cgroups and TMPDIR parents
  (given to the front's user), then drop the front to that user (``privileges.drop_to``).
"""

from __future__ import annotations

import logging
import os
import sysconfig
from dataclasses import dataclass

import corral
from corral.config.errors import ConfigError
from corral.config.model import AppConfig, EngineKind, FrontSettings, Location, ServerConfig
from corral.engines import app_label
from corral.errors import CorralError
from corral.supervision import cgroups, identity, privileges
from corral.supervision.cgroups import Hierarchy
from corral.supervision.confine import Confiner
from corral.supervision.identity import IdentityError
from corral.supervision.launch import worker_import_dir
from corral.supervision.tenancy import Limits, Mechanism, RunAs, enforcement

logger = logging.getLogger("corral")


class TenantError(CorralError):
    """The front cannot drop to its user, or Corral's folders cannot be made."""


def limits_of(app: AppConfig) -> Limits:
    t = app.tenancy
    return Limits(t.memory_hard_limit, t.cpu_quota, t.max_processes, t.max_open_files)


def _can_switch_users() -> bool:
    """Root, or a front that kept CAP_SETUID and CAP_SETGID through its drop."""
    if os.geteuid() == 0:
        return True
    try:
        effective = privileges.capabilities().get("CapEff", 0)
    except OSError:
        return False
    needed = (1 << privileges.CAP_SETUID) | (1 << privileges.CAP_SETGID)
    return effective & needed == needed


def _unreadable_code() -> list[str]:
    """The folders of Corral's interpreter and packages this process cannot read."""
    paths = sysconfig.get_paths()
    wanted = [paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]]
    wanted.append(os.path.dirname(os.path.dirname(os.path.abspath(corral.__file__))))
    return [
        path
        for path in dict.fromkeys(wanted)
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK)
    ]


@dataclass(frozen=True, slots=True)
class _App:
    config: AppConfig
    run_as: RunAs | None
    limits: Limits
    #: Where its user is (or would be) set: the user's line, else its site's table.
    where: Location


class Tenants:
    """Every application's user and limits on this machine."""

    def __init__(
        self,
        config: ServerConfig,
        front: FrontSettings,
        server: str,
        *,
        hierarchy: Hierarchy | None = None,
    ) -> None:
        self.front = front
        self.server = server
        self.hierarchy = hierarchy if hierarchy is not None else cgroups.detect()
        self.can_switch = _can_switch_users()
        self._errors: list[ConfigError] = []
        self.front_user: RunAs | None = None
        if front.user:
            try:
                self.front_user = identity.resolve(front.user, front.group)
            except IdentityError as exc:
                self._errors.append(ConfigError(Location("[server]"), "user", str(exc)))
        self._apps: dict[tuple[str, str, str], _App] = {}
        for site in config.sites:
            for app in site.apps:
                where = (
                    app.tenancy.location
                    or site.location
                    or app.location
                    or Location(app.physical_path)
                )
                run_as = None
                if app.tenancy.user:
                    try:
                        run_as = identity.resolve(app.tenancy.user, app.tenancy.group)
                    except IdentityError as exc:
                        self._errors.append(ConfigError(where, "user", str(exc)))
                key = (app.site, app.virtual_path, app.name)
                self._apps[key] = _App(app, run_as, limits_of(app), where)

    @property
    def runs_as_uid(self) -> int:
        """The uid of an application without a user: the front's after its drop."""
        return self.front_user.uid if self.front_user is not None else os.geteuid()

    def problems(self) -> tuple[list[ConfigError], list[str]]:
        """(errors: ``corral serve`` refuses to start; warnings: it says so and starts)."""
        errors = list(self._errors)
        warnings: list[str] = []
        for entry in self._apps.values():
            app, run_as = entry.config, entry.run_as
            if app.engine.kind is EngineKind.SERVICE:
                continue  # nothing of it runs here (tcp.service: a server Corral connects to)
            label = app_label(app)
            if app.tenancy.group and not app.tenancy.user:
                errors.append(
                    ConfigError(
                        entry.where, "group", f"{label} has a group but no user (set user too)"
                    )
                )
                continue
            as_root = run_as.uid == 0 if run_as is not None else self.runs_as_uid == 0
            if run_as is not None and not self.can_switch and run_as.uid != os.geteuid():
                errors.append(
                    ConfigError(
                        entry.where,
                        "user",
                        f"{label} runs as {run_as.user}, but Corral is not running as root "
                        "(only root can start applications as other users)",
                    )
                )
            elif as_root and not self.front.allow_root_apps:
                errors.append(
                    ConfigError(
                        entry.where,
                        "user",
                        f"{label} would run as root ([server] allow_root_apps = false): give "
                        "its site or mount a user",
                    )
                )
            elif run_as is not None:
                warnings += self._reach(app, run_as, label)
            elif as_root:
                warnings.append(
                    f"{label} has no user of its own and runs as root (set user in its site's "
                    "or mount's table; [server] allow_root_apps = false refuses this)"
                )
        return errors, warnings

    @staticmethod
    def _reach(app: AppConfig, run_as: RunAs, label: str) -> list[str]:
        """What the application's user must reach and cannot (a parent folder closed to it)."""
        needed = [("its folder", app.physical_path), ("its working folder", app.current_directory)]
        if app.interpreter:
            needed.append(("its interpreter", app.interpreter))
        if app.engine.kind is EngineKind.PYTHON_WORKER:
            needed.append(("Corral's worker modules", worker_import_dir()))
        said = []
        for what, path in dict.fromkeys(needed):
            blocked = identity.unreachable(path, run_as)
            if blocked is not None:
                said.append(
                    f"{label} runs as {run_as.user}, who cannot reach {blocked} on the way to "
                    f"{what} ({path}): its workers cannot start"
                )
        return said

    def confiner_for(self, app: AppConfig) -> Confiner | None:
        """The pool's confiner; None for an application with neither a user nor limits."""
        entry = self._apps.get((app.site, app.virtual_path, app.name))
        if entry is None or (entry.run_as is None and not entry.limits.any):
            return None
        return Confiner(
            app_label(app),
            server=self.server,
            run_as=entry.run_as,
            limits=entry.limits,
            hierarchy=self.hierarchy,
        )

    def report(self) -> list[str]:
        """Each application's user and how its limits are enforced; the front's user."""
        mechanism = self.hierarchy.mechanism
        lines = [f"limits enforced by: {mechanism.value}"]
        if self.front_user is not None:
            lines.append(
                f"front drops to {self.front_user.user} (uid {self.front_user.uid}) after "
                f"binding, keeping {privileges.KEPT_NAMES}"
            )
        for entry in self._apps.values():
            label = app_label(entry.config)
            user = entry.run_as.user if entry.run_as is not None else "(Corral's own user)"
            lines.append(f"{label}: runs as {user}")
            lines += [f"{label}: {said}" for said in enforcement(entry.limits, mechanism)]
        return lines

    def before_serving(self) -> None:
        """Make Corral's cgroup folders and TMPDIR parents, then drop the front to its user
        (given those folders first, so that it can go on making its applications' groups)."""
        owner = None
        if self.front_user is not None:
            owner = (self.front_user.uid, self.front_user.gid)
        needs_groups = any(
            entry.run_as is not None or entry.limits.any for entry in self._apps.values()
        )
        try:
            if needs_groups and self.hierarchy.mechanism is not Mechanism.RLIMITS:
                cgroups.prepare(self.hierarchy, self.server, owner)
            if any(entry.run_as is not None for entry in self._apps.values()):
                identity.tenant_folder(self.server, "tmp", owner)
                identity.tenant_folder(self.server, "run", owner)
        except OSError as exc:
            raise TenantError(f"cannot prepare the applications' folders: {exc}") from None
        if self.front_user is not None:
            try:
                privileges.drop_to(self.front_user)
            except IdentityError as exc:
                raise TenantError(str(exc)) from None
            self.can_switch = _can_switch_users()
            unreadable = _unreadable_code()
            if unreadable:
                raise TenantError(
                    f"user {self.front_user.user} cannot read {', '.join(unreadable)}: the "
                    "front imports modules as it goes, so Corral and its interpreter must be "
                    "installed where its user can read them (not under /root)"
                )
            logger.info(
                "dropped privileges to %s (uid %d, gid %d), keeping %s",
                self.front_user.user,
                self.front_user.uid,
                self.front_user.gid,
                privileges.KEPT_NAMES,
            )

    def cleanup(self) -> None:
        """Remove Corral's (empty) cgroup folders for this server, where still allowed."""
        for _, folder in self.hierarchy.base(self.server):
            try:
                os.rmdir(folder)
            except OSError:
                continue
