"""What an engine kind provides, and what it gives the composition root for one application.

An engine *declaration* (``config.model.EngineConfig``: parsed from web.config,
applicationHost.config or TOML) says what to start and how to talk to it; an engine *kind*
(an ``EngineType``, one module of this package each) is the runtime meaning of such a declaration:
the ``LaunchPlan`` of a worker, how to connect to it and probe it, how many requests one worker
takes at once, and whether its route speaks HTTP or may tunnel. ``corral.engines.kind_for``
picks the kind of a declaration from the registry in ``corral.engines``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from corral.backends import fastcgi
from corral.backends import http as http_backend
from corral.config.errors import ConfigError, ConfigErrors
from corral.config.model import AppConfig, EngineConfig, Location, WireProtocol
from corral.supervision.balance import BalanceSettings
from corral.supervision.checks import Check
from corral.supervision.launch import Address, LaunchPlan
from corral.supervision.lease import Connect, Probe
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Spawner

#: Requests one HTTP backend process serves at once (one kept-alive connection each): HTTP
#: servers such as Node.js are event-driven, and a WebSocket holds its connection for as long as
#: it is open. More start a second process (``--set connections_per_worker=N`` overrides).
HTTP_CONNECTIONS_PER_WORKER = 100


class Unsupported(ConfigErrors):
    """The configuration asks for something this runtime cannot run (yet)."""


@dataclass(frozen=True, slots=True)
class Backend:
    """How to run one application's backends and talk to them."""

    #: What one worker runs; None when nothing is started (a tcp.service engine).
    plan: LaunchPlan | None
    connect: Connect
    #: Running servers to connect to (tcp.service); empty when Corral starts the workers.
    addresses: tuple[Address, ...] = ()
    #: tcp.service: the active health check of each server (healthCheck), and the balancing
    #: policy's settings (slowStart...).
    check: Check | None = None
    balance: BalanceSettings | None = None
    #: Readiness check of a started worker (the pool's); None for a service.
    probe: Probe | None = None
    #: The backend speaks HTTP/1.1 (``Route.http``).
    http: bool = False
    #: The backend may answer Upgrade requests with 101 (``Route.upgrade``: WebSocket tunnel).
    upgrade: bool = False
    #: Starts the workers instead of a plain spawn (preloaded workers: a template forks them).
    spawner: Spawner | None = None


class EngineType(Protocol):
    """One kind of engine (the runtime side of ``config.model.EngineKind``): a module of
    ``corral.engines`` provides one, registered in ``registry.KINDS``."""

    #: Short name for logs and docs ("python-worker", "fd0-command"...).
    @property
    def name(self) -> str: ...

    def handles(self, engine: EngineConfig) -> bool:
        """Whether this kind runs ``engine`` (the registry asks each kind in order)."""
        ...

    def connections_per_worker(self, engine: EngineConfig) -> int | None:
        """Requests one worker serves at once, or None for the pool's default."""
        ...

    def elastic(self, engine: EngineConfig) -> bool:
        """Whether its workers can grow and shrink their concurrency on demand (Corral's
        Python worker with ``threads`` unset): the pool then adapts it (adaptive concurrency);
        otherwise only the number of workers adapts."""
        ...

    def backend(self, app: AppConfig, settings: PoolSettings) -> Backend:
        """What runs ``app`` and how to reach it; ``Unsupported`` when it cannot run."""
        ...


def app_label(app: AppConfig) -> str:
    """How logs and error pages name an application: ``site:/virtual/path:name``."""
    return f"{app.site}:{app.virtual_path}:{app.name}"


def speaks_http(engine: EngineConfig) -> bool:
    return engine.protocol is WireProtocol.HTTP


def http_capacity(engine: EngineConfig) -> int | None:
    """An HTTP backend's requests per worker; None (the pool's default) for FastCGI."""
    return HTTP_CONNECTIONS_PER_WORKER if speaks_http(engine) else None


def connect_for(app: AppConfig) -> Connect:
    """The client that talks to ``app``'s backends: HTTP/1.1, or FastCGI (php-fpm's dialect for
    ``fastcgi-php``)."""
    label = app_label(app)
    if speaks_http(app.engine):
        return functools.partial(http_backend.connect, name=label)
    php = app.engine.protocol is WireProtocol.FASTCGI_PHP
    return functools.partial(fastcgi.connect, name=label, php_fpm=php)


def unsupported(app: AppConfig, setting: str, message: str) -> Unsupported:
    """A refusal that names the engine's file and line (else the application's)."""
    where = app.engine.location or app.location or Location(app.physical_path)
    return Unsupported([ConfigError(where, setting, message)])
