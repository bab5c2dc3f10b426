"""A FastAPI application for the end-to-end ASGI tests (``ASGI_APP=fastapi_app:app``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel


def _note(text: str) -> None:
    marker = os.environ.get("LIFESPAN_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(text + "\n")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    _note("startup")
    yield {"greeting": "hello from the lifespan"}
    _note("shutdown")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/hello")
async def hello(request: Request) -> dict[str, str]:
    return {"message": "Hello, FastAPI!", "greeting": request.state.greeting}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item) -> dict[str, Any]:
    return {"created": item.model_dump(), "total": item.price * 2}


@app.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    length = 0
    async for chunk in request.stream():
        length += len(chunk)
    return {"length": length}


@app.websocket("/ws")
async def websocket_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"echo": data, "path": websocket.url.path})
    except WebSocketDisconnect:
        return
