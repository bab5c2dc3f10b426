"""Headless Chromium driven over the DevTools protocol, for tests that use a live page: click a
button, wait until the page shows something, take a screenshot at a given width.

    with Browser(url) as page:
        page.wait_for("document.querySelectorAll('section.app').length == 1")
        page.evaluate("document.querySelector('button').click()")
        page.screenshot(path, width=390, height=844)   # a phone

Like ``tests.chromium``: a throw-away profile, no network but loopback, its own process group
killed at the end; missing ``chromium`` skips (fails under CORRAL_REQUIRE_EXTERNAL=1). The
DevTools WebSocket is spoken with ``tests.wsclient`` (no Corral code, no library).
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.chromium import FLAGS, _kill_group, chromium
from tests.wsclient import TEXT, WebSocket

WAIT = 30.0


class Browser:
    def __init__(self, url: str, *, width: int = 1280, height: int = 900) -> None:
        self.url = url
        self.size = (width, height)
        self._profile = tempfile.TemporaryDirectory(prefix="corral-cdp-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: WebSocket | None = None
        self._id = 0

    def __enter__(self) -> Browser:
        program = chromium()
        profile = self._profile.name
        width, height = self.size
        self._proc = subprocess.Popen(
            [
                program,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "--hide-scrollbars",
                self.url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port = self._devtools_port(Path(profile) / "DevToolsActivePort")
            self._ws = WebSocket(port, self._page_path(port), host="127.0.0.1", timeout=WAIT)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.sock.close()
            except OSError:
                pass
            self._ws = None
        if self._proc is not None:
            _kill_group(self._proc.pid)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None
        self._profile.cleanup()

    def _devtools_port(self, file: Path) -> int:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self._proc.returncode}")
            try:
                return int(file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.1)
        raise AssertionError("chromium did not open its DevTools port")

    def _page_path(self, port: int) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.loads(r.read())
            for target in targets:
                if target.get("type") == "page" and "webSocketDebuggerUrl" in target:
                    url: str = target["webSocketDebuggerUrl"]
                    return "/" + url.split("/", 3)[3]
            time.sleep(0.1)
        raise AssertionError("chromium has no page to drive")

    def call(self, method: str, **params: object) -> dict[str, object]:
        """One DevTools command; its result (events in between are skipped)."""
        assert self._ws is not None
        self._id += 1
        ident = self._id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            opcode, payload = self._ws.receive()
            if opcode != TEXT:
                continue
            message = json.loads(payload)
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, object] = message["result"]
                return result

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        inner = result["result"]
        assert isinstance(inner, dict)
        return inner.get("value")

    def wait_for(self, expression: str, timeout: float = WAIT) -> object:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except AssertionError as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.2)
        raise AssertionError(f"never true: {expression} (last: {last!r})")

    def screenshot(self, path: Path, *, width: int, height: int, mobile: bool = False) -> Path:
        """A PNG of the whole page laid out ``width`` CSS pixels wide (``mobile``: as a phone)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=2 if mobile else 1,
            mobile=mobile,
        )
        time.sleep(0.5)  # a layout and the next event's render
        full = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        assert isinstance(full, int | float)
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": max(height, full), "scale": 1},
        )
        data = shot["data"]
        assert isinstance(data, str)
        path.write_bytes(base64.b64decode(data))
        return path
