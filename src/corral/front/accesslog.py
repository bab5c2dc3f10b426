"""Access log in the Combined Log Format, through the ``corral.access`` logger.

``host - - [day/Mon/year:HH:MM:SS +zone] "request line" status bytes "referer" "user agent"``

Fields come from the client as bytes; like Apache, quotes, backslashes and bytes outside
printable ASCII are escaped as ``\\xhh`` so that a log line cannot be forged. The front only calls
in here when the logger is enabled for INFO (checked once at start), so an access log that is off
costs nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from corral.logs import AccessLogHandler
from corral.protocol.http1.events import Request

logger = logging.getLogger("corral.access")


_UNSAFE = re.compile(rb'[^\x20-\x7e]|["\\]')


def _escape_match(match: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % match.group()[0]


def escape(value: bytes | None) -> str:
    if not value:
        return "-"
    if _UNSAFE.search(value):
        value = _UNSAFE.sub(_escape_match, value)
    return value.decode("ascii")


class ClfClock:
    """The ``[10/Oct/2000:13:55:36 +0000]`` field, formatted once per second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
        return self._text


_clock = ClfClock()


def format_line(
    remote: str,
    method: bytes,
    target: bytes,
    version: bytes,
    status: int,
    sent: int,
    referer: bytes | None,
    agent: bytes | None,
) -> str:
    """One Combined Log Format line (without the newline)."""
    return (
        f'{remote} - - {_clock.now()} "{escape(method)} {escape(target)} HTTP/{escape(version)}" '
        f'{status} {sent if sent else "-"} "{escape(referer)}" "{escape(agent)}"'
    )


def log_request(
    remote: str,
    method: bytes,
    target: bytes,
    version: bytes,
    status: int,
    sent: int,
    referer: bytes | None,
    agent: bytes | None,
) -> None:
    """Log one response through the ``corral.access`` logger."""
    logger.info(format_line(remote, method, target, version, status, sent, referer, agent))


def enabled() -> bool:
    return logger.isEnabledFor(logging.INFO)


def writer() -> tuple[Callable[[str], None], Callable[[], None]] | None:
    """A fast way in: ``(write_line, flush)`` when the logger's only destination is a buffered
    ``AccessLogHandler`` (as ``corral.logs.setup`` makes it), else None (use ``log_request``)."""
    handlers = logger.handlers
    if (
        len(handlers) == 1
        and isinstance(handlers[0], AccessLogHandler)
        and not logger.propagate
        and not logger.filters
        and not handlers[0].filters
        and enabled()
    ):
        return handlers[0].write_line, handlers[0].flush
    return None


def request_label(request: Request | None) -> str:
    """A request as an operator's log names it: ``GET /path?query``, escaped like the access
    log (quotes, backslashes and bytes outside printable ASCII as ``\\xhh``), so that a
    target cannot forge a log line."""
    if request is None:
        return "-"
    return f"{escape(request.method)} {escape(request.target[:200])}"
