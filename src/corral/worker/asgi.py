"""ASGI 3 machinery: scopes from FastCGI params, lifespan, and one HTTP or WebSocket request's
cycle (``receive`` / ``send``). Transport-free: a cycle talks to its FastCGI request through a
:class:`Channel` (implemented by ``aserver.py``), and the server pushes the request's input into
it (``on_stdin``, ``on_stdin_end``, ``on_disconnect``). Stdlib only.

HTTP: the body streams in ``http.request`` messages as STDIN records arrive (the connection
stops reading past ``BODY_HIGH_WATER`` unread bytes); the head leaves with the first
``http.response.body`` (with a Content-Length when that first body is also the last); a
``more_body=False`` body ends the FastCGI request at once (END_REQUEST), even if the application
goes on (background tasks), so the front can reuse the connection. ``receive()`` returns
``http.disconnect`` once the response is complete or the request is gone (ABORT_REQUEST, the
connection closed, the body cut short); ``send()`` then raises :class:`ClientDisconnected`
(an ``OSError``).

WebSocket (scope type ``websocket`` for a GET with ``Upgrade: websocket``): the handshake is
checked first (a bad one is answered 400/426 without calling the application). ``accept`` sends
``Status: 101`` with ``Upgrade``, ``Connection`` and ``Sec-WebSocket-Accept``; from then on the
request's STDIN carries the client's raw bytes and STDOUT ours, framed by
``corral.protocol.websocket``. Pings are answered here; ``close`` before ``accept`` is a 403
(or the application's own answer through the ``websocket.http.response`` extension). The
request ends (END_REQUEST) once the closing handshake is done, the client is gone, or
``CLOSE_TIMEOUT`` after our close frame.
"""

from __future__ import annotations

import asyncio
import http
import re
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

from corral.protocol import websocket as ws
from corral.worker.wsgi import ERROR_BODY, ERROR_HEAD, ClientDisconnected, development_page
from corral.worker.wsgi import log_error as log  # one stderr writer for both interfaces

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}
#: Unread request-body bytes at which the connection stops reading (resumes below half).
BODY_HIGH_WATER = 256 * 1024
#: Unread WebSocket messages at which the connection stops reading.
MESSAGES_HIGH_WATER = 64
#: After our close frame, how long to wait for the client's before ending the request (s).
CLOSE_TIMEOUT = 5.0

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_FORBIDDEN_403 = b"Status: 403 Forbidden\r\nContent-Length: 0\r\n\r\n"


class Channel(Protocol):
    """What a request cycle needs from its FastCGI request (``aserver.RequestChannel``)."""

    #: The request has ended (END_REQUEST sent) or its connection is gone.
    ended: bool

    def write(self, data: bytes) -> None:
        """Send STDOUT bytes (no-op once ended)."""

    async def drain(self) -> None:
        """Wait while the connection's send buffer is full. Raises ClientDisconnected when the
        connection is gone."""

    def end(self, app_status: int = 0, *, close: bool = False) -> None:
        """END_REQUEST (once); ``close``: then close the connection (a WebSocket tunnel)."""

    def pause_input(self) -> None: ...

    def resume_input(self) -> None: ...


# --------------------------------------------------------------------------------------------
# scopes


