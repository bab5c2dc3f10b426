"""What operations do with the host's applications: their status document, their request
counters, finding one by name, a rolling restart, new worker bounds.

``corral.app.Host`` keeps the applications and calls these (its ``status``, ``restart_app``,
``scale_app``...): the figures and actions live here, beside the status document they feed,
rather than in the composition root. Each function takes the applications as ``HostedApp``
(what an application is to operations: its configuration, pool, front route, controller).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from corral import __version__
from corral.config.model import AppConfig
from corral.front.routes import AppRoute
from corral.front.stats import FrontStats, RequestStats
from corral.ops.history import History
from corral.ops.status import FrontStatus, HostStatus, app_ids, build_app_status, find_app
from corral.runtime.controller import AppController
from corral.supervision.pool import Pool
from corral.supervision.service import ServicePool

logger = logging.getLogger("corral")


class HostedApp(Protocol):
    """One application as operations see it (``corral.app.Application``)."""

    @property
    def config(self) -> AppConfig: ...

    @property
    def pool(self) -> Pool | ServicePool: ...

    @property
    def route(self) -> AppRoute: ...

    @property
    def controller(self) -> AppController | None: ...


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the status document says of the host itself."""

    config_path: str
    started_at: float
    state: str
    #: (address, port, whether it is an https listener).
    listening: tuple[tuple[str, int, bool], ...]
    #: The front processes' pids (``front_processes`` > 1).
    fronts: tuple[int, ...] = ()


def ids(apps: Sequence[HostedApp]) -> list[str]:
    return app_ids([(a.config.site, a.config.name) for a in apps])


def request_stats(apps: Sequence[HostedApp]) -> dict[str, RequestStats]:
    """Every application's live request counters, by status id."""
    return {ident: app.route.stats for ident, app in zip(ids(apps), apps, strict=True)}


def host_status(
    facts: HostFacts,
    apps: Sequence[HostedApp],
    history: History,
    front: FrontStats | None,
    connections_open: int,
    now: float,
) -> HostStatus:
    """Every application's figures now (``corral.ops.status``); ``now``: the loop's clock."""
    shown = []
    for ident, app in zip(ids(apps), apps, strict=True):
        controller = app.controller
        last = None if controller is None else controller.last_deploy
        shown.append(
            build_app_status(
                ident,
                app.config,
                app.pool.snapshot(),
                app.route.stats,
                history,
                now,
                phase=None
                if controller is None or controller.spec.deploy is None
                else controller.phase,
                last_deploy=None if last is None else last.describe(),
                service=isinstance(app.pool, ServicePool),
                deploys=(0, 0)
                if controller is None
                else (controller.deploy_runs, controller.deploy_failures),
            )
        )
    return HostStatus(
        schema=1,
        version=__version__,
        pid=os.getpid(),
        config=facts.config_path,
        started=round(facts.started_at, 3),
        uptime=round(time.time() - facts.started_at, 3),
        state=facts.state,
        listening=tuple(
            f"{'https' if tls else 'http'}://" + (f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
            for h, p, tls in facts.listening
        ),
        front=FrontStatus(
            connections_open=connections_open,
            connections_opened=0 if front is None else front.connections_opened,
            protocol_errors={}
            if front is None
            else {str(k): v for k, v in sorted(front.protocol_errors.items())},
            processes=facts.fronts,
        ),
        apps=tuple(shown),
    )


_App = TypeVar("_App", bound=HostedApp)


def find(apps: Sequence[_App], ident: str) -> _App:
    """The application ``ident`` names (``NAME`` or ``SITE/NAME``); ``LookupError``."""
    return apps[find_app(ident, [(a.config.site, a.config.name) for a in apps])]


async def restart(app: HostedApp, ident: str) -> tuple[bool, str]:
    """A rolling restart of one application, as touching its restart.txt does; whether the
    new workers took over (False: they could not start, the old ones keep serving).
    ``LookupError``: its server is not one Corral starts."""
    if app.controller is None:
        raise LookupError(f"{ident}: its server is not started by Corral; nothing to restart")
    logger.info("app %s: restart asked for (corral restart)", app.route.name)
    if await app.controller.restart("corral restart"):
        return True, f"{ident}: restarted"
    return False, f"{ident}: the new workers could not start; the old ones keep serving"


def scale(app: HostedApp, ident: str, min_workers: int | None, max_workers: int | None) -> str:
    """New worker bounds for one application (``Pool.set_bounds``); ``LookupError``,
    ``ValueError`` (bounds the policy refuses)."""
    pool = app.pool
    if not isinstance(pool, Pool):
        raise LookupError(f"{ident}: its server is not started by Corral; nothing to scale")
    current = pool.snapshot()
    low = current.min_instances if min_workers is None else min_workers
    high = current.max_instances if max_workers is None else max_workers
    pool.set_bounds(low, high)
    return f"{ident}: workers {low} to {high} (until the next reload)"
