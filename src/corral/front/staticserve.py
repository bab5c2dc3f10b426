"""Static files for URLs that no handler maps, answered by the front from the mount's folder.

A ``StaticResponse`` plays the part of a backend connection for one request
(``corral.backends.Upstream``): it tells the exchange (its ``ResponseSink``) a
response head, body pieces and the end, exactly as a FastCGI backend does, so that framing,
keep-alive, HEAD, the access log, deadlines and back-pressure are the client stream's, shared
with applications.

What is answered (the rules themselves are ``corral.static``'s, pure):

- only GET and HEAD: anything else is a 405 with ``Allow: GET, HEAD``;
- ``static.resolve``: a file, a redirect (301 to the folder's URL with a slash, the query kept),
  or a refusal (404: traversal, hidden, configuration, log and source files, nothing there;
  403: a folder without an index document);
- ``static.plan``: 200, 206 (one range), 304, 412 or 416 with ETag, Last-Modified,
  Content-Type, Accept-Ranges, Content-Length.

How the bytes go out: ``os.pread`` of ``CHUNK`` bytes at a time from the file (never the whole
file in memory), each piece written at once to the client's transport. The transport's
high-water mark pauses the pump (``pause_reading``, via the connection's ``pause_writing``) and
its drain resumes it; at most ``TURN_BUDGET`` bytes are read per event-loop turn, so a fast
client on a large file never holds the loop for long (other connections get their turn). Not
``sendfile``: uvloop (the production loop) has no ``loop.sendfile``, and writing to the socket
behind the transport's back is safe only while the transport holds nothing (how a spilled
response is sent: ``Http1Response.drain_spill``), which would need a file region passed through
the exchange instead of pieces. A page-cache read of ``CHUNK`` bytes costs tens of
microseconds (see docs/architecture.md for the measurement).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

from corral import static
from corral.backends import BackendError, ResponseSink
from corral.front.errorpages import error_body
from corral.front.routes import AppRoute
from corral.protocol.http1.events import Request

#: Bytes read from the file per piece.
CHUNK = 256 * 1024
#: Most bytes read and written per event-loop turn before yielding to other connections.
TURN_BUDGET = 1024 * 1024

_ALLOWED = (b"GET", b"HEAD")
_ALLOW_HEADER = (b"Allow", b"GET, HEAD")
_HTML = (b"Content-Type", b"text/html; charset=utf-8")
_MESSAGES = {
    403: "Directory listing is not allowed here.",
    404: "No such file.",
    405: "Static files answer GET and HEAD only.",
}
#: Characters left as they are in a redirect's Location (RFC 3986 pchar and "/").
_SAFE = "/:@!$&'()*+,;=-._~"

_CONDITIONAL = {
    b"if-match": "if_match",
    b"if-unmodified-since": "if_unmodified_since",
    b"if-none-match": "if_none_match",
    b"if-modified-since": "if_modified_since",
    b"if-range": "if_range",
    b"range": "range_header",
}


def respond(route: AppRoute, request: Request, path_info: bytes) -> StaticResponse:
    """The response to ``request`` for ``path_info`` (relative to the route's mount)."""
    return StaticResponse(route, request, path_info)


class StaticResponse:
    """One static-file response, driven like a backend connection (see the module doc)."""

    __slots__ = (
        "_fd",
        "_handle",
        "_left",
        "_loop",
        "_offset",
        "_path_info",
        "_paused",
        "_request",
        "_route",
        "_sink",
    )

    def __init__(self, route: AppRoute, request: Request, path_info: bytes) -> None:
        self._route = route
        self._request = request
        self._path_info = path_info
        self._sink: ResponseSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None
        self._fd = -1
        self._offset = 0
        self._left = 0
        self._paused = False

    # -- Upstream ---------------------------------------------------------------------------

    def begin(
        self, static: bytes, params: list[tuple[bytes, bytes]], sink: ResponseSink, has_body: int
    ) -> None:
        # Answered on the next loop turn: the exchange finishes setting up this request first
        # (and a response that ends at once never re-enters it).
        self._sink = sink
        self._loop = loop = asyncio.get_running_loop()
        self._handle = loop.call_soon(self._start)

    def send_body(self, data: bytes) -> None:
        """A request body means nothing to a static file: dropped."""

    def end_body(self) -> None:
        return None

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if self._left and self._handle is None and self._sink is not None:
            assert self._loop is not None
            self._handle = self._loop.call_soon(self._pump)

    def abort(self) -> None:
        self._sink = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._close_file()

    close = abort

    @property
    def is_closed(self) -> bool:
        return self._sink is None

    # -- answering ------------------------------------------------------------------------------

    def _start(self) -> None:
        self._handle = None
        sink = self._sink
        if sink is None:
            return
        request = self._request
        policy = self._route.static
        assert policy is not None
        if request.method not in _ALLOWED:
            self._page(sink, 405, (_ALLOW_HEADER,))
            return
        found = static.resolve(policy, self._path_info)
        if isinstance(found, static.Denied):
            self._page(sink, found.status)
            return
        if isinstance(found, static.Redirect):
            self._redirect(sink, found)
            return
        conditions: dict[str, str] = {}
        for name, value in request.headers:
            key = _CONDITIONAL.get(name.lower())
            if key is not None and key not in conditions:
                conditions[key] = value.decode("latin-1")
        method = request.method.decode("ascii")
        plan = static.plan(found, method, **conditions)
        if plan.length:
            try:
                self._fd = os.open(found.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._page(sink, 404)
                return
        headers = [(name.encode("latin-1"), text.encode("latin-1")) for name, text in plan.headers]
        sink.backend_head(plan.status, b"", headers)
        self._offset = plan.offset
        self._left = plan.length
        if not plan.length:
            self._finish(sink)
            return
        self._pump()

    def _pump(self) -> None:
        self._handle = None
        budget = TURN_BUDGET
        while self._left and not self._paused:
            sink = self._sink
            if sink is None:
                return
            try:
                data = os.pread(self._fd, min(CHUNK, self._left), self._offset)
            except OSError as exc:
                self._fail(sink, f"cannot read {self._describe()}: {exc.strerror or exc}")
                return
            if not data:
                self._fail(sink, f"{self._describe()} shrank while it was being sent")
                return
            self._offset += len(data)
            self._left -= len(data)
            sink.backend_body(data)
            if not self._left:
                self._finish(sink)
                return
            sink.backend_flush()
            budget -= len(data)
            if budget <= 0 and not self._paused and self._sink is not None:
                assert self._loop is not None
                self._handle = self._loop.call_soon(self._pump)
                return

    def _finish(self, sink: ResponseSink) -> None:
        self._close_file()
        self._sink = None
        sink.backend_end(True)

    def _fail(self, sink: ResponseSink, reason: str) -> None:
        self._close_file()
        self._sink = None
        sink.backend_error(BackendError(reason))

    def _page(
        self, sink: ResponseSink, status: int, extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        body = error_body(status, _MESSAGES.get(status))
        headers = [_HTML, (b"Content-Length", b"%d" % len(body)), *extra]
        sink.backend_head(status, b"", headers)
        sink.backend_body(body)
        self._finish(sink)

    def _redirect(self, sink: ResponseSink, redirect: static.Redirect) -> None:
        location = quote(self._route.script_name + redirect.location.encode("utf-8"), safe=_SAFE)
        query = self._request.query
        if query:
            location += "?" + query.decode("latin-1")
        body = b"Moved to " + location.encode("latin-1") + b"\n"
        headers = [
            (b"Location", location.encode("latin-1")),
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Content-Length", b"%d" % len(body)),
        ]
        sink.backend_head(redirect.status, b"", headers)
        sink.backend_body(body)
        self._finish(sink)

    def _describe(self) -> str:
        return repr(self._path_info.decode("utf-8", "replace"))

    def _close_file(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
