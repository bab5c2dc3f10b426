"""An application's web console as the front serves it: who may open it, and what each URL
below ``CONSOLE_URL`` answers.

``Console`` is the ``InProcess`` of the application's console route (``front.routes``): the
front hands it each request for the console's URLs, and it returns the ``Upstream`` that
answers it in-process (no pool, no worker):

- ``CONSOLE_URL`` (or with a slash): the page (``console.page``);
- ``CONSOLE_URL/assets/NAME``: the page's files (xterm.js...);
- ``CONSOLE_URL/ws``: the WebSocket to a new shell session (``console.terminal``).

Who may: every request, from anywhere (loopback clients included: a console is a shell),
must carry the admin token (``ops.token.TokenGuard``: ``Authorization: Bearer``, or the cookie a
``?token=`` login sets, here for the console's path only, so that the token never reaches the
application itself). Otherwise 403. A switchboard that disables ``console`` refuses every
request (403) whatever the token. The WebSocket handshake must also come from the console's
own origin (``Origin`` is the request's own scheme and host, as a trusted proxy reports them
when there is one; browsers always send it), so that no other site's page can drive a browser
that holds the cookie (cross-site WebSocket hijacking).
"""

from __future__ import annotations

import html
import logging

from corral.backends import Upstream
from corral.console.page import Assets
from corral.console.terminal import SessionSpec, TerminalSocket
from corral.front.errorpages import error_body
from corral.front.fixed import FixedResponse
from corral.ops.token import TokenGuard, query_param, without_param
from corral.protocol import websocket as ws
from corral.protocol.http1.events import Request

logger = logging.getLogger("corral.console")

_HTML = b"text/html; charset=utf-8"
_NO_STORE = (b"Cache-Control", b"no-store")
_PAGE_POLICY = (
    b"Content-Security-Policy",
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
)
_NO_REFERRER = (b"Referrer-Policy", b"no-referrer")

DISABLED = "The web console is disabled for this site (its switchboard's console entry)."
NO_TOKEN = (
    "This console needs the admin token: send it as Authorization: Bearer, or open this page "
    "once with ?token=... (see docs/console.md)."
)


def answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> FixedResponse:
    """A whole response known in advance (pages, files, refusals), with its Content-Length."""
    return FixedResponse(status, b"", [*headers, (b"Content-Length", b"%d" % len(body))], body)


def page_answer(status: int, message: str) -> FixedResponse:
    body = error_body(status, message)
    return answer(status, [(b"Content-Type", _HTML), _NO_STORE], body)


def same_origin(origin: bytes | None, own: bytes) -> bool:
    """An ``Origin`` field (when sent) is the request's own origin (``forward.origin``: the
    scheme and host its client used, a trusted proxy's word included)."""
    if origin is None:
        return True  # not a browser (browsers always send it on a WebSocket handshake)
    return bool(own) and origin.lower() == own.lower()


class Console:
    """One application's web console (see the module doc): the front's ``InProcess``."""

    def __init__(
        self,
        *,
        base: bytes,
        title: str,
        folder: str,
        guard: TokenGuard | None,
        allowed: bool,
        spec: SessionSpec,
        assets: Assets,
    ) -> None:
        """
        Args:
            base: the console's URL path (the app's virtual path + "/" + CONSOLE_URL).
            title: the application as the page names it.
            folder: the folder the shell starts in (shown on the page).
            guard: the admin token's check; None: there is no token (every request gets 503).
            allowed: the site's switchboard allows the console.
        """
        self.base = base
        self._title = title
        self._folder = folder
        self._guard = guard
        self._allowed = allowed
        self._spec = spec
        self._assets = assets

    def respond(self, request: Request, path_info: bytes, client: str, origin: bytes) -> Upstream:
        tls = origin.startswith(b"https:")
        if not self._allowed:
            return page_answer(403, DISABLED)
        guard = self._guard
        if guard is None:
            return page_answer(503, "The console has no admin token to check (see the log).")
        if request.query and query_param(request.query, "token") is not None:
            return self._login(guard, request, tls)
        if not guard.authenticated(request.get(b"authorization"), request.get_all(b"cookie")):
            logger.warning(
                "app %s: console request from %s without the admin token: 403",
                self._spec.app,
                client,
                extra={"app": self._spec.app},
            )
            return page_answer(403, NO_TOKEN)
        if path_info == b"/ws":
            return self._socket(request, client, origin)
        if request.method not in (b"GET", b"HEAD"):
            return answer(405, [(b"Allow", b"GET, HEAD"), (b"Content-Type", _HTML)], b"")
        if path_info in (b"", b"/"):
            base = self.base.decode("utf-8", "surrogateescape")
            body = self._assets.page(base, self._title, self._folder)
            headers = [(b"Content-Type", _HTML), _NO_STORE, _PAGE_POLICY, _NO_REFERRER]
            return answer(200, headers, body)
        if path_info.startswith(b"/assets/"):
            asset = self._assets.file(path_info[len(b"/assets/") :].decode("latin-1"))
            if asset is not None:
                headers = [(b"Content-Type", asset.content_type), (b"Cache-Control", b"private")]
                return answer(200, headers, asset.body)
        return page_answer(404, "No such page in the console.")

    def _login(self, guard: TokenGuard, request: Request, tls: bool) -> Upstream:
        """``?token=``: the right one sets the cookie (for the console's path) and redirects
        to the same URL without it; a wrong one is refused."""
        if not guard.login(request.query):
            logger.warning(
                "app %s: console login with a wrong token: 403",
                self._spec.app,
                extra={"app": self._spec.app},
            )
            return page_answer(403, "Wrong token.")
        location = without_param(request.path, request.query, "token").encode("latin-1")
        cookie = guard.login_cookie(tls, path=self.base.decode("latin-1"))
        body = f'<a href="{html.escape(location.decode("latin-1"))}">the console</a>\n'
        headers = [
            (b"Location", location),
            (b"Set-Cookie", cookie),
            (b"Content-Type", _HTML),
            _NO_STORE,
            _NO_REFERRER,
        ]
        return answer(303, headers, body.encode())

    def _socket(self, request: Request, client: str, own: bytes) -> Upstream:
        if request.upgrade is None:
            return page_answer(400, "This is the console's WebSocket: ask for an Upgrade.")
        if not same_origin(request.get(b"origin"), own):
            logger.warning(
                "app %s: console WebSocket from %s with a foreign Origin %r: 403",
                self._spec.app,
                client,
                (request.get(b"origin") or b"").decode("latin-1"),
                extra={"app": self._spec.app},
            )
            return page_answer(403, "Cross-origin WebSocket refused.")

        def text(name: bytes) -> str | None:
            value = request.get(name)
            return None if value is None else value.decode("latin-1")

        try:
            accept = ws.check_request(
                request.method.decode("latin-1"),
                text(b"upgrade"),
                text(b"connection"),
                text(b"sec-websocket-key"),
                text(b"sec-websocket-version"),
            )
        except ws.HandshakeError as exc:
            if exc.status == 426:
                return answer(426, [(b"Sec-WebSocket-Version", b"13")], b"")
            return page_answer(exc.status, str(exc))
        return TerminalSocket(self._spec, accept, client)
