"""The one WSGI application every server in the benchmark runs.

Routes (anything else is a 404, which wrk counts as an error):

- ``/hello``    a 14-byte plain-text body: the cost of the server itself.
- ``/1mib``     a 1 MiB body, sent as one bytes object with a Content-Length.
- ``/upload``   reads the whole ``wsgi.input`` (64 KiB at a time) and answers its length; a body
                shorter than its Content-Length is a 400, so a server that loses bytes shows errors.
- ``/sleep50``  sleeps 50 ms, then answers like ``/hello``: a slow app, where concurrency matters.
- ``/cpu10``    burns 10 ms of CPU (its thread's CPU time), then answers like ``/hello``: a
                CPU-bound app, where more processes than cores only add waiting.
- ``/cpu5``     the same with 5 ms (issue 14's CPU-bound app); bench/lua/mixed.lua sends half
                of its requests here and half to ``/sleep50`` (the ``mixed`` scenario).

Stdlib only, so it runs unchanged under Corral's worker, gunicorn and uWSGI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, world!\n"
ONE_MIB = 1024 * 1024
MIB_BODY = bytes(range(256)) * (ONE_MIB // 256)
READ_SIZE = 64 * 1024

StartResponse = Callable[..., Any]


def _answer(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _read_all(environ: dict[str, Any]) -> tuple[int, int | None]:
    """Read wsgi.input to its end; return (bytes read, declared Content-Length or None)."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH") or ""
    expected = int(declared) if declared.isdigit() else None
    total = 0
    while expected is None or total < expected:
        want = READ_SIZE if expected is None else min(READ_SIZE, expected - total)
        chunk = stream.read(want)
        if not chunk:
            break
        total += len(chunk)
    return total, expected


def burn_cpu(seconds: float) -> None:
    """Compute until this thread has used ``seconds`` of CPU time."""
    end = time.thread_time() + seconds
    total = 0
    while time.thread_time() < end:
        for i in range(200):
            total += i * i


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        return _answer(start_response, "200 OK", HELLO)
    if path == "/1mib":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(ONE_MIB))],
        )
        return [MIB_BODY]
    if path == "/upload":
        total, expected = _read_all(environ)
        if expected is not None and total != expected:
            return _answer(start_response, "400 Bad Request", f"short body: {total}\n".encode())
        return _answer(start_response, "200 OK", f"{total}\n".encode())
    if path == "/sleep50":
        time.sleep(0.05)
        return _answer(start_response, "200 OK", HELLO)
    if path == "/cpu10":
        burn_cpu(0.010)
        return _answer(start_response, "200 OK", HELLO)
    if path == "/cpu5":
        burn_cpu(0.005)
        return _answer(start_response, "200 OK", HELLO)
    return _answer(start_response, "404 Not Found", b"no such route\n")


application = app
