"""Watching an application's files (mechanism; which changes matter is ``runtime.watchrules``).

``FileWatcher`` runs ``watchfiles.awatch`` (inotify / FSEvents in a Rust thread, so the event
loop never blocks) over folders and hands each batch of changes, classified by the application's
``WatchRules``, to a callback: an application's root (recursively when it has masks or a deploy
script, else only the root's own entries, which is where restart.txt is), or the configuration
files' folders (the host's reload). What to do about the changes (restart, redeploy, reload) is
the caller's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence

import watchfiles

from corral.runtime.watchrules import IGNORED_DIRS, Change, WatchRules

_log = logging.getLogger("corral.runtime.watch")

#: Changes are gathered for at most this long (ms) before they are handed on, and handed on
#: once none came for ``STEP_MS``: an editor saving several files causes one restart.
DEBOUNCE_MS = 1000
STEP_MS = 100


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
