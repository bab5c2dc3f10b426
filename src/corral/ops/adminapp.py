"""What the admin listener answers (the ``Handler`` of ``ops.adminserver``).

    GET  /healthz          open: 200 "ok" (the process is alive and its event loop turns)
    GET  /readyz           open: 200 "ready", or 503 and why (``ops.readiness``)
    GET  /metrics          open, or Bearer metrics token: Prometheus text (``ops.metrics``)
    GET  /                 admin token: the dashboard (``?token=`` logs in: cookie + redirect)
    GET  /assets/NAME      open: the dashboard's CSS, script and icon
    GET  /api/status       admin token: the dashboard's document (JSON)
    GET  /events           admin token: that document every second (server-sent events)
    POST /api/restart      admin token + CSRF: {"app": ID}: a rolling restart
    POST /api/scale        admin token + CSRF: {"app": ID, "min": N, "max": N}

Tokens and CSRF: ``ops.token``. Action answers are JSON ``{"ok": bool, "message": str}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from typing import Final

from corral.ops.adminserver import AdminRequest, Reply
from corral.ops.dashboard import Assets, dashboard_state, event
from corral.ops.hostview import AdminHost
from corral.ops.logtail import LogTail
from corral.ops.metrics import CONTENT_TYPE, Metrics
from corral.ops.readiness import readiness
from corral.ops.token import CSRF_FIELD, TokenGuard, check_metrics, without_param

JSON: Final = b"application/json"
HTML: Final = b"text/html; charset=utf-8"
#: The dashboard loads its own script and style only, and talks to its own origin only.
CSP: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Seconds between two events of the dashboard's stream.
TICK: Final = 1.0
_GET = (b"GET", b"HEAD")
_PAGES = (b"/healthz", b"/readyz", b"/metrics", b"/", b"/events", b"/api/status")


class AdminApp:
    def __init__(
        self,
        host: AdminHost,
        guard: TokenGuard,
        metrics_token: Callable[[], str | None],
        tail: LogTail,
        title: str,
    ) -> None:
        self._host = host
        self._guard = guard
        self._metrics_token = metrics_token
        self._metrics = Metrics(host)
        self._tail = tail
        self._title = title
        self._assets = Assets()

    async def __call__(self, request: AdminRequest) -> Reply:
        head = request.head
        path = head.path
        if path in _PAGES and head.method not in _GET:
            return _method(b"GET, HEAD")
        if path == b"/healthz":
            return Reply(200, b"ok\n")
        if path == b"/readyz":
            ready = readiness(self._host.status())
            return Reply(200 if ready.ready else 503, ready.body())
        if path == b"/metrics":
            if not check_metrics(self._metrics_token(), head.get(b"authorization")):
                return Reply(
                    401, b"a metrics token is required\n", headers=[_challenge("corral-metrics")]
                )
            return Reply(200, self._metrics.render(), CONTENT_TYPE.encode())
        if path.startswith(b"/assets/"):
            asset = self._assets.file(path[8:].decode("latin-1"))
            if asset is None or head.method not in _GET:
                return Reply(404, b"not found\n")
            return Reply(200, asset.body, asset.content_type)
        if path in (b"/", b"/events", b"/api/status", b"/api/restart", b"/api/scale"):
            return await self._private(request)
        return Reply(404, b"not found\n")

    async def _private(self, request: AdminRequest) -> Reply:
        head = request.head
        guard = self._guard
        cookies = head.get_all(b"cookie")
        if head.path == b"/" and b"token" in head.query and guard.login(head.query):
            return Reply(
                303,
                b"",
                headers=[
                    (b"Location", without_param(head.path, head.query, "token").encode()),
                    (b"Set-Cookie", guard.login_cookie()),
                ],
            )
        if head.path in (b"/api/restart", b"/api/scale"):
            refused = guard.action_refusal(
                head.method,
                head.get(b"authorization"),
                cookies,
                head.get(CSRF_FIELD),
                head.get(b"origin"),
                head.host,
            )
            if refused is not None:
                status, message = refused
                extra = [(b"Allow", b"POST")] if status == 405 else []
                return _answer(status, False, message, extra)
            return await self._action(head.path, request.body)
        if not guard.authenticated(head.get(b"authorization"), cookies):
            if head.path == b"/":
                wrong = b"token" in head.query
                message = (
                    "That token is not the admin token."
                    if wrong
                    else "The dashboard needs the admin token."
                )
                return Reply(
                    401, self._assets.login(message), HTML, [_challenge("corral-admin"), _csp()]
                )
            return Reply(401, b"the admin token is missing or wrong\n", headers=[_challenge()])
        if head.path == b"/":
            return Reply(200, self._assets.page(guard.csrf, self._title), HTML, [_csp()])
        if head.path == b"/api/status":
            return Reply(200, json.dumps(self._state()).encode(), JSON)
        return Reply(200, content_type=b"text/event-stream; charset=utf-8", stream=self._events())

    def _state(self) -> dict[str, object]:
        return dashboard_state(self._host, self._tail, asyncio.get_running_loop().time())

    async def _events(self) -> AsyncGenerator[bytes, None]:
        yield b"retry: 2000\n\n"
        while True:
            yield event(self._state())
            await asyncio.sleep(TICK)

    async def _action(self, path: bytes, body: bytes) -> Reply:
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            return _answer(400, False, "the body is not JSON")
        if not isinstance(fields, dict) or not isinstance(fields.get("app"), str):
            return _answer(400, False, 'say which application: {"app": ID}')
        ident: str = fields["app"]
        try:
            if path == b"/api/restart":
                return _answer(200, True, await self._host.restart_app(ident))
            low, high = fields.get("min"), fields.get("max")
            for value in (low, high):
                if value is not None and (type(value) is not int or value < 0):
                    return _answer(400, False, "min and max are whole numbers ≥ 0")
            assert low is None or isinstance(low, int)
            assert high is None or isinstance(high, int)
            return _answer(200, True, self._host.scale_app(ident, low, high))
        except LookupError as exc:
            return _answer(404, False, str(exc.args[0]) if exc.args else str(exc))
        except ValueError as exc:
            return _answer(400, False, str(exc))


def _answer(
    status: int, ok: bool, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> Reply:
    body = json.dumps({"ok": ok, "message": message}).encode()
    return Reply(status, body, JSON, headers or [])


def _method(allow: bytes) -> Reply:
    return Reply(405, b"method not allowed\n", headers=[(b"Allow", allow)])


def _challenge(realm: str = "corral-admin") -> tuple[bytes, bytes]:
    return (b"WWW-Authenticate", f'Bearer realm="{realm}"'.encode())


def _csp() -> tuple[bytes, bytes]:
    return (b"Content-Security-Policy", CSP)