def _decode_path(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _header_name(cgi_name: bytes) -> bytes:
    return cgi_name[5:].lower().replace(b"_", b"-")


def build_scope(params: Iterable[tuple[bytes, bytes]], state: dict[str, Any] | None) -> Scope:
    """The ``http`` scope for a request from its FastCGI params (``type`` is switched to
    ``websocket`` by the caller). Header values are bytes as the front sent them; names are the
    CGI names turned back into lowercase HTTP names (``HTTP_X_FOO`` -> ``x-foo``)."""
    env: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    for name, value in params:
        env[name] = value
        if name.startswith(b"HTTP_"):
            if name not in (b"HTTP_CONTENT_TYPE", b"HTTP_CONTENT_LENGTH"):
                headers.append((_header_name(name), value))
        elif name == b"CONTENT_TYPE":
            if value:
                headers.append((b"content-type", value))
        elif name == b"CONTENT_LENGTH" and value:
            headers.append((b"content-length", value))
    script_name = env.get(b"SCRIPT_NAME", b"").rstrip(b"/")
    path_info = env.get(b"PATH_INFO", b"")
    if not path_info.startswith(b"/"):
        path_info = b"/" + path_info
    root_path = _decode_path(script_name)
    uri = env.get(b"REQUEST_URI")
    raw_path = uri.partition(b"?")[0] if uri else script_name + path_info
    protocol = env.get(b"SERVER_PROTOCOL", b"HTTP/1.1").decode("latin-1")
    version = protocol.partition("/")[2] or "1.1"
    if version == "2.0":
        version = "2"
    https = env.get(b"HTTPS", b"").lower() in (b"on", b"1", b"yes", b"true")
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_INFO,
        "http_version": version,
        "method": env.get(b"REQUEST_METHOD", b"GET").decode("latin-1").upper(),
        "scheme": "https" if https else "http",
        "path": root_path + _decode_path(path_info),
        "raw_path": raw_path,
        "query_string": env.get(b"QUERY_STRING", b""),
        "root_path": root_path,
        "headers": headers,
        "client": _address(env.get(b"REMOTE_ADDR"), env.get(b"REMOTE_PORT")),
        "server": _address(
            env.get(b"SERVER_ADDR") or env.get(b"SERVER_NAME"), env.get(b"SERVER_PORT")
        ),
        "extensions": {},
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def _address(host: bytes | None, port: bytes | None) -> tuple[str, int] | None:
    if not host:
        return None
    number = int(port) if port and port.isdigit() else 0
    return (host.decode("latin-1"), number)


def content_length(params_env: Scope) -> int | None:
    """The request's Content-Length from its scope headers; None when absent. ValueError when
    malformed."""
    for name, value in params_env["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(f"malformed CONTENT_LENGTH {value[:40]!r}")
            return int(value)
    return None


def is_websocket(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"upgrade":
            return b"websocket" in value.lower()
    return False


def _header(scope: Scope, wanted: bytes) -> str | None:
    values = [value for name, value in scope["headers"] if name == wanted]
    if not values:
        return None
    return b", ".join(values).decode("latin-1")


# --------------------------------------------------------------------------------------------
# responses


def _head(status: object, headers: object, extra: bytes = b"") -> bytes:
    """A CGI response head from ASGI ``status`` and ``headers`` (validated: a bad name or a
    value with a line break raises ValueError, never reaching the wire)."""
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"invalid ASGI response status {status!r}")
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    parts = [b"Status: %d %s\r\n" % (status, phrase.encode("ascii"))]
    for item in headers or ():  # type: ignore[attr-defined]
        name, value = item
        name = bytes(name)
        value = bytes(value)
        if _TOKEN.match(name) is None:
            raise ValueError(f"invalid response header name {name[:40]!r}")
        if _BAD_VALUE.search(value) is not None:
            raise ValueError(f"response header {name.decode()!r}: control character in value")
        parts.append(name + b": " + value + b"\r\n")
    parts.append(extra)
    parts.append(b"\r\n")
    return b"".join(parts)


def _has_length(headers: object) -> bool:
    return any(bytes(name).lower() == b"content-length" for name, _ in headers or ())  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# HTTP


class HTTPCycle:
    """One ``http`` request: its ``receive`` and ``send`` (see the module docstring)."""

    def __init__(
        self, scope: Scope, channel: Channel, length: int | None, *, debug: bool = False
    ) -> None:
        self.scope = scope
        self.channel = channel
        self.head_only = scope["method"] == "HEAD"
        #: An exception gets the development page (``debugpage.wanted_params``).
        self.debug = debug
        self._body: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self._remaining = length
        self._body_done = length == 0
        self._final_sent = False  # the http.request with more_body=False was delivered
        self.disconnected = False
        self._wake = asyncio.Event()
        self._start: Message | None = None
        self.started = False  # the head has been sent
        self.complete = False

    # -- input from the server ---------------------------------------------------------------

    def on_stdin(self, data: bytes) -> None:
        if self._body_done or self.disconnected:
            return
        remaining = self._remaining
        if remaining is not None:
            if len(data) >= remaining:
                data = data[:remaining]
                self._body_done = True
            self._remaining = remaining - len(data)
        if data:
            self._body.append(data)
            self._queued += len(data)
            if self._queued > BODY_HIGH_WATER and not self._paused:
                self._paused = True
                self.channel.pause_input()
        self._wake.set()

    def on_stdin_end(self) -> None:
        if self._body_done:
            return
        self._body_done = True
        if self._remaining:
            # The stream ended short of CONTENT_LENGTH: the client went away mid-body.
            self.on_disconnect()
        self._wake.set()

    def on_disconnect(self) -> None:
        self.disconnected = True
        self._wake.set()

    # -- the application's side --------------------------------------------------------------

    async def receive(self) -> Message:
        while True:
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self._body:
                data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                self._queued = 0
                if self._paused:
                    self._paused = False
                    self.channel.resume_input()
                last = self._body_done
                self._final_sent = last
                return {"type": "http.request", "body": data, "more_body": not last}
            if self._body_done and not self._final_sent:
                self._final_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self._wake.clear()
            await self._wake.wait()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client went away")
        if self.complete:
            return  # ASGI: messages after the end of the response are ignored
        if kind == "http.response.start":
            if self._start is not None:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 599:
                raise ValueError(f"invalid HTTP response status {status!r} (200..599)")
            _head(status, message.get("headers", ()))  # validate the headers now
            self._start = message
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http scope")
        start = self._start
        if start is None:
            raise RuntimeError("http.response.body before http.response.start")
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        out = b""
        if not self.started:
            self.started = True
            headers = start.get("headers", ())
            extra = b""
            status = start["status"]
            if not more and not _has_length(headers) and status not in (204, 304):
                extra = b"Content-Length: %d\r\n" % len(body)
            out = _head(status, headers, extra)
        if body and not self.head_only:
            out = out + body if out else body
        if out:
            self.channel.write(out)
        if not more:
            self.complete = True
            self._wake.set()
            self.channel.end(0)
            return
        await self.channel.drain()

    async def run(self, app: ASGIApp) -> None:
        where = f"{self.scope['method']} {self.scope['path']}"
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.disconnected:
                return
            if not self.started:
                log(f"{where}: the application failed; answering 500", exc)
                page = None
                if self.debug:
                    page = development_page(exc, self.scope["method"], self.scope["path"])
                if page is not None:
                    self.channel.write(
                        page[: page.index(b"\r\n\r\n") + 4] if self.head_only else page
                    )
                else:
                    self.channel.write(ERROR_HEAD if self.head_only else ERROR_HEAD + ERROR_BODY)
                self.complete = True
                self.channel.end(0)
            elif not self.complete:
                log(f"{where}: the application failed after its response began", exc)
                self.complete = True
                self.channel.end(1)
            else:
                log(f"{where}: the application failed after its response", exc)
            return
        if self.complete or self.disconnected:
            return
        if not self.started:
            log(f"{where}: the application returned without a response; answering 500")
            self.channel.write(ERROR_HEAD if self.head_only else ERROR_HEAD + ERROR_BODY)
            self.complete = True
            self.channel.end(0)
        else:
            log(f"{where}: the application returned before the end of its response")
            self.complete = True
            self.channel.end(1)


# --------------------------------------------------------------------------------------------
# WebSocket


class WebSocketCycle:
    """One ``websocket`` connection over a FastCGI request (see the module docstring)."""

    def __init__(
        self,
        scope: Scope,
        channel: Channel,
        accept: str,
        *,
        max_message_size: int,
        ping_interval: float = 0.0,
    ) -> None:
        self.scope = scope
        self.channel = channel
        self._accept_value = accept
        self.conn = ws.WebSocketConnection(ws.SERVER, max_message_size=max_message_size)
        self._messages: deque[Message] = deque()
        self._paused = False
        self._wake = asyncio.Event()
        self._connect_sent = False
        self.accepted = False
        self.responded = False  # an HTTP answer (403, denial response) instead of a tunnel
        self._response_started = False
        self._close: tuple[int, str] | None = None  # the disconnect to report
        self.finished = False
        self.done = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        #: Keep-alive: a ping every ping_interval seconds once accepted (0: none); a client
        #: that sent nothing at all since the previous ping is gone (1006).
        self._ping_interval = ping_interval
        self._ping_timer: asyncio.TimerHandle | None = None
        self._heard = True

    # -- input from the server ---------------------------------------------------------------

    def on_stdin(self, data: bytes) -> None:
        if self.finished:
            return
        self._heard = True
        try:
            self.conn.receive_data(data)
        except ws.WebSocketError:
            return
        if self.accepted:
            self._pump()

    def on_stdin_end(self) -> None:
        if self.finished:
            return
        self.conn.receive_data(b"")
        if self.accepted:
            self._pump()
        else:
            self.on_disconnect()

    def on_disconnect(self) -> None:
        self._disconnected(ws.CloseCode.ABNORMAL, "")
        self._finish()

    def shutdown(self) -> None:
        """The worker is stopping: close the connection (1012, service restart)."""
        if self.accepted and not self.finished:
            self.channel.write(self.conn.close(ws.CloseCode.SERVICE_RESTART, "server restart"))
            self._disconnected(ws.CloseCode.SERVICE_RESTART, "")
            self._close_timer()
        elif not self.accepted:
            self.on_disconnect()

    def _pump(self) -> None:
        conn = self.conn
        while not self.finished:
            try:
                event = conn.next_event()
            except ws.WebSocketProtocolError as exc:
                self.channel.write(conn.fail(exc))
                self._disconnected(exc.code, exc.reason)
                self._finish()
                return
            kind = type(event)
            if kind is ws.TextMessage:
                self._queue({"type": "websocket.receive", "text": event.data})  # type: ignore[union-attr]
            elif kind is ws.BytesMessage:
                self._queue({"type": "websocket.receive", "bytes": event.data})  # type: ignore[union-attr]
            elif kind is ws.Ping:
                self.channel.write(conn.pong(event.payload))  # type: ignore[union-attr]
            elif kind is ws.CloseReceived:
                code = event.code  # type: ignore[union-attr]
                # Echo the client's code (RFC 6455 5.5.1); 1005 means it sent none.
                self.channel.write(conn.close(code))
                self._disconnected(code, event.reason)  # type: ignore[union-attr]
                self._finish()
                return
            elif event is ws.CLOSED:
                self._disconnected(ws.CloseCode.ABNORMAL, "")
                self._finish()
                return
            elif event is ws.NEED_DATA:
                return
            # Pong: nothing to do.

    def _queue(self, message: Message) -> None:
        self._messages.append(message)
        if len(self._messages) >= MESSAGES_HIGH_WATER and not self._paused:
            self._paused = True
            self.channel.pause_input()
        self._wake.set()

    def _disconnected(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (int(code), reason)
        self._wake.set()

    def _finish(self, app_status: int = 0) -> None:
        """End the FastCGI request (and close its connection: a tunnel is used once)."""
        if self.finished:
            return
        self.finished = True
        self.done.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._paused:
            self._paused = False
            self.channel.resume_input()
        self.channel.end(app_status, close=True)
        self._wake.set()

    async def wait_finished(self) -> None:
        await self.done.wait()

    def _schedule_ping(self) -> None:
        if self._ping_interval > 0 and not self.finished:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.finished or self.conn.close_sent:
            return
        if not self._heard:
            # Not a byte since the last ping (not even its pong): the client is gone.
            self._disconnected(ws.CloseCode.ABNORMAL, "")
            self._finish()
            return
        self._heard = False
        self.channel.write(self.conn.ping(b"corral"))
        self._schedule_ping()

    def _close_timer(self) -> None:
        if self._timer is None and not self.finished:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(CLOSE_TIMEOUT, self._finish)

    # -- the application's side --------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self._messages:
                message = self._messages.popleft()
                if self._paused and len(self._messages) < MESSAGES_HIGH_WATER // 2:
                    self._paused = False
                    self.channel.resume_input()
                return message
            if self._close is not None:
                code, reason = self._close
                return {"type": "websocket.disconnect", "code": code, "reason": reason}
            if self.finished:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            self._wake.clear()
            await self._wake.wait()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self._check_handshake(kind)
            self._send_accept(message)
            return
        if kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.finished or self.conn.close_sent:
                raise ClientDisconnected("the WebSocket is closed")
            text = message.get("text")
            if text is not None:
                self.channel.write(self.conn.send_text(text))
            else:
                data = message.get("bytes")
                if data is None:
                    raise ValueError("websocket.send needs 'text' or 'bytes'")
                self.channel.write(self.conn.send_bytes(data))
            await self.channel.drain()
            return
        if kind == "websocket.close":
            if not self.accepted:
                self._check_handshake(kind)
                self.responded = True
                self.channel.write(_FORBIDDEN_403)
                self._finish()
                return
            if self.finished or self.conn.close_sent:
                return
            code = int(message.get("code") or ws.CloseCode.NORMAL)
            reason = message.get("reason") or ""
            self.channel.write(self.conn.close(code, reason))
            self._close_timer()
            return
        if kind == "websocket.http.response.start":
            self._check_handshake(kind)
            self.responded = True
            self._response_started = True
            self.channel.write(_head(message["status"], message.get("headers", ())))
            return
        if kind == "websocket.http.response.body":
            if not self._response_started or self.finished:
                raise RuntimeError(f"{kind} without websocket.http.response.start")
            body = bytes(message.get("body", b""))
            if body:
                self.channel.write(body)
            if not message.get("more_body", False):
                self._finish()
            else:
                await self.channel.drain()
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket scope")

    def _check_handshake(self, kind: str) -> None:
        if self.accepted or self.responded:
            raise RuntimeError(f"{kind} after the handshake was answered")
        if self.finished:
            raise ClientDisconnected("the client went away before the handshake was answered")

    def _send_accept(self, message: Message) -> None:
        extra = [
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
            + self._accept_value.encode("ascii")
            + b"\r\n"
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            extra.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n")
        self.channel.write(_head(101, message.get("headers", ()), b"".join(extra)))
        self.accepted = True
        self._schedule_ping()
        self._pump()  # frames the client sent right behind its handshake

    async def run(self, app: ASGIApp) -> None:
        where = f"WebSocket {self.scope['path']}"
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.finished:
                return
            if not self.accepted and not self.responded:
                log(f"{where}: the application failed before the handshake; answering 500", exc)
                self.responded = True
                self.channel.write(ERROR_HEAD + ERROR_BODY)
                self._finish()
            elif self.accepted:
                log(f"{where}: the application failed; closing with 1011", exc)
                self.channel.write(self.conn.close(ws.CloseCode.INTERNAL_ERROR))
                self._close_timer()
            else:
                log(f"{where}: the application failed during its HTTP answer", exc)
                self._finish(1)
            return
        if self.finished:
            return
        if not self.accepted and not self.responded:
            # Neither accepted nor closed: refuse, as for websocket.close (ASGI: 403).
            self.responded = True
            self.channel.write(_FORBIDDEN_403)
            self._finish()
        elif self.accepted:
            if not self.conn.close_sent:
                self.channel.write(self.conn.close(ws.CloseCode.NORMAL))
            self._close_timer()
        elif not self.finished:
            log(f"{where}: the application returned before the end of its HTTP answer")
            self._finish(1)


def handshake_error_response(error: ws.HandshakeError) -> bytes:
    """The CGI answer to a bad opening handshake (400, or 426 naming version 13)."""
    body = f"Bad WebSocket handshake: {error.reason}\n".encode()
    extra = b"Sec-WebSocket-Version: 13\r\n" if error.status == 426 else b""
    phrase = http.HTTPStatus(error.status).phrase.encode()
    return (
        b"Status: %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        % (error.status, phrase, len(body))
        + extra
        + b"\r\n"
        + body
    )


def check_handshake(scope: Scope) -> str:
    """``Sec-WebSocket-Accept`` for a websocket scope; raises ws.HandshakeError."""
    return ws.check_request(
        scope["method"],
        _header(scope, b"upgrade"),
        _header(scope, b"connection"),
        _header(scope, b"sec-websocket-key"),
        _header(scope, b"sec-websocket-version"),
    )


def websocket_scope(scope: Scope) -> Scope:
    """Turn an http scope into the websocket scope for the same request."""
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    protocols = _header(scope, b"sec-websocket-protocol")
    scope["subprotocols"] = (
        [p.strip() for p in protocols.split(",") if p.strip()] if protocols else []
    )
    scope["extensions"] = {"websocket.http.response": {}}
    del scope["method"]
    return scope


# --------------------------------------------------------------------------------------------
# lifespan


class LifespanFailed(Exception):
    """The application reported ``lifespan.startup.failed`` (or ``shutdown.failed``)."""


class Lifespan:
    """Runs the application's ``lifespan`` scope. An application that raises before answering
    ``lifespan.startup`` does not support lifespan: it is served without (logged once)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = True
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answer: asyncio.Future[Message] | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._received = False  # the application asked for a lifespan message

    async def _receive(self) -> Message:
        self._received = True
        return await self._inbox.get()

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_INFO, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            self._error = exc

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"unexpected ASGI message {kind!r} in the lifespan scope")
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(message)

    async def _ask(self, kind: str) -> Message | None:
        """Send ``kind``; return the answer, or None when the application's lifespan ended."""
        assert self._task is not None
        self._answer = asyncio.get_running_loop().create_future()
        await self._inbox.put({"type": kind})
        pending: set[asyncio.Future[Any]] = {self._answer, self._task}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        return self._answer.result() if self._answer.done() else None

    async def startup(self) -> None:
        """Raises LifespanFailed with the application's message or error."""
        self._task = asyncio.get_running_loop().create_task(self._main())
        answer = await self._ask("lifespan.startup")
        if answer is None:
            error = self._error
            if error is not None and self._received:
                # It took lifespan.startup and then failed: it cannot start.
                raise LifespanFailed("".join(traceback.format_exception(error)).rstrip()) from error
            self.supported = False
            if error is not None:
                log(
                    "the application does not support the ASGI lifespan protocol "
                    f"({type(error).__name__}: {error}); serving without it"
                )
            return
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailed(answer.get("message") or "lifespan.startup.failed")

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        answer = await self._ask("lifespan.shutdown")
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            log(f"lifespan shutdown failed: {answer.get('message') or ''}")
        elif answer is None and self._error is not None:
            log("lifespan shutdown failed", self._error)
