"""Warm-up requests, served in the template before it forks (preloaded workers).

A worker forked from a template shares the template's memory until it writes to it. On Python
3.11 running code writes to it: a code object is rewritten in place on its first calls
(quickened, then its inline caches filled as it specialises), functions and classes get
version tags. Code that first runs in a worker is specialised in that worker's own copy of the
pages it lives on. So before the template forks:

* ``own``: Corral's own serving path (the FastCGI codec, the environ, the response head, the
  WSGI adapter) serves ``OWN_REQUESTS`` requests to an internal application, never the app's
  code: what every request of every worker runs is then specialised once, in shared pages
  (``bench/preload_pages.py`` names these pages; bench/README.md has the figures). Always done
  for a WSGI app.
* ``app``: the app's own warm-up (the ``WARM_UP`` setting): GET requests for a path through
  the same path and the app, like the warm-up requests of Google App Engine: what the app
  builds at its first request (URL resolvers, compiled templates) and its specialised code are
  then shared. A warm-up never stops the app from serving: a non-2xx answer is logged (an
  exception's traceback is logged as for any request) and the template forks its workers all
  the same; one still unanswered near the host's start timeout (``deadline``) makes the
  template say ``nofork``, and the host starts the workers directly.

Each request goes over a socketpair to a ``server.Connection`` running in this thread, as the
front's requests go to a worker; a helper thread plays the front (it sends a request, reads the
answer, then the next) and is joined before the template forks. Stdlib, the FastCGI codec and
the worker's own modules only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import HEADER_LEN, RecordType
from corral.worker import server
from corral.worker.wsgi import WSGIApp

#: Internal requests that exercise Corral's own path. Python 3.11 quickens a code object on
#: its 8th call and specialises an instruction after it ran a few times more (and backs off
#: after a miss): 32 is well past both, for about 2 ms (bench/README.md, "Preloaded workers:
#: what a forked worker writes, and warm-up requests").
OWN_REQUESTS = 32
#: Corral's own warm-up's time (it takes milliseconds; more would be a bug of Corral's).
OWN_TIMEOUT = 5.0
#: The host's time for a template to say ready when it does not say (its start timeout's
#: default); the warm-ups must be done before it runs out, less a margin (``deadline``).
START_TIMEOUT = 30.0
#: The Host a warm-up path without one is requested with.
DEFAULT_HOST = "localhost"


@dataclass(frozen=True, slots=True)
class Target:
    """What a warm-up requests: a path (and query), its host and scheme."""

    path: str
    query: str = ""
    host: str = DEFAULT_HOST
    https: bool = False


def parse_target(value: str) -> Target:
    """``/path?query`` or ``http[s]://host[:port]/path?query`` (the setting's forms). Raises
    ValueError for anything else."""
    if value.startswith("/"):
        path, _, query = value.partition("?")
        return Target(path, query)
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise ValueError(f"{value!r} is neither a path (/...) nor an http(s)://host/... URL")
    return Target(parts.path or "/", parts.query, parts.netloc, parts.scheme == "https")


def describe(target: Target) -> str:
    query = f"?{target.query}" if target.query else ""
    return f"GET {target.path}{query}"


def params(target: Target, script_name: str) -> list[tuple[bytes, bytes]]:
    """The CGI variables of a plain GET of ``target``, in the order the front sends them."""
    host, _, port = target.host.partition(":")
    port = port or ("443" if target.https else "80")
    pairs = [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"Corral"),
        (b"SCRIPT_NAME", script_name.encode("latin-1")),
        (b"DOCUMENT_ROOT", b""),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"0"),
        (b"SERVER_ADDR", b"127.0.0.1"),
        (b"SERVER_PORT", port.encode("latin-1")),
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", (script_name + target.path).encode("utf-8")),
        (b"PATH_INFO", unquote(target.path)),
        (b"QUERY_STRING", target.query.encode("utf-8")),
        (b"SERVER_NAME", host.encode("latin-1")),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"HTTP_HOST", target.host.encode("latin-1")),
        (b"HTTP_USER_AGENT", b"Corral warm-up"),
        (b"HTTP_ACCEPT", b"*/*"),
    ]
    if target.https:
        pairs.append((b"HTTPS", b"on"))
    return pairs


def unquote(text: str) -> bytes:
    """A path's bytes with its %XX escapes decoded, as the front gives PATH_INFO (an escape
    that is not one stays as it is)."""
    raw = text.encode("utf-8")
    if b"%" not in raw:
        return raw
    first, *rest = raw.split(b"%")
    out = [first]
    for piece in rest:
        if len(piece) >= 2 and all(c in _HEX for c in piece[:2]):
            out.append(bytes((int(piece[:2], 16),)) + piece[2:])
        else:
            out.append(b"%" + piece)
    return b"".join(out)


_HEX = frozenset(b"0123456789abcdefABCDEF")


def own_app(environ: dict[str, Any], start_response: Callable[..., object]) -> list[bytes]:
    """The internal application of Corral's own warm-up: reads its environ as an app would,
    answers a small page."""
    body = b"warm: " + environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def deadline(started: float, start_timeout: float | None) -> float:
    """When (``time.monotonic()``) the template's warm-ups must have ended, for a template
    that started at ``started`` and must say ready within ``start_timeout`` seconds: a tenth
    of it (at least 1 s, at most 5) is left for the rest (the freeze, the reply, the host's
    own start of the process)."""
    timeout = START_TIMEOUT if start_timeout is None else start_timeout
    return started + timeout - min(5.0, max(1.0, timeout / 10))


class _Front(threading.Thread):
    """The front's end of the socketpair: each request in turn, its answer read to its
    END_REQUEST; the statuses answered (None: no answer). When ``deadline`` (monotonic) passes
    with an answer still awaited, ``on_stuck`` is called (from this thread: the serving one is
    in the app)."""

    def __init__(
        self,
        sock: socket.socket,
        requests: Iterable[bytes],
        deadline: float,
        on_stuck: Callable[[], None],
    ) -> None:
        super().__init__(name="corral-warm-up", daemon=True)
        self.sock = sock
        self.requests = list(requests)
        self.deadline = deadline
        self.on_stuck = on_stuck
        self.statuses: list[int | None] = []

    def run(self) -> None:
        sock = self.sock
        try:
            for request in self.requests:
                self._wait_at_most()
                sock.sendall(request)
                self.statuses.append(self._read_answer())
            sock.shutdown(socket.SHUT_WR)
            while self._wait_at_most() and sock.recv(65536):
                pass
        except TimeoutError:
            self.on_stuck()
        except OSError:
            pass
        finally:
            sock.close()

    def _wait_at_most(self) -> bool:
        """The socket's timeout: what is left before the deadline (TimeoutError if none)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        return True

    def _read_answer(self) -> int | None:
        """Read one response (STDOUT records to END_REQUEST); its status (200 when the head
        has no Status line, as CGI says); None if the connection ended first."""
        return _read_answer(self.sock, self._wait_at_most)


