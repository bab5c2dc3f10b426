"""An application that cannot start: ``CrashLoopTracker`` counts consecutive failed starts,
spaces the next tries (``backoff.StartBackoff``), keeps the last error for the requests it
refuses meanwhile, says when the app is FAILED (gave up), and fingerprints the app's source
files so that a fixed app is tried again at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from corral.supervision.lease import PoolUnavailable
from corral.supervision.settings import PoolSettings

_log = logging.getLogger("corral.supervision.pool")

#: A failed app's source files are scanned at most this often (seconds), and so many at most.
FINGERPRINT_INTERVAL = 1.0
_FINGERPRINT_MAX_FILES = 20000
#: Folders never scanned for an application's source files.
_SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "venv", "env", "log", "logs"}
)


def source_fingerprint(root: str, suffixes: tuple[str, ...]) -> object:
    """What the application's source files under ``root`` look like: every (path, mtime, size)
    of a file ending in one of ``suffixes``, skipping hidden folders, virtualenvs and log
    folders, at most ``_FINGERPRINT_MAX_FILES`` files. Blocking: call it in a thread."""
    lowered = tuple(suffix.lower() for suffix in suffixes)
    seen: list[tuple[str, int, int]] = []
    stack = [root]
    while stack and len(seen) < _FINGERPRINT_MAX_FILES:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        if folder != root and any(e.name == "pyvenv.cfg" for e in entries):
            continue  # a virtualenv
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith(".") and entry.name.lower() not in _SKIP_DIRS:
                        stack.append(entry.path)
                elif entry.name.lower().endswith(lowered):
                    info = entry.stat()
                    seen.append((entry.path, info.st_mtime_ns, info.st_size))
            except OSError:
                continue
    return hash(tuple(sorted(seen)))


async def _fingerprint_in_thread(root: str, suffixes: tuple[str, ...]) -> object:
    return await asyncio.to_thread(source_fingerprint, root, suffixes)


def _consume_exception(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class CrashLoopTracker:
    """Consecutive start failures of one application and what follows from them."""

    def __init__(
        self,
        app: str,
        settings: PoolSettings,
        source_root: str,
        *,
        clock: Callable[[], float],
        fingerprint: Callable[[str, tuple[str, ...]], Awaitable[object]] = _fingerprint_in_thread,
    ) -> None:
        self.app = app
        self.backoff = settings.backoff
        self._suffixes = settings.source_suffixes
        self._root = source_root
        self._clock = clock
        self._scan = fingerprint
        #: Consecutive failed starts, when the next start is due (clock), the last error.
        self.failures = 0
        #: Failed starts since the pool was made (``failures`` counts the consecutive ones).
        self.failed_total = 0
        self.next_start_at = 0.0
        self.last_error: PoolUnavailable | None = None
        #: The app's files when it last failed to start with nothing running, and the last scan.
        self._fingerprint: asyncio.Future[object] | None = None
        self._checked = -1e9

    @property
    def gave_up(self) -> bool:
        """The app is FAILED: so many starts failed in a row that it is tried rarely."""
        return self.backoff.gave_up(self.failures)

    def due(self, now: float) -> bool:
        """Whether a start may be made now (not backing off)."""
        return now >= self.next_start_at

    def retry_in(self, now: float) -> float:
        return max(self.next_start_at - now, 0.0)

    def failed(self, error: PoolUnavailable, *, nothing_runs: bool) -> None:
        """A worker failed to start; ``nothing_runs``: no other worker is starting or ready
        (the app is down: remember its files, so that a change lets the next request retry)."""
        self.failures += 1
        self.failed_total += 1
        self.last_error = error
        backoff = self.backoff
        self.next_start_at = backoff.next_start_at(self.failures, self._clock())
        if not nothing_runs or backoff.retry_on_demand:
            return
        self._fingerprint = asyncio.ensure_future(self._scan(self._root, self._suffixes))
        self._fingerprint.add_done_callback(_consume_exception)
        self._checked = -1e9
        if self.gave_up:
            _log.error(
                "app %s: FAILED after %d failed starts; trying again in %g s, or as soon as "
                "its files change",
                self.app,
                self.failures,
                backoff.delay(self.failures),
                extra={"app": self.app},
            )
        else:
            _log.warning(
                "app %s: next start in %g s (or as soon as its files change)",
                self.app,
                backoff.delay(self.failures),
                extra={"app": self.app},
            )

    def started(self) -> None:
        """A worker became ready: the loop is over."""
        self.forget()
        self._fingerprint = None

    def forget(self) -> None:
        """The code changed (a restart): earlier failures say nothing about it."""
        self.failures = 0
        self.next_start_at = 0.0
        self.last_error = None

    async def admit(self) -> None:
        """A request wakes the dormant app: return when a start may be made now (the next try
        is due, or its files changed since it failed); else raise what the request gets.

        Raises:
            PoolUnavailable: the app is backing off (or FAILED) and its files did not change.
        """
        last = self.last_error
        if last is not None and not self.backoff.retry_on_demand:
            now = self._clock()
            if now < self.next_start_at:
                if not await self._sources_changed():
                    raise self.unavailable(last, now)
                _log.info(
                    "app %s: its files changed since it failed to start; trying again",
                    self.app,
                    extra={"app": self.app},
                )
                self.next_start_at = 0.0
        if self.backoff.retry_on_demand:
            self.next_start_at = 0.0

    def unavailable(self, last: PoolUnavailable, now: float) -> PoolUnavailable:
        """A fresh error for one request (tracebacks must not pile up on one instance)."""
        failures = self.failures
        retry_in = None
        if not self.backoff.retry_on_demand:
            retry_in = self.retry_in(now)
        return PoolUnavailable(
            self.app,
            last.reason,
            last.stderr_tail,
            failures=failures,
            retry_in=retry_in,
            gave_up=self.backoff.gave_up(failures),
        )

    async def _sources_changed(self) -> bool:
        """Whether the app's source files changed since its last failed start (scanned in a
        thread, at most once per ``FINGERPRINT_INTERVAL``)."""
        baseline = self._fingerprint
        if baseline is None:
            return False
        now = self._clock()
        if now - self._checked < FINGERPRINT_INTERVAL:
            return False
        self._checked = now
        try:
            before = await asyncio.shield(baseline)
            current = await self._scan(self._root, self._suffixes)
        except OSError:
            return False
        return current != before
