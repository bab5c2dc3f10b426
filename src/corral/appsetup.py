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
command             NamedPipe     ``app.argv`` (php-cgi, any FastCGI responder, or an HTTP
                                  server): the socket at fd 0 (the FastCGI convention).
command             tcp           ``app.argv`` listening itself on a port picked per worker from
                                  portLower..portUpper (``Transport.PORT``: PORT/HOST and
                                  %PORT%/%HOST% filled in): Node.js, any HTTP server.
service             tcp.service   nothing started: connections to host:portLower (or host
                                  unix:/path, a Unix socket).
==================  ============  ==========================================================

Protocols: ``fastcgi`` and ``fastcgi-php`` (php-cgi, php-fpm: the client sends no split PARAMS
records and no padding on empty records; the script's variables, SCRIPT_FILENAME..., come from
the route of a file handler such as ``*.php``); ``http`` (``backends.http``; the route is marked
``http`` and ``upgrade``, so WebSocket passes through; readiness is the port accepting a
connection; ``HTTP_CONNECTIONS_PER_WORKER`` requests per process at once).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

from corral.backends import PooledUpstream, fastcgi
from corral.backends import http as http_backend
from corral.config.errors import ConfigError, ConfigErrors
from corral.config.expand import finish_argv, finish_env
from corral.config.model import AppConfig, EngineKind, Location, Protocol, Transport
from corral.supervision.launch import Address, LaunchPlan, python_worker_plan
from corral.supervision.launch import Transport as LaunchTransport
from corral.supervision.lease import Probe
from corral.supervision.probe import fastcgi_port_probe, port_probe
from corral.supervision.settings import PoolSettings

#: Requests that may wait for a worker before the pool answers 503. The pool's own default (100)
#: suits an application with its own limits; for `corral serve`, clients should rather wait (up
#: to the acquire timeout) than be turned away while a few workers are busy: IIS queues 1000.
SERVE_QUEUE_SIZE = 1000

#: The names `--set` accepts for pools (PoolSettings fields that hold plain values).
POOL_SETTING_NAMES = frozenset(f.name for f in fields(PoolSettings) if f.name != "backoff")


_NONE: Mapping[str, object] = MappingProxyType({})


class Unsupported(ConfigErrors):
    """The configuration asks for something this runtime cannot run (yet)."""


Connect = Callable[[Address], Awaitable[PooledUpstream]]

#: Requests one HTTP backend process serves at once (one kept-alive connection each): HTTP
#: servers such as Node.js are event-driven, and a WebSocket holds its connection for as long as
#: it is open. More start a second process (``--set connections_per_worker=N`` overrides).
HTTP_CONNECTIONS_PER_WORKER = 100


@dataclass(frozen=True, slots=True)
class Backend:
    """How to run one application's backends and talk to them."""

    #: What one worker runs; None when nothing is started (a tcp.service engine).
    plan: LaunchPlan | None
    connect: Connect
    #: A running server to connect to (tcp.service); None when Corral starts the workers.
    address: Address | None = None
    #: Readiness check of a started worker (the pool's); None: FCGI_GET_VALUES answered.
    probe: Probe | None = None
    #: The backend speaks HTTP/1.1 (``Route.http``).
    http: bool = False
    #: The backend may answer Upgrade requests with 101 (``Route.upgrade``: WebSocket tunnel).
    upgrade: bool = False


def app_label(app: AppConfig) -> str:
    """How logs and error pages name an application: ``site:/virtual/path:name``."""
    return f"{app.site}:{app.virtual_path}:{app.name}"


