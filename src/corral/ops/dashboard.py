"""The dashboard's data and files: what the page shows, as one JSON document per tick.

``dashboard_state`` is the status document (``ops.status``, the same figures as ``corral
status`` and ``/metrics``) with, for each application, its request rate, p99 and error rate over
the last ``SERIES_SECONDS`` (points ``SERIES_STEP`` seconds apart, from ``History.series``) and
the tail of its log (``LogTail``); and whether the host is ready (``/readyz``). The page
(``assets/dashboard.html``, ``.css``, ``.js``: package data, no other origin is ever contacted)
draws it and receives a new one every second over server-sent events.

Pure apart from reading the three files once (``Assets``).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from typing import Final

from corral.ops.hostview import AdminHost
from corral.ops.logtail import LogTail, log_key
from corral.ops.readiness import readiness

SERIES_SECONDS: Final = 300.0
SERIES_STEP: Final = 5.0
#: Lines of each application's log shown.
LOG_LINES: Final = 30

#: The files of the page, by the name they are served under (``/assets/NAME``).
_TYPES: Final = {
    "dashboard.css": b"text/css; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
    "favicon.svg": b"image/svg+xml",
}


def dashboard_state(host: AdminHost, tail: LogTail, now: float) -> dict[str, object]:
    """The document the page draws (``now``: the history's clock)."""
    status = host.status()
    ready = readiness(status)
    document = status.to_json()
    apps = document["apps"]
    assert isinstance(apps, tuple | list)
    for app, shown in zip(status.apps, apps, strict=True):
        assert isinstance(shown, dict)
        points = host.history.series(app.id, SERIES_SECONDS, SERIES_STEP)
        shown["series"] = [
            [round(now - p.at, 1), round(p.rate, 3), p.p99, round(p.errors, 3)] for p in points
        ]
        shown["log"] = tail.tail(log_key(app.site, app.virtual_path, app.name), LOG_LINES)
    document["ready"] = ready.ready
    document["not_ready"] = list(ready.reasons)
    return document


def event(document: dict[str, object]) -> bytes:
    """One server-sent event carrying ``document``."""
    return b"event: status\ndata: " + json.dumps(document, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes


class Assets:
    """The page's files, read once from the package."""

    def __init__(self) -> None:
        folder = resources.files("corral.ops").joinpath("assets")
        self._page = folder.joinpath("dashboard.html").read_text("utf-8")
        self._login = folder.joinpath("login.html").read_text("utf-8")
        self._files = {
            name: Asset(folder.joinpath(name).read_bytes(), kind) for name, kind in _TYPES.items()
        }

    def page(self, csrf: str, title: str) -> bytes:
        return (
            self._page.replace("__CSRF__", html.escape(csrf))
            .replace("__TITLE__", html.escape(title))
            .encode("utf-8")
        )

    def login(self, message: str) -> bytes:
        return self._login.replace("__MESSAGE__", html.escape(message)).encode("utf-8")

    def file(self, name: str) -> Asset | None:
        return self._files.get(name)
