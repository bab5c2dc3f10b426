"""What a new configuration changes (pure), and which files to watch for one.

On SIGHUP, or when a configuration file changes, the host reads its configuration again and
``plan_reload(old, new)`` sorts the applications by their key (site, virtual path, name):

* unchanged: left alone (their workers, connections and deploy state untouched);
* changed (anything that reaches a worker or the routing: environment, engine, command, limits,
  handlers, Zoo variables): started anew beside the old one, which retires once the new one is
  ready (the host carries this out: a rolling restart across the configuration change);
* added: started; removed: drained, then stopped.

Sites as files (``[server] include``): a site file or folder that appears, changes or goes
reloads the configuration like any other file; ``corral.config.load`` keeps a refused file's
sites as they were, so its applications come out unchanged here and are left alone.

Where a value was written (file and line) is not a change: adding a comment to web.config
restarts nothing. ``listen_changed`` tells the host that the addresses to listen on differ (it
cannot rebind without a restart and says so).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace

from corral.config.model import AppConfig, EngineConfig, ServerConfig
from corral.runtime.watchrules import Change

AppKey = tuple[str, str, str]

#: File names whose appearance or change in a watched folder means the configuration changed.
CONFIG_NAMES = frozenset({"web.config", "corral.toml", ".zoo", "applicationhost.config"})


def app_key(app: AppConfig) -> AppKey:
    return (app.site, app.virtual_path, app.name)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    added: tuple[AppKey, ...]
    removed: tuple[AppKey, ...]
    changed: tuple[AppKey, ...]
    unchanged: tuple[AppKey, ...]
    listen_changed: bool

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [
            f"{len(items)} {what}"
            for what, items in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
                ("unchanged", self.unchanged),
            )
            if items
        ]
        return ", ".join(parts) or "no applications"


def _engine_essence(engine: EngineConfig) -> EngineConfig:
    return replace(
        engine, location=None, env=tuple(replace(var, location=None) for var in engine.env)
    )


def essence(app: AppConfig) -> AppConfig:
    """The application without where its values were written (locations) or what
    ``corral check`` says about it."""
    return replace(
        app,
        location=None,
        notices=(),
        not_in_effect=(),
        handlers=tuple(replace(h, location=None) for h in app.handlers),
        engine=_engine_essence(app.engine),
    )


def plan_reload(
    old: ServerConfig, new: ServerConfig, running: Iterable[AppConfig] | None = None
) -> ReloadPlan:
    """What changes from ``old`` to ``new``. ``running``: the applications as they actually
    run, when that differs from ``old`` (a changed application whose new configuration could
    not start still runs its previous one)."""
    before = {app_key(app): app for app in (old.apps if running is None else running)}
    after = {app_key(app): app for app in new.apps}
    added = tuple(key for key in after if key not in before)
    removed = tuple(key for key in before if key not in after)
    changed: list[AppKey] = []
    unchanged: list[AppKey] = []
    for key, app in after.items():
        if key in before:
            (unchanged if essence(before[key]) == essence(app) else changed).append(key)
    return ReloadPlan(
        added=added,
        removed=removed,
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        listen_changed=set(old.listen_addresses()) != set(new.listen_addresses()),
    )


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """The configuration's files and the folders they (and new ones) may appear in."""

    files: frozenset[str]
    folders: tuple[str, ...]
    #: The include patterns (absolute): a file or folder one matches is a site file or folder.
    patterns: tuple[str, ...] = ()

    def classify(self, path: str) -> Change | None:
        """A change that means the configuration may have changed, else None."""
        if path in self.files or os.path.basename(path).lower() in CONFIG_NAMES:
            return Change.OTHER
        if any(included(path, pattern) for pattern in self.patterns):
            return Change.OTHER
        if any(path == os.path.dirname(pattern) for pattern in self.patterns):
            return Change.OTHER  # the include folder itself appeared (then it is watched)
        return None


def included(path: str, pattern: str) -> bool:
    """Whether an include pattern matches ``path`` as ``glob`` does (a hidden name only when
    the pattern's own name starts with a dot)."""
    name, wanted = os.path.basename(path), os.path.basename(pattern)
    return (
        os.path.dirname(path) == os.path.dirname(pattern)
        and (not name.startswith(".") or wanted.startswith("."))
        and fnmatch.fnmatchcase(name, wanted)
    )


def config_files(config: ServerConfig) -> ConfigFiles:
    """The files a configuration was read from, every mount's folder (a web.config may
    appear there) and the folders of the include patterns (a site file may appear there)."""
    files = {os.path.abspath(path) for path in config.sources}
    folders = {os.path.dirname(path) for path in files}
    for site in config.sites:
        for mount in site.mounts:
            folders.add(mount.physical_path)
    folders.update(os.path.dirname(pattern) for pattern in config.include_patterns)
    return ConfigFiles(
        frozenset(files),
        tuple(sorted(f for f in folders if os.path.isdir(f))),
        config.include_patterns,
    )
