"""The web console's page and its files (``assets/``: package data, read once).

The page (``console.html``) names its files and its WebSocket by absolute paths below the
console's URL (``__BASE__``), so it works at ``/console`` and ``/console/`` alike.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources

#: The files served under ``CONSOLE_URL/assets/``, with their types.
_TYPES = {
    "xterm.js": b"text/javascript; charset=utf-8",
    "addon-fit.js": b"text/javascript; charset=utf-8",
    "console.js": b"text/javascript; charset=utf-8",
    "xterm.css": b"text/css; charset=utf-8",
    "console.css": b"text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes


class Assets:
    """The console's files, read once from the package."""

    def __init__(self) -> None:
        folder = resources.files("corral.console").joinpath("assets")
        self._page = folder.joinpath("console.html").read_text("utf-8")
        self._files = {
            name: Asset(folder.joinpath(name).read_bytes(), kind) for name, kind in _TYPES.items()
        }

    def page(self, base: str, app: str, folder: str) -> bytes:
        """The page for the console at URL path ``base`` of application ``app``."""
        return (
            self._page.replace("__BASE__", html.escape(base))
            .replace("__TITLE__", html.escape(f"{app}: console"))
            .replace("__APP__", html.escape(app))
            .replace("__FOLDER__", html.escape(folder))
            .encode("utf-8")
        )

    def file(self, name: str) -> Asset | None:
        return self._files.get(name)
