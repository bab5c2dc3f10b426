"""Logging set-up for the host process.

Two streams:

- ``corral.*`` (server events, backend errors, worker output) to stderr: ``time level logger:
  message``, at the ``log_level`` setting's level (``LEVELS``);
- ``corral.access``: the access log, one line per response in the format the front chooses
  (``corral.front.accesslog``), unadorned and buffered (``AccessLogHandler``: written out at
  least twice a second): to stderr (``-``), to a file (appended to; ``reopen_access_log`` opens
  it again at its path, for logrotate's SIGUSR1), or nowhere (``off``: the front then skips
  every bit of its work).

``setup`` may be called again (a reload that changes the settings): the previous handlers write
out what they hold and their files are closed.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

logger = logging.getLogger("corral")

#: The ``log_level`` setting's values.
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: ``access_log``: stderr, and no access log at all.
STDERR = "-"
OFF = "off"


def setup(
    *,
    level: int | str = logging.INFO,
    access_log: TextIO | str | None = sys.stderr,
    stream: TextIO = sys.stderr,
) -> None:
    """Configure both loggers. ``access_log``: a stream, a file's path (``-``: ``stream``;
    ``off``: none), or None (none). ``OSError`` when the file cannot be opened (then nothing
    has changed)."""
    if isinstance(level, str):
        level = LEVELS[level]
    destination: AccessLogHandler | None = None
    if isinstance(access_log, str) and access_log not in (STDERR, OFF):
        destination = AccessLogHandler(open_log(access_log), access_log)
    elif access_log == STDERR:
        destination = AccessLogHandler(stream)
    elif access_log is not None and not isinstance(access_log, str):
        destination = AccessLogHandler(access_log)

    root = logging.getLogger("corral")
    _remove_handlers(root)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False

    access = logging.getLogger("corral.access")
    _remove_handlers(access)
    access.propagate = False
    if destination is None:
        access.setLevel(logging.CRITICAL + 1)
        access.disabled = True
        return
    access.disabled = False
    access.addHandler(destination)
    access.setLevel(logging.INFO)


def _remove_handlers(target: logging.Logger) -> None:
    for handler in list(target.handlers):
        target.removeHandler(handler)
        handler.flush()
        if isinstance(handler, AccessLogHandler):
            handler.close()


def open_log(path: str) -> TextIO:
    """A log file, appended to (line-buffering is the handler's: it writes batches)."""
    return open(path, "a", encoding="utf-8", errors="backslashreplace")


def reopen_access_log() -> str:
    """Open the access log's file again at its path (after logrotate renamed it): what it
    holds goes to the old file first, so no line is lost. Returns what was done, for the log;
    ``OSError`` when the file cannot be opened (the old one stays in use)."""
    done = []
    for handler in logging.getLogger("corral.access").handlers:
        if isinstance(handler, AccessLogHandler):
            done.append(handler.reopen())
    return "; ".join(done) or "no access log"


class AccessLogHandler(logging.Handler):
    """Writes access-log lines to a stream, buffered.

    The front hands it finished lines (``write_line``) without building a LogRecord per request;
    lines reach the stream when 256 are waiting, on the front's twice-a-second sweep, and at
    exit (``flush``). Records logged the ordinary way are formatted and buffered the same way.
    With a ``path``, the stream is that file, and ``reopen`` opens it again.
    """

    def __init__(self, stream: TextIO, path: str | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.path = path
        self._lines: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def write_line(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= 256:
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        lines = self._lines
        if not lines:
            return
        self._lines = []
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:
            # stderr closed or broken, a full disk: the access log is best effort.
            if self.path is not None:
                logger.error("access log %s: %d lines lost: %s", self.path, len(lines), exc)

    def reopen(self) -> str:
        """Write out what is waiting, then open the file at ``path`` anew and close the old
        one. ``OSError`` (the old stream stays)."""
        self.flush()
        if self.path is None:
            return "the access log goes to stderr: nothing to reopen"
        stream = open_log(self.path)
        old, self.stream = self.stream, stream
        try:
            old.close()
        except OSError:
            pass
        return f"access log reopened: {self.path}"

    def close(self) -> None:
        self.flush()
        if self.path is not None:
            try:
                self.stream.close()
            except OSError:
                pass
        super().close()
