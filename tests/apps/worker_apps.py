"""WSGI fixture apps for the worker's tests, routed by PATH_INFO
(``--app worker_apps:application``).

Apps that must leave evidence (close() called, a request aborted) write to the file named by
the ``marker`` query parameter.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import validator

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _query(environ: Environ) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _mark(environ: Environ, text: str) -> None:
    marker = _query(environ).get("marker")
    if marker:
        with open(marker, "a") as f:
            f.write(text + "\n")


def mark(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Leaves its query string in the marker file: one line per run of the app."""
    _mark(environ, environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"marked"]


def _json(start_response: StartResponse, data: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def environ_dump(environ: Environ, start_response: StartResponse) -> list[bytes]:
    shown = {
        k: v
        for k, v in environ.items()
        if isinstance(v, str | bool | int | tuple) and not k.startswith("wsgi.file")
    }
    shown["input_type"] = type(environ["wsgi.input"]).__name__
    shown["errors_type"] = type(environ["wsgi.errors"]).__name__
    return _json(start_response, shown)


def read_input(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Read wsgi.input the way ``op`` says; report what each call returned."""
    q = _query(environ)
    stream = environ["wsgi.input"]
    op = q.get("op", "read")
    calls: list[Any] = []
    if op == "read":
        data = stream.read()
        calls.append(len(data))
        body = data
    elif op == "chunks":
        size = int(q["size"])
        parts = []
        while True:
            part = stream.read(size)
            calls.append(len(part))
            if not part:
                break
            parts.append(part)
        body = b"".join(parts)
    elif op == "readline":
        size = int(q.get("size", "-1"))
        parts = []
        while True:
            line = stream.readline(size) if size >= 0 else stream.readline()
            calls.append(line.decode("latin-1"))
            if not line:
                break
            parts.append(line)
        body = b"".join(parts)
    elif op == "readlines":
        hint = int(q.get("hint", "-1"))
        lines = stream.readlines(hint)
        calls = [line.decode("latin-1") for line in lines]
        body = b"".join(lines) + stream.read()
    elif op == "iter":
        lines = list(stream)
        calls = [line.decode("latin-1") for line in lines]
        body = b"".join(lines)
    else:
        raise ValueError(op)
    import hashlib

    return _json(
        start_response,
        {
            "calls": calls if len(calls) < 200 else len(calls),
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        },
    )


def first_line(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers after reading one line: proves the body is streamed, not buffered first."""
    line = environ["wsgi.input"].readline()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"first line: " + line]


def write_callable(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one ")
    write(b"two ")
    return [b"three"]


def exc_info_before(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
    try:
        raise RuntimeError("handled failure")
    except RuntimeError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def exc_info_after(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise RuntimeError("late failure")
    except RuntimeError:
        try:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        except RuntimeError as exc:
            _mark(environ, f"re-raised: {exc}")
            raise
    yield b"never"


class ClosingIterable:
    def __init__(self, environ: Environ, blocks: list[bytes], fail: bool = False) -> None:
        self.environ = environ
        self.blocks = blocks
        self.fail = fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self.blocks
        if self.fail:
            raise RuntimeError("failure while iterating")

    def close(self) -> None:
        _mark(self.environ, "closed")


def closing(environ: Environ, start_response: StartResponse) -> ClosingIterable:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(environ, [b"a", b"b"], fail=_query(environ).get("fail") == "1")


def file_wrapper(environ: Environ, start_response: StartResponse) -> Any:
    q = _query(environ)
    path = q["path"]
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in q:
        headers.append(("Content-Length", q["length"]))
    start_response("200 OK", headers)
    f = open(path, "rb")  # noqa: SIM115 - closed by the wrapper's close()
    wrapper = environ["wsgi.file_wrapper"](f, 8192)
    original = wrapper.close

    def close() -> None:
        original()
        _mark(environ, f"file closed={f.closed}")

    class Traced:
        # A plain wrapper returned as-is keeps the fast path; "traced" checks close() too.
        def __iter__(self) -> Iterator[bytes]:
            return iter(wrapper)

        def close(self) -> None:
            close()

    if q.get("traced") == "1":
        return Traced()
    return wrapper


def head_body(environ: Environ, start_response: StartResponse) -> list[bytes]:
    body = b"x" * 1000
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def boom(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("the app exploded")


def boom_late(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part"
    raise RuntimeError("the app exploded mid-body")


def hop_by_hop(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [b"should not be seen"]


def bad_status(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("OK", [("Content-Type", "text/plain")])
    return [b"should not be seen"]


def non_latin1(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("X-Name", "caf\u00e9 \u20ac")])
    return [b"should not be seen"]


def slow_stream(environ: Environ, start_response: StartResponse) -> Any:
    """Streams a block every 50 ms for up to 10 s; records each block and close()."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    class Slow:
        def __iter__(self) -> Iterator[bytes]:
            for n in range(200):
                _mark(environ, f"block {n}")
                yield b"tick\n"
                time.sleep(0.05)

        def close(self) -> None:
            _mark(environ, "closed")

    return Slow()


def sleep(environ: Environ, start_response: StartResponse) -> list[bytes]:
    time.sleep(float(_query(environ).get("seconds", "0.5")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"slept in {os.getpid()}".encode()]


_RENDEZVOUS = threading.Barrier(2)


def rendezvous(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers "met" only when another request reaches it while this one waits (two requests
    served at once); "alone" after ``seconds`` (default 15) without one."""
    try:
        _RENDEZVOUS.wait(float(_query(environ).get("seconds", "15")))
        body = b"met"
    except threading.BrokenBarrierError:
        _RENDEZVOUS.reset()
        body = b"alone"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def big(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    size = int(_query(environ)["size"])
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    block = bytes(range(256)) * 1024
    while size > 0:
        yield block[:size]
        size -= len(block)


def errors_stream(environ: Environ, start_response: StartResponse) -> list[bytes]:
    errors = environ["wsgi.errors"]
    errors.write("a line for wsgi.errors\n")
    errors.writelines(["two ", "lines\n"])
    errors.flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged"]


def _validated_inner(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.errors"].write("validated app ran\n")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data) + 6))]
    )
    yield b"valid:"
    yield data


_validated = validator(_validated_inner)


def validated(environ: Environ, start_response: StartResponse) -> Any:
    # Any wsgiref.validate warning becomes an error (a 500, and a traceback on stderr).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return _validated(environ, start_response)


def validated_file(environ: Environ, start_response: StartResponse) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return validator(file_wrapper)(environ, start_response)


ROUTES: dict[str, Callable[..., Any]] = {
    "/hello": hello,
    "/mark": mark,
    "/environ": environ_dump,
    "/input": read_input,
    "/first-line": first_line,
    "/write": write_callable,
    "/exc-info-before": exc_info_before,
    "/exc-info-after": exc_info_after,
    "/closing": closing,
    "/file": file_wrapper,
    "/head": head_body,
    "/boom": boom,
    "/boom-late": boom_late,
    "/hop-by-hop": hop_by_hop,
    "/bad-status": bad_status,
    "/non-latin1": non_latin1,
    "/slow": slow_stream,
    "/sleep": sleep,
    "/rendezvous": rendezvous,
    "/big": big,
    "/errors": errors_stream,
    "/validated": validated,
    "/validated-file": validated_file,
}


def application(environ: Environ, start_response: StartResponse) -> Any:
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        return environ_dump(environ, start_response)
    return route(environ, start_response)
