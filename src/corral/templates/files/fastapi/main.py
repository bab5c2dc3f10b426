"""A new FastAPI application (`corral new fastapi`): ``ASGI_APP=main:app`` points Corral's
Python worker (which speaks ASGI, WebSocket included) at ``app`` below. deploy.py installs
requirements.txt into ./venv."""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

app = FastAPI(title="FastAPI on Corral")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FastAPI on Corral</title>
<style>body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; }</style>
</head><body>
<h1>FastAPI on Corral</h1>
<p>It works: this is <code>main.py</code>, served by Corral's Python worker (ASGI) from this
site's own virtualenv. See <a href="docs">the API's docs</a> and
<a href="api/hello">a JSON route</a>.</p>
<p>WebSocket echo (<code>/ws</code>): <input id="text" value="hello">
<button id="send">Send</button> <span id="echo"></span></p>
<script>
const url = new URL("ws", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(url);
socket.onmessage = (event) => { document.getElementById("echo").textContent = event.data; };
document.getElementById("send").onclick = () => socket.send(document.getElementById("text").value);
</script>
</body></html>
"""


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE


@app.get("/api/hello")
async def hello(name: str = "world") -> dict[str, str]:
    return {"message": f"Hello, {name}!"}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(f"echo: {await websocket.receive_text()}")
    except WebSocketDisconnect:
        pass
