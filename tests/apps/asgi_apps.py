"""A plain-stdlib ASGI 3 application for the worker's tests (``--app asgi_apps:app``), routed by
path. Lifespan: startup puts ``started`` in the lifespan state; LIFESPAN_MARKER names a file that
gets "startup" and "shutdown" lines; FAIL_STARTUP=1 makes startup fail.

Apps that must leave evidence (a disconnect seen) append to the file named by the ``marker``
query parameter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


def _mark(scope: Scope, text: str) -> None:
    marker = _query(scope).get("marker")
    if marker:
        with open(marker, "a") as f:
            f.write(text + "\n")


async def _respond(
    send: Send, body: bytes, status: int = 200, ctype: bytes = b"text/plain"
) -> None:
    headers = [(b"content-type", ctype)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, data: object, status: int = 200) -> None:
    await _respond(send, json.dumps(data).encode(), status, b"application/json")


_ARRIVED: list[int] = []
_MET = asyncio.Event()


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    def note(text: str) -> None:
        marker = os.environ.get("LIFESPAN_MARKER")
        if marker:
            with open(marker, "a") as f:
                f.write(text + "\n")

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("FAIL_STARTUP") == "1":
                await send({"type": "lifespan.startup.failed", "message": "the database is down"})
                return
            scope["state"]["started"] = time.time()
            scope["state"]["pid"] = os.getpid()
            note("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            note("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"][len(scope["root_path"]) :]
    q = _query(scope)
    if path == "/hello":
        await _respond(send, b"Hello, ASGI!")
    elif path == "/scope":
        shown = {
            k: (v.decode("latin-1") if isinstance(v, bytes) else v)
            for k, v in scope.items()
            if k not in ("headers", "state", "asgi", "extensions")
        }
        shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        shown["asgi"] = scope["asgi"]
        shown["state_keys"] = sorted(scope.get("state", {}))
        await _json(send, shown)
    elif path == "/state":
        await _json(send, {"pid": scope["state"]["pid"], "started": scope["state"]["started"]})
    elif path == "/echo":
        # Stream the body back as it arrives, and count the messages.
        digest = hashlib.sha256()
        messages = 0
        total = 0
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            messages += 1
            digest.update(message["body"])
            total += len(message["body"])
            if not message.get("more_body"):
                break
        await _json(send, {"length": total, "sha256": digest.hexdigest(), "messages": messages})
    elif path == "/upload-echo":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        count = int(q.get("n", "5"))
        size = int(q.get("size", "10"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(count):
            block = bytes([65 + index % 26]) * size
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/rendezvous":
        # Wait (up to 10 s) until n requests are inside the app at once: proof of concurrency
        # that does not depend on timing.
        wanted = int(q["n"])
        _ARRIVED.append(1)
        if len(_ARRIVED) >= wanted:
            _MET.set()
        try:
            await asyncio.wait_for(_MET.wait(), 10)
            await _respond(send, b"met")
        except TimeoutError:
            await _respond(send, b"alone")
    elif path == "/sleep":
        await asyncio.sleep(float(q.get("seconds", "0.5")))
        await _respond(send, b"slept")
    elif path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        _mark(scope, message["type"])
        try:
            await send({"type": "http.response.body", "body": b"late", "more_body": True})
        except OSError as exc:
            _mark(scope, f"send raised {type(exc).__name__}")
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/boom-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after the head")
    elif path == "/nothing":
        return
    elif path == "/bad-header":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb: c")]}
        )
        await send({"type": "http.response.body", "body": b"never"})
    elif path == "/after-response":
        await _respond(send, b"answered")
        await asyncio.sleep(0.3)  # a background task after the response
        _mark(scope, "background done")
    else:
        await _respond(send, b"not found", 404)


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"][len(scope["root_path"]) :]
    message = await receive()
    assert message["type"] == "websocket.connect", message
    if path == "/ws/echo":
        await send({"type": "websocket.accept", "headers": [(b"x-accepted", b"yes")]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                _mark(scope, f"disconnect {message['code']}")
                return
            if message.get("text") is not None:
                if message["text"] == "close-me":
                    await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
                    continue
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif path == "/ws/reject":
        await send({"type": "websocket.close"})
    elif path == "/ws/deny":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"denied"})
    elif path == "/ws/subprotocol":
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[-1] if offered else None})
        await send({"type": "websocket.send", "text": json.dumps(offered)})
        await receive()
    elif path == "/ws/scope":
        await send({"type": "websocket.accept"})
        await send(
            {
                "type": "websocket.send",
                "text": json.dumps(
                    {"scheme": scope["scheme"], "path": scope["path"], "type": scope["type"]}
                ),
            }
        )
        await receive()
    elif path == "/ws/boom":
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom in a websocket")
    else:
        await send({"type": "websocket.close", "code": 1008})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await http_app(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket_app(scope, receive, send)


async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that knows nothing of lifespan (it raises for that scope)."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']}")
    await _respond(send, b"no lifespan here")


class ClassApp:
    """An ASGI app as an object with an async ``__call__`` (detected as ASGI)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _respond(send, b"class app")


class_app = ClassApp()
