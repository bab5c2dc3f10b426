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

from corral.front.accesslog import AccessLogHandler


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