def pool_settings_for(app: AppConfig, overrides: Mapping[str, object] = _NONE) -> PoolSettings:
    """The pool settings of ``app``: engine values, then ``overrides`` (command line) on top.

    ``overrides`` maps ``PoolSettings`` field names to values (``--min``/``--max`` arrive as
    ``min_instances``/``max_instances``). A maximum below the minimum is raised to it. An
    application with its own request limit (``AppConfig.max_requests``: PHP_FCGI_MAX_REQUESTS)
    is recycled at that limit at the latest.
    """
    unknown = set(overrides) - POOL_SETTING_NAMES
    if unknown:
        raise ValueError(f"not pool settings: {', '.join(sorted(unknown))}")
    engine = app.engine
    values: dict[str, object] = {
        "min_instances": engine.min_instances,
        "max_instances": engine.max_instances,
        "queue_size": SERVE_QUEUE_SIZE,
        "graceful_shutdown_timeout": float(engine.graceful_shutdown_timeout),
        "idle_timeout": float(engine.idle_timeout) if engine.idle_timeout else None,
        "memory_limit_mb": engine.memory_limit,
        "time_limit": engine.time_limit * 60.0 if engine.time_limit else None,
        "memory_reserve_mb": engine.memory_reserve,
        "pipeline_depth": engine.pipeline_depth,
        "health_interval": engine.health_interval,
        "probe_interval": engine.probe_interval,
        "probe_timeout": engine.probe_timeout,
        "request_timeout": (
            float(app.worker_request_timeout) if app.worker_request_timeout else None
        ),
        "source_suffixes": engine.source_suffixes or (".py",),
    }
    if engine.max_requests:
        values["max_requests"] = engine.max_requests
        values["max_requests_jitter"] = engine.max_requests_jitter / 100.0
    if engine.protocol is Protocol.HTTP:
        values["connections_per_worker"] = HTTP_CONNECTIONS_PER_WORKER
    elif engine.kind is EngineKind.PYTHON_WORKER:
        values["connections_per_worker"] = engine.threads
    values.update(overrides)
    if app.max_requests:
        # php-cgi quits by itself after PHP_FCGI_MAX_REQUESTS: the pool retires it after that
        # many (or fewer, when the command line asks), never later, and without jitter, which
        # would send requests to a php-cgi that has gone.
        asked = values.get("max_requests")
        values["max_requests"] = (
            min(asked, app.max_requests) if isinstance(asked, int) and asked else app.max_requests
        )
        values["max_requests_jitter"] = 0.0
    minimum, maximum = values["min_instances"], values["max_instances"]
    assert isinstance(minimum, int) and isinstance(maximum, int)
    if 0 < maximum < minimum:
        if "max_instances" in overrides and "min_instances" not in overrides:
            values["min_instances"] = maximum
        else:
            values["max_instances"] = minimum
    return PoolSettings(**values)  # type: ignore[arg-type]


def _unsupported(app: AppConfig, setting: str, message: str) -> Unsupported:
    where = app.engine.location or app.location or Location(app.physical_path)
    return Unsupported([ConfigError(where, setting, message)])


def backend_for(app: AppConfig, settings: PoolSettings) -> Backend:
    """What runs ``app`` and how the front reaches it; ``Unsupported`` when not implemented."""
    engine = app.engine
    label = app_label(app)
    php = engine.protocol is Protocol.FASTCGI_PHP
    http = engine.protocol is Protocol.HTTP
    connect: Connect
    if http:
        connect = functools.partial(http_backend.connect, name=label)
    else:
        connect = functools.partial(fastcgi.connect, name=label, php_fpm=php)
    if engine.kind is EngineKind.SERVICE or engine.transport is Transport.TCP_SERVICE:
        return Backend(None, connect, address=engine.service_address(), http=http, upgrade=http)
    if engine.transport is Transport.TCP:
        return _port_backend(app, connect, http)
    if http and engine.kind is EngineKind.COMMAND:
        # HTTP on the fd-0 Unix socket: ready when the socket accepts a connection.
        env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0)
        argv = finish_argv(app.argv, port=None, host=None, instance_id=0)
        plan = LaunchPlan(argv=tuple(argv), env=env, cwd=app.current_directory)
        return Backend(plan, connect, probe=port_probe, http=True, upgrade=True)
    if http:
        raise _unsupported(
            app,
            "protocol",
            f"engine {engine.name!r}: Corral's Python worker speaks FastCGI, not HTTP",
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
        # The worker answers a WebSocket Upgrade with 101 when it serves an ASGI app (a WSGI
        # app answers it as plain HTTP): its routes may tunnel.
        return Backend(plan, connect, upgrade=True)
    argv = finish_argv(app.argv, port=None, host=None, instance_id=0)
    plan = LaunchPlan(argv=tuple(argv), env=env, cwd=app.current_directory)
    return Backend(plan, connect)


def _port_backend(app: AppConfig, connect: Connect, http: bool) -> Backend:
    """Zoo's ``tcp`` transport: the command listens itself on a port Corral picks per worker
    from portLower..portUpper, given as PORT/HOST and %PORT%/%HOST% (``Transport.PORT``)."""
    engine = app.engine
    if engine.kind is not EngineKind.COMMAND:
        raise _unsupported(
            app,
            "transport",
            f"engine {engine.name!r}: Corral's Python worker takes its socket at fd 0; "
            "use transport NamedPipe",
        )
    if engine.port_lower > engine.port_upper:
        raise _unsupported(
            app,
            "portLower",
            f"engine {engine.name!r}: portLower {engine.port_lower} is above portUpper "
            f"{engine.port_upper}",
        )
    # %PORT%, %HOST% and %INSTANCE_ID% stay as written: the process layer fills them in per
    # worker (supervision.process), with PORT, HOST and INSTANCE_ID in the environment.
    env = dict(os.environ)
    env.update(app.module_vars)
    env.update(app.env)
    plan = LaunchPlan(
        argv=app.argv,
        env=env,
        cwd=app.current_directory,
        transport=LaunchTransport.PORT,
        tcp_host=engine.host,
        port_range=(engine.port_lower, engine.port_upper),
    )
    probe = port_probe if http else fastcgi_port_probe
    return Backend(plan, connect, probe=probe, http=http, upgrade=http)
