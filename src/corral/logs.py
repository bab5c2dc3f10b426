"""Logging set-up for the host process.

Two streams, both to stderr by default:

- ``corral.*`` (server events, backend errors, worker output): ``time level logger: message``;
- ``corral.access``: the access log, one Combined Log Format line per response, unadorned,
  buffered (``AccessLogHandler``: written out at least twice a second).
  ``access_log=None`` turns it off (the front then skips every bit of its work).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


def setup(
    *,
    level: int = logging.INFO,
    access_log: TextIO | None = sys.stderr,
    stream: TextIO = sys.stderr,
) -> None:
    root = logging.getLogger("corral")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False

    access = logging.getLogger("corral.access")
    for handler in list(access.handlers):
        access.removeHandler(handler)
    access.propagate = False
    if access_log is None:
        access.setLevel(logging.CRITICAL + 1)
        access.disabled = True
        return
    access.disabled = False
    access.addHandler(AccessLogHandler(access_log))
    access.setLevel(logging.INFO)


class AccessLogHandler(logging.Handler):
    """Writes access-log lines to a stream, buffered.

    The front hands it finished lines (``write_line``) without building a LogRecord per request;
    lines reach the stream when 256 are waiting, on the front's twice-a-second sweep, and at
    exit (``flush``). Records logged the ordinary way are formatted and buffered the same way.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
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
        except (OSError, ValueError):
            pass  # stderr closed or broken: the access log is best effort
