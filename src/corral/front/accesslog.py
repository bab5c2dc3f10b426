"""The access log's formats, through the ``corral.access`` logger (``corral.logs`` sets it up).

One line per request, in the format the ``access_log_format`` setting names (``FORMATS``):

- ``combined``: Apache's Combined Log Format,
  ``client - - [day/Mon/year:HH:MM:SS +zone] "request line" status bytes "referer" "agent"``;
- ``extended``: the same, then ``"host" "app" duration upstream``: the Host the request named,
  the application that served it (its log label, ``site:/path:name``; ``-`` when none did),
  the request's duration and the application's time, in seconds (``upstream``: from the moment
  a worker was leased to the end of the application's response; ``-`` when no application was
  reached: a static file, a 404, a 503 from a full queue);
- ``json``: one JSON object per line, keys ``time`` (ISO 8601, to the second), ``client``,
  ``method``, ``target``, ``protocol``, ``status``, ``bytes``, ``referer``, ``user_agent``,
  ``host``, ``app``, ``duration``, ``upstream`` (absent values are ``null``).

``client`` is the peer's address, or behind a trusted proxy the client it names. Fields come
from the client as bytes; in the text formats, like Apache, quotes, backslashes and bytes outside
printable ASCII are escaped as ``\\xhh`` so that a log line cannot be forged; in JSON they are
decoded as UTF-8 (invalid bytes as ``\\xhh``) and written as JSON strings (ASCII only).

The front only calls in here when the logger is enabled for INFO (checked at start and on a
reload), so an access log that is off costs nothing. Each format is one function with the same
arguments (``LineFormat``): the front passes what it has at hand and the format takes what it
needs; the clock fields are formatted once per second.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii

from corral.logs import AccessLogHandler
from corral.protocol.http1.events import Request

logger = logging.getLogger("corral.access")


_UNSAFE = re.compile(rb'[^\x20-\x7e]|["\\]')

#: ``json.encoder``'s C string encoder: a JSON string literal, quotes included, ASCII only.
_json_str: Callable[[str], str] = encode_basestring_ascii


def _escape_match(match: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % match.group()[0]


def escape(value: bytes | None) -> str:
    if not value:
        return "-"
    if _UNSAFE.search(value):
        value = _UNSAFE.sub(_escape_match, value)
    return value.decode("ascii")


def json_text(value: bytes | None) -> str:
    """A JSON string literal for bytes from the client (``null`` for none)."""
    if value is None:
        return "null"
    return _json_str(value.decode("utf-8", "backslashreplace"))


class ClfClock:
    """The ``[10/Oct/2000:13:55:36 +0000]`` field, formatted once per second."""

    __slots__ = ("_format", "_second", "_text")

    def __init__(self, format: str = "[%d/%b/%Y:%H:%M:%S %z]") -> None:
        self._format = format
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = time.strftime(self._format, time.localtime(second))
        return self._text


_clock = ClfClock()
#: ISO 8601 with the zone's offset, for JSON (``2026-12-07T10:37:04+0000``).
_iso_clock = ClfClock("%Y-%m-%dT%H:%M:%S%z")

#: One access-log line (without the newline) from: the client's address, the request, the
#: status, the body bytes sent, the Referer and User-Agent fields, the application's label
#: ("" when no application served it), the duration and the application's time (seconds; None
#: when no application was reached).
LineFormat = Callable[
    [str, Request, int, int, bytes | None, bytes | None, str, float, float | None], str
]


def combined(
    remote: str,
    request: Request,
    status: int,
    sent: int,
    referer: bytes | None,
    agent: bytes | None,
    app: str,
    duration: float,
    upstream: float | None,
) -> str:
    """The Combined Log Format."""
    return (
        f'{remote} - - {_clock.now()} "{escape(request.method)} {escape(request.target)} '
        f'HTTP/{request.http_version}" {status} {sent if sent else "-"} "{escape(referer)}" '
        f'"{escape(agent)}"'
    )


#: Application labels as the text formats show them (escaped once; labels come from the
#: configuration, so there are few).
_labels: dict[str, str] = {}


def _label(app: str) -> str:
    text = _labels.get(app)
    if text is None:
        text = escape(app.encode("utf-8"))
        if len(_labels) < 4096:
            _labels[app] = text
    return text


def extended(
    remote: str,
    request: Request,
    status: int,
    sent: int,
    referer: bytes | None,
    agent: bytes | None,
    app: str,
    duration: float,
    upstream: float | None,
) -> str:
    """Combined, then ``"host" "app" duration upstream``."""
    line = combined(remote, request, status, sent, referer, agent, app, duration, upstream)
    return (
        f'{line} "{escape(request.host)}" "{_label(app)}" {duration:.6f} '
        f"{'-' if upstream is None else f'{upstream:.6f}'}"
    )


def json_line(
    remote: str,
    request: Request,
    status: int,
    sent: int,
    referer: bytes | None,
    agent: bytes | None,
    app: str,
    duration: float,
    upstream: float | None,
) -> str:
    """One JSON object."""
    return (
        f'{{"time":"{_iso_clock.now()}","client":{_json_str(remote)},'
        f'"method":{json_text(request.method)},"target":{json_text(request.target)},'
        f'"protocol":"HTTP/{request.http_version}","status":{status},"bytes":{sent},'
        f'"referer":{json_text(referer)},"user_agent":{json_text(agent)},'
        f'"host":{json_text(request.host)},"app":{_json_str(app) if app else "null"},'
        f'"duration":{duration:.6f},'
        f'"upstream":{"null" if upstream is None else f"{upstream:.6f}"}}}'
    )


#: The formats by the name ``access_log_format`` takes.
FORMATS: dict[str, LineFormat] = {"combined": combined, "extended": extended, "json": json_line}


def format_for(name: str) -> LineFormat:
    """The format ``name`` (one of ``FORMATS``; the configuration has checked it)."""
    return FORMATS[name]


def enabled() -> bool:
    return logger.isEnabledFor(logging.INFO)


def writer() -> Callable[[str], None]:
    """How the front writes a finished line: straight into the buffered ``AccessLogHandler``
    when it is the logger's only destination (as ``corral.logs.setup`` makes it), else through
    the logger (``logger.info``: handlers and filters someone else added)."""
    handlers = logger.handlers
    if (
        len(handlers) == 1
        and isinstance(handlers[0], AccessLogHandler)
        and not logger.propagate
        and not logger.filters
        and not handlers[0].filters
    ):
        return handlers[0].write_line
    return logger.info


def flush() -> None:
    """Write out what the access log's handlers hold (the front's twice-a-second sweep)."""
    for handler in logger.handlers:
        handler.flush()


def request_label(request: Request | None) -> str:
    """A request as an operator's log names it: ``GET /path?query``, escaped like the access
    log (quotes, backslashes and bytes outside printable ASCII as ``\\xhh``), so that a
    target cannot forge a log line."""
    if request is None:
        return "-"
    return f"{escape(request.method)} {escape(request.target[:200])}"
