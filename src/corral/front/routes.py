"""Where a request goes: (Host, path) -> the application that serves it.

This is the one place the front asks. Today the composition root builds a ``PrefixRouter`` with a
single application at "/"; issue 3's configuration model (many sites, routing by Host and virtual
path) plugs in here by building more routes, or another ``Router``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.backends import BackendConnection
from corral.backends.fastcgi import encode_pairs
from corral.front.cgienv import Pairs, route_params


class Lease(Protocol):
    @property
    def conn(self) -> BackendConnection: ...


class BackendPool(Protocol):
    """What the front needs of ``corral.supervision.pool.Pool``."""

    async def acquire(self, timeout: float | None = ...) -> Any: ...  # noqa: ASYNC109

    def release(self, lease: Any, reusable: bool) -> None: ...


@dataclass(eq=False, slots=True)
class Route:
    """One application as the front sees it."""

    name: str
    pool: BackendPool
    #: The application's virtual path, without a trailing slash ("" for the root application).
    script_name: bytes = b""
    document_root: bytes = b""
    #: CGI variables fixed for this application (built once).
    params: Pairs = field(default_factory=list)
    #: The same, encoded as FastCGI name-value pairs.
    encoded_params: bytes = b""
    #: The backend speaks HTTP/1.1 (``backends.http``), not FastCGI: the front forwards the
    #: request head itself (with X-Forwarded-*) instead of CGI variables.
    http: bool = False
    #: The backend may answer an ``Upgrade`` request (WebSocket) with 101: the front then
    #: tunnels the connection's bytes both ways. Without it, Upgrade requests are served as
    #: plain HTTP (Upgrade is hop-by-hop and not forwarded).
    upgrade: bool = False
    #: ``http or upgrade``: the one test the front's hot path makes per request.
    special: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if not self.params:
            self.params = route_params(self.script_name, self.document_root)
        self.encoded_params = encode_pairs(self.params)
        self.special = self.http or self.upgrade


class Router(Protocol):
    def match(self, host: bytes | None, path: bytes) -> Route | None:
        """The route for a request, or None (404)."""


class PrefixRouter:
    """Routes by virtual path, longest prefix first, on segment boundaries; Host is ignored."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.script_name), reverse=True)
        self._root = next((r for r in self.routes if not r.script_name), None)
        self._only_root = len(self.routes) == 1 and self._root is not None

    def match(self, host: bytes | None, path: bytes) -> Route | None:
        if self._only_root:
            return self._root
        for route in self.routes:
            prefix = route.script_name
            if not prefix:
                return route
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == 47):
                return route
        return None
