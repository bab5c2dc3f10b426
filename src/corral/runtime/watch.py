"""Watching an application's files: which changes matter (pure rules) and the watcher (mechanism).

``WatchRules.classify(path)`` says what a changed path means to the application:

* ``Change.TRIGGER``: the trigger file, ``restart.txt`` in the application's root (touch it to
  restart the application in production, with or without WATCH_FILE_CHANGES_MASK);
* ``Change.MASKED``: a file matching WATCH_FILE_CHANGES_MASK (``*.py``, ``*.py;*.ini``...),
  anywhere under the root. A mask without ``/`` matches a file's name, one with ``/`` its path
  relative to the root; matching ignores case, as on Zoo's Windows;
* ``Change.OTHER``: any other file of the application (this matters while its deploy script has
  failed: a change to the script or to the app's files retries it);
* None: not the application's business: the error-log folder, the deploy log, virtualenvs,
  ``__pycache__``, version-control folders and editors' temporary files.

``FileWatcher`` runs ``watchfiles.awatch`` (inotify / FSEvents in a Rust thread, so the event
loop never blocks) over folders and hands each batch of classified changes to a callback: an
application's root (recursively when it has masks or a deploy script, else only the root's own
entries, which is where restart.txt is), or the configuration files' folders (the host's
reload). What to do about the changes (restart, redeploy, reload) is the caller's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fnmatch
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import watchfiles

_log = logging.getLogger("corral.runtime.watch")

#: Touching this file in the application's root restarts the application.
TRIGGER_FILE = "restart.txt"

#: Folder names never watched, wherever they are.
IGNORED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".tox", "node_modules"}
)
#: File-name suffixes never watched (bytecode, editors' swap and backup files).
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".swo", "~", ".tmp")

#: Changes are gathered for at most this long (ms) before they are handed on, and handed on
#: once none came for ``STEP_MS``: an editor saving several files causes one restart.
DEBOUNCE_MS = 1000
STEP_MS = 100


class Change(enum.Enum):
    TRIGGER = "trigger"
    MASKED = "masked"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class WatchRules:
    """What the changes under one application's root mean (pure: no file-system access)."""

    root: str
    masks: tuple[str, ...] = ()
    #: Absolute folders whose contents are ignored (error logs, virtualenvs).
    excluded_dirs: tuple[str, ...] = ()
    #: Absolute files ignored (the deploy log).
    excluded_files: tuple[str, ...] = ()
    trigger: str = TRIGGER_FILE
    #: Watch every file under the root even without masks (a deploy script's retry needs it).
    watch_all: bool = False

    def classify(self, path: str) -> Change | None:
        """What a change to ``path`` (absolute) means; None when it does not matter."""
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return None
        if path in self.excluded_files:
            return None
        for folder in self.excluded_dirs:
            if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
                return None
        parts = rel.split(os.sep)
        if any(part in IGNORED_DIRS for part in parts[:-1]):
            return None
        name = parts[-1]
        if name in IGNORED_DIRS or name.endswith(IGNORED_SUFFIXES):
            return None
        if rel == self.trigger:
            return Change.TRIGGER
        if self.matches(rel):
            return Change.MASKED
        return Change.OTHER

    def matches(self, rel: str) -> bool:
        """True when the root-relative path ``rel`` matches one of the masks."""
        rel_lower = rel.replace(os.sep, "/").lower()
        name_lower = rel_lower.rsplit("/", 1)[-1]
        for mask in self.masks:
            pattern = mask.replace("\\", "/").lower().lstrip("/")
            subject = rel_lower if "/" in pattern else name_lower
            if fnmatch.fnmatchcase(subject, pattern):
                return True
        return False


def find_virtualenvs(root: str, depth: int = 2) -> list[str]:
    """Folders under ``root`` (down to ``depth`` levels) that are virtualenvs (hold pyvenv.cfg)."""
    found: list[str] = []

    def scan(folder: str, level: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False) or entry.name in IGNORED_DIRS:
                continue
            if os.path.isfile(os.path.join(entry.path, "pyvenv.cfg")):
                found.append(entry.path)
            elif level < depth:
                scan(entry.path, level + 1)

    scan(root, 1)
    return found


#: Receives one batch of changes: (what it means, absolute path) pairs.
OnChanges = Callable[[list[tuple[Change, str]]], Awaitable[None] | None]
#: What a changed path means; None: ignore it.
Classify = Callable[[str], "Change | None"]


class FileWatcher:
    """Watches folders (recursively, or only their own entries) and hands each batch of
    classified changes to ``on_changes``."""

    def __init__(
        self,
        roots: Sequence[str],
        classify: Classify,
        on_changes: OnChanges,
        *,
        recursive: bool = True,
        name: str = "",
    ) -> None:
        self.roots = tuple(roots)
        self.name = name or ", ".join(self.roots)
        self._classify = classify
        self._on_changes = on_changes
        self._recursive = recursive
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_app(cls, rules: WatchRules, on_changes: OnChanges, *, name: str = "") -> FileWatcher:
        """An application's watcher: recursive when masks are set (they match at any depth),
        else only the root's own entries (restart.txt)."""
        return cls(
            (rules.root,),
            rules.classify,
            on_changes,
            recursive=bool(rules.masks) or rules.watch_all,
            name=name,
        )

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"corral-watch-{self.name}"
        )

    async def close(self) -> None:
        if self._task is None:
            return
        assert self._stop is not None
        self._stop.set()
        task, self._task = self._task, None
        try:
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _filter(self, change: watchfiles.Change, path: str) -> bool:
        return self._classify(path) is not None

    async def _run(self) -> None:
        assert self._stop is not None
        try:
            async for batch in watchfiles.awatch(
                *self.roots,
                watch_filter=self._filter,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._stop,
                recursive=self._recursive,
                ignore_permission_denied=True,
            ):
                changes = _classified(self._classify, (path for _, path in batch))
                if not changes:
                    continue
                try:
                    outcome = self._on_changes(changes)
                    if outcome is not None:
                        await outcome
                except Exception:
                    _log.exception("%s: handling file changes failed", self.name)
        except FileNotFoundError as exc:
            _log.error("%s: cannot watch: %s", self.name, exc)
        except Exception:
            _log.exception("%s: the file watcher stopped", self.name)


def _classified(classify: Classify, paths: Iterable[str]) -> list[tuple[Change, str]]:
    out: list[tuple[Change, str]] = []
    for path in sorted(set(paths)):
        kind = classify(path)
        if kind is not None:
            out.append((kind, path))
    return out