def _read_answer(sock: socket.socket, before_recv: Callable[[], object]) -> int | None:
    data = b""
    stdout = b""
    while True:
        while len(data) >= HEADER_LEN:
            rtype, _, length, padding = records.header_at(data, 0)
            end = HEADER_LEN + length + padding
            if len(data) < end:
                break
            if rtype == RecordType.STDOUT and len(stdout) < 8192:
                stdout += data[HEADER_LEN : HEADER_LEN + length]
            data = data[end:]
            if rtype == RecordType.END_REQUEST:
                return _status_of(stdout)
        before_recv()
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk


def _status_of(stdout: bytes) -> int:
    head = stdout.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"status":
            try:
                return int(value.split()[0])
            except (ValueError, IndexError):
                return 0
    return 200


def serve(
    app: WSGIApp,
    requests: list[list[tuple[bytes, bytes]]],
    on_stuck: Callable[[], None],
    until: float,
) -> list[int | None]:
    """Serve ``requests`` (each its PARAMS) to ``app`` through the worker's FastCGI path, in
    this thread; each answer's status (None: none came). ``on_stuck`` is called (from another
    thread) if an answer is still awaited at ``until`` (``time.monotonic()``): it must end the
    process, as this thread may never come back from the app."""
    ours, theirs = socket.socketpair()
    encoded = [
        records.encode_request(1, pairs, keep_conn=True, stdin=b"", split_params=False)
        for pairs in requests
    ]
    front = _Front(theirs, encoded, until, on_stuck)
    state = server.ServeState(app, 1, False)
    front.start()
    try:
        server.Connection(ours, state).serve()
    except (Exception, SystemExit) as exc:  # (what would end a worker must not end the template)
        server.log(f"warm-up: the request ended the serving path: {type(exc).__name__}: {exc}")
    finally:
        ours.close()
        front.join()
    return front.statuses


def warm_own(on_stuck: Callable[[], None], until: float) -> list[int | None]:
    """Corral's own warm-up: ``OWN_REQUESTS`` requests to ``own_app``."""
    requests = [params(Target("/corral-warm-up"), "")] * OWN_REQUESTS
    return serve(own_app, requests, on_stuck, until)


def warm_app(
    app: WSGIApp,
    target: Target,
    count: int,
    script_name: str,
    on_stuck: Callable[[], None],
    until: float,
) -> list[int | None]:
    """The app's warm-up: ``count`` GETs of ``target``, each answer's status."""
    return serve(app, [params(target, script_name)] * count, on_stuck, until)


def before_fork(
    app: WSGIApp,
    target: str | None,
    count: int,
    script_name: str,
    on_stuck: Callable[[], None],
    until: float,
) -> None:
    """The template's warm-ups, before it freezes its heap: Corral's own, then the app's
    (``target``, ``count`` times) if it has one; ``on_stuck`` if they are not done at
    ``until``. Whatever the app answers, this returns (a non-2xx answer logged; an
    exception's traceback was logged as for any request)."""
    own = warm_own(on_stuck, time.monotonic() + OWN_TIMEOUT)
    if own != [200] * OWN_REQUESTS:
        server.log(f"warm-up of Corral's own path: unexpected answers {sorted(set(map(str, own)))}")
    if target is None:
        return
    parsed = parse_target(target)
    what = f"warm-up request {describe(parsed)}"
    started = time.monotonic()
    if started >= until:
        server.log(f"{what}: not sent: the app's import took the template's start time")
        return
    statuses = warm_app(app, parsed, count, script_name, on_stuck, until)
    took = f"{(time.monotonic() - started) * 1000:.0f} ms"
    answers = statuses + [None] * (count - len(statuses))
    failed = [s for s in answers if s is None or not 200 <= s < 300]
    if not failed:
        server.log(f"{what}: {count} x {statuses[0]} in {took}, before forking", notice=True)
        return
    tally: dict[str, int] = {}
    for status in failed:
        key = "no answer" if status is None else str(status)
        tally[key] = tally.get(key, 0) + 1
    shown = ", ".join(f"{key} x{n}" for key, n in tally.items())
    server.log(
        f"{what}: {len(failed)} of {count} not 2xx ({shown}); the workers are forked all the same"
    )
