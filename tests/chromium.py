"""Headless Chromium (Debian's `chromium`) for tests that look at a page as a browser renders it.

    from tests.chromium import Page, dump_dom, screenshot

    dom = dump_dom(f"http://127.0.0.1:{port}/")        # the DOM after load, scripts run
    page = Page(dom)                                     # title, visible text, table rows
    assert page.title == "..." and page.rows["Worker pid"] == str(pid)
    screenshot(url, tmp_path / "page.png")               # to look at it (the file tool shows PNGs)

Every run gets its own throw-away profile, touches no network but the URL it is given (no
component updates, sync, QUIC or background fetches), runs in its own process group, and is
killed with that group if it outlives its time limit. Missing `chromium` skips the test, or
fails it under CORRAL_REQUIRE_EXTERNAL=1 (see `require_program`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from tests.conftest import require_program

#: Upper bound for one Chromium run (seconds); it takes about one on an idle machine.
TIMEOUT = 90.0

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    """The path of Debian's chromium (skips, or fails under CORRAL_REQUIRE_EXTERNAL=1)."""
    return require_program("chromium")


def run(url: str, *flags: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium on ``url`` with extra ``flags``; its process group dies with it."""
    program = chromium()
    with tempfile.TemporaryDirectory(prefix="corral-chromium-") as profile:
        proc = subprocess.Popen(
            [program, *FLAGS, f"--user-data-dir={profile}", *flags, url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            raise AssertionError(
                f"chromium did not finish {url} within {timeout:g} s:\n"
                + err.decode("utf-8", "replace")[-2000:]
            ) from None
        finally:
            _kill_group(proc.pid)  # renderer or zygote processes left behind, if any
    if proc.returncode != 0:
        raise AssertionError(
            f"chromium exited with {proc.returncode} on {url}:\n"
            + err.decode("utf-8", "replace")[-2000:]
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def dump_dom(url: str, *, timeout: float = TIMEOUT) -> str:
    """The page's DOM as Chromium serializes it after the load event."""
    return run(url, "--dump-dom", timeout=timeout).stdout.decode("utf-8", "replace")


def screenshot(
    url: str, path: Path, *, width: int = 1280, height: int = 900, timeout: float = TIMEOUT
) -> Path:
    """Save a PNG of the page as a ``width`` x ``height`` window shows it; returns ``path``."""
    run(
        url,
        f"--screenshot={path}",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        timeout=timeout,
    )
    if not path.is_file() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"chromium wrote no PNG at {path}")
    return path


class Page(HTMLParser):
    """What a person sees of a DOM: its title, its visible text, headings and table rows.

    ``rows`` maps each table row's header cell (``<th>``) to the text of its first data cell
    (``<td>``), in document order, the first occurrence winning.
    """

    _INVISIBLE = frozenset({"script", "style", "head", "template", "noscript"})

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.headings: list[str] = []
        self.rows: dict[str, str] = {}
        self.preformatted: list[str] = []
        self._text: list[str] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._row_header: str | None = None
        self.feed(dom)
        self.close()
        self.text = " ".join(" ".join(self._text).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"br", "hr", "img", "meta", "link", "input"}:
            return
        self._stack.append(tag)
        if tag in {"th", "td", "h1", "h2", "h3", "pre", "title"}:
            self._cell = []
        if tag == "tr":
            self._row_header = None

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._stack:
            return
        while self._stack and self._stack.pop() != tag:
            pass
        if self._cell is None or tag not in {"th", "td", "h1", "h2", "h3", "pre", "title"}:
            return
        raw = "".join(self._cell)
        text = " ".join(raw.split())
        self._cell = None
        if tag == "title":
            self.title = text
        elif tag == "pre":
            self.preformatted.append(raw)
        elif tag == "th":
            self._row_header = text
        elif tag == "td":
            if self._row_header is not None and self._row_header not in self.rows:
                self.rows[self._row_header] = text
            self._row_header = None
        else:
            self.headings.append(text)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if not self._INVISIBLE.intersection(self._stack):
            self._text.append(data)
