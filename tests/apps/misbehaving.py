"""Misbehaving WSGI apps for the health and scaling tests, run by Corral's real worker
(``WSGI_APP=misbehaving:NAME``). Stdlib only.

- ``sleeps``: sleeps ``?seconds`` or ``/sleep/seconds`` (default 0.05) per request, then
  answers its pid: I/O bound.
- ``burns_cpu``: spins for ``?seconds`` (default 0.01) of CPU per request: CPU bound.
- ``leaks_memory``: keeps ``?mib`` (default 20) MiB more per request, forever.
- ``hangs``: never answers (``/hang``); other paths answer at once.
- ``crashes_every_tenth``: every tenth request a worker serves ends the worker process.
- ``slow_import``: importing it takes IMPORT_DELAY seconds (readiness waits for that).

Every app answers ``/pid`` with the worker's pid.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

_leaked: list[bytearray] = []
_served = 0
_lock = threading.Lock()


def _answer(start_response: StartResponse, body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _pid(start_response: StartResponse) -> list[bytes]:
    return _answer(start_response, str(os.getpid()).encode())


def _number(environ: Environ, default: float) -> float:
    """The number in ``?N`` or in the last path segment (``/sleep/0.5``), else ``default``."""
    for text in (environ.get("QUERY_STRING") or "", environ.get("PATH_INFO", "").rsplit("/")[-1]):
        try:
            return float(text)
        except ValueError:
            continue
    return default


def sleeps(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    time.sleep(_number(environ, 0.05))
    return _pid(start_response)


def burns_cpu(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    end = time.thread_time() + _number(environ, 0.01)
    total = 0
    while time.thread_time() < end:
        for i in range(1000):
            total += i * i
    return _pid(start_response)


def leaks_memory(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/pid":
        block = bytearray(int(_number(environ, 20) * 1024 * 1024))
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not virtual
        _leaked.append(block)
    return _pid(start_response)


def hangs(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/hang":
        hang_forever()
    return _pid(start_response)


def hang_forever() -> None:
    """Named, so that the stack dump in the log can be recognised."""
    while True:
        time.sleep(3600)


def crashes_every_tenth(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    global _served
    with _lock:
        _served += 1
        crash = _served % 10 == 0
    if crash:
        os._exit(13)
    return _pid(start_response)


if os.environ.get("IMPORT_DELAY"):
    time.sleep(float(os.environ["IMPORT_DELAY"]))
slow_import = sleeps
