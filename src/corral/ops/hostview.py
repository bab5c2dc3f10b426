"""What the admin listener needs of the running host: ``AdminHost``.

``corral.app.Host`` implements it; ``corral.ops`` sits below ``corral.app`` in the layers and
sees the host only through this protocol (tests drive the admin listener with a fake one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from corral.front.stats import FrontStats, RequestStats
from corral.ops.history import History
from corral.ops.status import HostStatus


class AdminHost(Protocol):
    #: "starting", "serving", "reloading", "stopping".
    @property
    def state(self) -> str: ...

    @property
    def history(self) -> History: ...

    def status(self) -> HostStatus:
        """The status document now."""
        ...

    def request_stats(self) -> Mapping[str, RequestStats]:
        """Every application's live request counters, by its status id."""
        ...

    def front_stats(self) -> FrontStats | None:
        """The front's own counters (None before it listens)."""
        ...

    async def restart_app(self, ident: str) -> str:
        """A rolling restart (``LookupError``: no such application, or none to restart)."""
        ...

    def scale_app(self, ident: str, min_workers: int | None, max_workers: int | None) -> str:
        """New worker bounds until the next reload (``LookupError``, ``ValueError``)."""
        ...
