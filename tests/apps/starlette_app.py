"""A Starlette application for the end-to-end ASGI tests (``ASGI_APP=starlette_app:app``).

Lifespan: startup puts the worker's pid in the lifespan state; LIFESPAN_MARKER names a file that
gets "startup <pid>" and "shutdown <pid>" lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def _note(text: str) -> None:
    marker = os.environ.get("LIFESPAN_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(f"{text} {os.getpid()}\n")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, int]]:
    _note("startup")
    yield {"worker_pid": os.getpid()}
    _note("shutdown")


async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, Starlette!")


async def state(request: Request) -> Response:
    return JSONResponse({"worker_pid": request.state.worker_pid, "pid": os.getpid()})


async def upload(request: Request) -> Response:
    digest = hashlib.sha256()
    length = 0
    chunks = 0
    async for chunk in request.stream():
        if chunk:
            chunks += 1
            length += len(chunk)
            digest.update(chunk)
    return JSONResponse({"length": length, "sha256": digest.hexdigest(), "chunks": chunks})


async def stream(request: Request) -> Response:
    count = int(request.query_params.get("n", "10"))

    async def blocks() -> AsyncIterator[bytes]:
        for index in range(count):
            yield bytes([index % 256]) * 65536

    return StreamingResponse(blocks(), media_type="application/octet-stream")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/state", state),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        WebSocketRoute("/ws", echo),
    ],
    lifespan=lifespan,
)
