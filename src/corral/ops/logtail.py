"""The last lines Corral logged for each application, kept in memory for the dashboard.

The records tagged with an application (``extra={"app": LABEL}``: its workers' output and
tracebacks, the pool's lifecycle events, deploy runs) are exactly what ``ERROR_LOG_DIR/<app>.log``
receives (``runtime.errorlog``); ``LogTail`` is a handler on the ``corral`` logger that keeps the
last ``KEEP`` lines of each, whether or not an error log folder is set. The dashboard shows this
tail rather than reading the files: no file I/O near the event loop, and the same view with or
without ERROR_LOG_DIR. Lines logged before the admin listener started are not in it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Final

#: Lines kept per application, and the longest line kept (longer ones are cut).
KEEP: Final = 60
LINE: Final = 400


def log_key(site: str, virtual_path: str, name: str) -> str:
    """The ``app`` a record is tagged with (``engines.app_label``: ``site:/path:name``)."""
    return f"{site}:{virtual_path}:{name}"


class LogTail(logging.Handler):
    """Keeps the tail of every application's records (attach with ``attach``)."""

    def __init__(self, keep: int = KEEP) -> None:
        super().__init__(logging.INFO)
        self._keep = keep
        self._lines: dict[str, deque[str]] = {}
        self._logger: logging.Logger | None = None

    def attach(self, logger: logging.Logger) -> None:
        self._logger = logger
        logger.addHandler(self)

    def detach(self) -> None:
        if self._logger is not None:
            self._logger.removeHandler(self)
            self._logger = None

    def emit(self, record: logging.LogRecord) -> None:
        app = record.__dict__.get("app")  # records carry it only when tagged with an app
        if not isinstance(app, str):
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break logging
            return
        if record.exc_info and record.exc_info[1] is not None:
            message += f"\n{record.exc_info[1]!r}"
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        ring = self._lines.get(app)
        if ring is None:
            ring = self._lines[app] = deque(maxlen=self._keep)
        level = "" if record.levelno == logging.INFO else f"{record.levelname} "
        for line in message.splitlines() or [""]:
            ring.append(f"{stamp} {level}{line[:LINE]}")

    def tail(self, key: str, lines: int = KEEP) -> list[str]:
        ring = self._lines.get(key)
        if not ring:
            return []
        return list(ring)[-lines:]
