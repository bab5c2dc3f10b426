"""The minimal router of the front's own tests and micro-benchmark: applications by virtual path,
no configuration (``corral.front.routes.ConfigRouter`` is the real one)."""

from __future__ import annotations

from collections.abc import Sequence

from corral.front.routes import AppRoute


class PrefixRouter:
    """Routes by virtual path, longest prefix first, on segment boundaries; Host is ignored."""

    def __init__(self, routes: Sequence[AppRoute]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.script_name), reverse=True)
        self._root = next((r for r in self.routes if not r.script_name), None)
        self._only_root = len(self.routes) == 1 and self._root is not None

    def match(self, host: bytes | None, path: bytes, port: int | None = None) -> AppRoute | None:
        if self._only_root:
            return self._root
        for route in self.routes:
            prefix = route.script_name
            if not prefix:
                return route
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == 47):
                return route
        return None
