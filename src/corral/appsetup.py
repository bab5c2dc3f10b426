"""How one configured application runs: ``AppConfig`` -> pool settings, launch plan, connection.

The composition root (``corral.app``) asks this module, once per application at start-up:

- ``pool_settings_for(app, overrides)``: the pool's limits and timeouts. The one place where the
  configuration's settings become ``PoolSettings``: the engine's values, then the command line's
  overrides (``--min``, ``--max``, ``--set NAME=VALUE``), which win.
- ``backend_for(app, settings)``: what to start and how to reach it (a ``Backend``): the
  ``LaunchPlan`` of one worker and the ``connect`` function for the pool, or, for a
  ``tcp.service`` engine, only the address of the running server.

Engines, by kind and transport:

==================  ============  ==========================================================
kind                transport     runs as
==================  ============  ==========================================================
python-worker       NamedPipe     ``python -m corral.worker`` under ``app.interpreter``; the
                                  socket at fd 0; PYTHONPATH = the app's + Corral's package.
command             NamedPipe     ``app.argv`` (php-cgi, any FastCGI responder): the socket at
                                  fd 0 (the FastCGI convention).
service             tcp.service   nothing started: FastCGI connections to host:portLower.
any                 tcp           (HTTP backends / ports from a range: not implemented yet;
                                  ``Unsupported`` names the engine's line.)
==================  ============  ==========================================================

Protocols: ``fastcgi`` and ``fastcgi-php`` (php-cgi, php-fpm: the client sends no split PARAMS
records and no padding on empty records; the script's variables, SCRIPT_FILENAME..., come from
the route of a file handler such as ``*.php``); ``http`` is not implemented yet
(``Unsupported``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType

from corral.backends import fastcgi
from corral.config.errors import ConfigError, ConfigErrors
from corral.config.expand import finish_argv, finish_env
from corral.config.model import AppConfig, EngineKind, Location, Protocol, Transport
from corral.supervision.launch import Address, LaunchPlan, python_worker_plan
from corral.supervision.pool import PoolSettings

#: Requests that may wait for a worker before the pool answers 503. The pool's own default (100)
#: suits an application with its own limits; for `corral serve`, clients should rather wait (up
#: to the acquire timeout) than be turned away while a few workers are busy: IIS queues 1000.
SERVE_QUEUE_SIZE = 1000

#: The names `--set` accepts for pools (PoolSettings fields that hold plain values).
POOL_SETTING_NAMES = frozenset(f.name for f in fields(PoolSettings) if f.name != "backoff")


_NONE: Mapping[str, object] = MappingProxyType({})


class Unsupported(ConfigErrors):
    """The configuration asks for something this runtime cannot run (yet)."""


Connect = Callable[[Address], Awaitable[fastcgi.FastCGIClientConnection]]


@dataclass(frozen=True, slots=True)
class Backend:
    """How to run one application's backends and talk to them."""

    #: What one worker runs; None when nothing is started (a tcp.service engine).
    plan: LaunchPlan | None
    connect: Connect
    #: A running server to connect to (tcp.service); None when Corral starts the workers.
    address: Address | None = None


def app_label(app: AppConfig) -> str:
    """How logs and error pages name an application: ``site:/virtual/path:name``."""
    return f"{app.site}:{app.virtual_path}:{app.name}"


def pool_settings_for(app: AppConfig, overrides: Mapping[str, object] = _NONE) -> PoolSettings:
    """The pool settings of ``app``: engine values, then ``overrides`` (command line) on top.

    ``overrides`` maps ``PoolSettings`` field names to values (``--min``/``--max`` arrive as
    ``min_instances``/``max_instances``). A maximum below the minimum is raised to it.
    """
    engine = app.engine
    settings = PoolSettings(
        min_instances=engine.min_instances,
        max_instances=engine.max_instances,
        queue_size=SERVE_QUEUE_SIZE,
        graceful_shutdown_timeout=float(engine.graceful_shutdown_timeout),
    )
    changes = {name: value for name, value in overrides.items() if name in POOL_SETTING_NAMES}
    unknown = set(overrides) - POOL_SETTING_NAMES
    if unknown:
        raise ValueError(f"not pool settings: {', '.join(sorted(unknown))}")
    minimum = changes.get("min_instances", settings.min_instances)
    maximum = changes.get("max_instances", settings.max_instances)
    assert isinstance(minimum, int) and isinstance(maximum, int)
    if 0 < maximum < minimum:
        if "max_instances" in changes and "min_instances" not in changes:
            changes["min_instances"] = maximum
        else:
            changes["max_instances"] = minimum
    return replace(settings, **changes)  # type: ignore[arg-type]


def _unsupported(app: AppConfig, setting: str, message: str) -> Unsupported:
    where = app.engine.location or app.location or Location(app.physical_path)
    return Unsupported([ConfigError(where, setting, message)])


def backend_for(app: AppConfig, settings: PoolSettings) -> Backend:
    """What runs ``app`` and how the front reaches it; ``Unsupported`` when not implemented."""
    engine = app.engine
    label = app_label(app)
    php = engine.protocol is Protocol.FASTCGI_PHP
    if engine.protocol is Protocol.HTTP:
        # The seam for HTTP backends (engineer `httpback`): a Backend whose connect opens an
        # HTTP/1.1 client connection, and for transport tcp, ports from portLower..portUpper.
        raise _unsupported(
            app,
            "protocol",
            f"engine {engine.name!r} speaks HTTP to its backend, which this version of "
            "Corral does not run yet (FastCGI engines only)",
        )
    connect: Connect = functools.partial(fastcgi.connect, name=label, php_fpm=php)
    if engine.kind is EngineKind.SERVICE or engine.transport is Transport.TCP_SERVICE:
        address = (engine.host, engine.port_lower)
        return Backend(None, connect, address=address)
    if engine.transport is Transport.TCP:
        raise _unsupported(
            app,
            "transport",
            f"engine {engine.name!r}: transport 'tcp' (a port per worker from "
            f"{engine.port_lower}..{engine.port_upper}) is not supported yet; use NamedPipe",
        )
    env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0)
    if engine.kind is EngineKind.PYTHON_WORKER:
        plan = python_worker_plan(
            app.current_directory,
            python=app.interpreter,
            threads=settings.connections_per_worker,
            engine=engine.name,
            base_env=env,
        )
        return Backend(plan, connect)
    argv = finish_argv(app.argv, port=None, host=None, instance_id=0)
    plan = LaunchPlan(argv=tuple(argv), env=env, cwd=app.current_directory)
    return Backend(plan, connect)
