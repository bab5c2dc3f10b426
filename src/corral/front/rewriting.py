"""URL Rewrite rules applied to a request before it is routed (``Exchange.start`` calls
``apply`` for the rewrite route of a mount with rules, ``routes.MountRules``).

The rules themselves run in ``corral.rewrite`` (pure); this module gives them the request's
facts and turns their decision into what the exchange does next:

- the request continues, at the rewritten path and query (or as it came), routed by
  ``ConfigRouter.routed``. What the application sees: REQUEST_URI stays the client's original
  target (PHP front controllers route on it), SCRIPT_NAME/PATH_INFO/QUERY_STRING follow the
  rewritten URL; an HTTP backend gets the rewritten path and query as its request target. Both
  get the original target as ``X-Original-URL`` (HTTP_X_ORIGINAL_URL), as IIS sets it, and
  never a client's own X-Original-URL field on a mount with rules;
- a Redirect or CustomResponse rule's answer, made by the front (``FixedResponse``, driven like
  a backend, counted on the mount's ``rewrite:`` route);
- an AbortRequest rule drops the connection (logged);
- a rewritten URL that leads nowhere (no site answers it, or it holds a NUL byte) is a 404.

The access log keeps the request line the client sent.

IsFile/IsDirectory conditions ``stat`` the disk on the event loop, as the static-file path
does (``front/staticserve.py`` resolves and opens files there too): a local ``stat`` of a
cached inode costs microseconds, and only requests to mounts with such rules pay it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from urllib.parse import quote

from corral import rewrite
from corral.backends import Upstream
from corral.front import cgienv
from corral.front.accesslog import request_label
from corral.front.errorpages import error_body
from corral.front.fixed import FixedResponse
from corral.front.forward import ProxyView
from corral.front.routes import AppRoute, MountRules
from corral.front.stream import ClientStream
from corral.front.target import split_host
from corral.protocol.http1.events import Request

logger = logging.getLogger("corral.front")

#: Characters left as they are in a rewritten path (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
#: ... in a query string (which may hold escapes already).
_QUERY_SAFE = _PATH_SAFE + "?%"
#: ... in a Location field.
_LOCATION_SAFE = _QUERY_SAFE + "#[]"


@dataclass(slots=True)
class Outcome:
    """How the request goes on after its mount's rules."""

    route: AppRoute
    #: The (decoded) path and the raw query it is served with.
    path: bytes
    query: bytes
    #: Its request target for an HTTP backend.
    target: bytes
    #: A rule's answer (redirect, custom response), to begin instead of a backend.
    answer: Upstream | None = None


def apply(
    rules: MountRules,
    request: Request,
    host: bytes | None,
    path: bytes,
    view: ProxyView | None,
    stream: ClientStream,
    params: list[tuple[bytes, bytes]],
) -> Outcome | None:
    """Apply ``rules`` to the request; None when it has been answered here (404) or dropped
    (AbortRequest). ``params``: its CGI variables so far (HTTP_X_ORIGINAL_URL is set)."""
    text = _text(path)
    facts = _Facts(rules, request, host, view, stream)
    decision = rewrite.apply(
        rules.rules_for(text), rules.base, text, request.query.decode("latin-1"), facts
    )
    cgienv.replace(params, b"HTTP_X_ORIGINAL_URL", request.target)
    if isinstance(decision, rewrite.Rewritten):
        query = request.query
        target = request.target
        if decision.changed:
            path = _bytes(decision.path)
            if b"\x00" in path:  # ({UrlDecode:...} of a %00): no such file, as for a client
                stream.respond_error(404)
                return None
            query = _bytes(quote(decision.query, safe=_QUERY_SAFE))
            target = quote(path, safe=_PATH_SAFE).encode("ascii")
            if query:
                target += b"?" + query
        route = rules.router.routed(host, path, stream.server_port)
        if route is None:
            stream.respond_error(404)
            return None
        return Outcome(route, path, query, target)
    if isinstance(decision, rewrite.Aborted):
        logger.info(
            "%s: %s dropped by rule %r (AbortRequest)",
            rules.answers.name,
            request_label(request),
            decision.rule,
        )
        stream.abort()
        return None
    if isinstance(decision, rewrite.Redirected):
        location = quote(decision.location, safe=_LOCATION_SAFE).encode("ascii")
        body = b"Moved to " + location + b"\n"
        answer = FixedResponse(
            decision.status,
            b"",
            [
                (b"Location", location),
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", b"%d" % len(body)),
            ],
            body,
        )
    else:
        page = error_body(decision.status, decision.description or None)
        answer = FixedResponse(
            decision.status,
            decision.reason.encode("ascii"),
            [
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"Content-Length", b"%d" % len(page)),
            ],
            page,
        )
    return Outcome(rules.answers, path, request.query, request.target, answer)


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that came from no byte
        return text.encode("utf-8", "replace")


class _Facts:
    """What a rule reads of the request (``corral.rewrite.Facts``)."""

    __slots__ = ("_host", "_request", "_rules", "_stream", "_view")

    def __init__(
        self,
        rules: MountRules,
        request: Request,
        host: bytes | None,
        view: ProxyView | None,
        stream: ClientStream,
    ) -> None:
        self._rules = rules
        self._request = request
        self._host = host
        self._view = view
        self._stream = stream

    def variable(self, name: str) -> str:
        request = self._request
        view = self._view
        if name == "HTTPS":  # what a trusted proxy says, else the connection's own TLS
            if view is not None and view.scheme:
                return "on" if view.scheme == b"https" else "off"
            return "on" if self._stream.tls else "off"
        if name == "HTTP_HOST":
            host = view.host if view is not None and view.host else self._host
            return (host or b"").decode("latin-1")
        if name in ("REQUEST_URI", "UNENCODED_URL"):
            return request.target.decode("latin-1")
        if name == "REQUEST_METHOD":
            return request.method.decode("latin-1")
        if name == "REMOTE_ADDR":
            return view.client if view is not None and view.client else self._stream.remote_host
        if name == "SERVER_PORT":
            return str(self._stream.server_port)
        if name == "SERVER_NAME":
            return split_host(self.variable("HTTP_HOST").encode("latin-1"), b"")[0].decode(
                "latin-1"
            )
        field = name[5:].lower().replace("_", "-").encode("latin-1")
        values = request.get_all(field)
        return b", ".join(values).decode("latin-1")

    def filename(self, path: str) -> str:
        base = self._rules.base
        if base and not (path == base or path.startswith(base + "/")):
            return ""
        return self._rules.root + path[len(base) :]

    def is_file(self, filename: str) -> bool:
        return os.path.isfile(filename)

    def is_dir(self, filename: str) -> bool:
        return os.path.isdir(filename)
