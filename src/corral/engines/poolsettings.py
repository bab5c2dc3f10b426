"""One application's ``PoolSettings``: the engine's values, then the command line's, which win.

The one place where the configuration's settings become ``PoolSettings`` for ``corral.app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType

from corral.config.model import AppConfig
from corral.engines.registry import kind_for
from corral.supervision.settings import PoolSettings

#: Requests that may wait for a worker before the pool answers 503. The pool's own default (100)
#: suits an application with its own limits; for `corral serve`, clients should rather wait (up
#: to the acquire timeout) than be turned away while a few workers are busy: IIS queues 1000.
SERVE_QUEUE_SIZE = 1000

#: The names `--set` accepts for pools (PoolSettings fields that hold plain values).
POOL_SETTING_NAMES = frozenset(f.name for f in fields(PoolSettings) if f.name != "backoff")

_NONE: Mapping[str, object] = MappingProxyType({})


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
    capacity = kind_for(engine).connections_per_worker(engine)
    if capacity is not None:
        values["connections_per_worker"] = capacity
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
