"""One application's ``PoolSettings``: the engine's values, then the command line's, which win.

The one place where the configuration's settings become ``PoolSettings`` for ``corral.app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from corral.config.model import AppConfig
from corral.config.settings import POOL_BY_FIELD, Scope, Setting
from corral.engines.registry import kind_for
from corral.supervision.settings import PoolSettings

#: Requests that may wait for a worker before the pool answers 503. The pool's own default (100)
#: suits an application with its own limits; for `corral serve`, clients should rather wait (up
#: to the acquire timeout) than be turned away while a few workers are busy: IIS queues 1000.
SERVE_QUEUE_SIZE = 1000

#: The names `--set` accepts for pools: every declared setting's `PoolUse` field.
POOL_SETTING_NAMES = frozenset(POOL_BY_FIELD)
#: What an override may also name: fields derived from the engine, not settings.
_DERIVED = frozenset({"source_suffixes"})

#: The engine's and the application's settings a pool acts on (`Setting.pool`), with the model
#: object each reads from.
_ENGINE_USES = tuple(s for s in POOL_BY_FIELD.values() if s.scope is Scope.ENGINE)
_APP_USES = tuple(s for s in POOL_BY_FIELD.values() if s.scope is Scope.APP)

_NONE: Mapping[str, object] = MappingProxyType({})


def _pool_value(setting: Setting, model: object) -> tuple[str, object]:
    use = setting.pool
    assert use is not None
    return use.field, use.convert(getattr(model, setting.attribute))


def pool_settings_for(app: AppConfig, overrides: Mapping[str, object] = _NONE) -> PoolSettings:
    """The pool settings of ``app``: engine values, then ``overrides`` (command line) on top.

    Every declared setting a pool acts on is mapped through its ``PoolUse`` (minutes to
    seconds, 0 to "never"...). ``overrides`` maps ``PoolSettings`` field names to values
    (``--min``/``--max`` arrive as ``min_instances``/``max_instances``). A maximum below the
    minimum is raised to it. An application with its own request limit
    (``AppConfig.max_requests``: PHP_FCGI_MAX_REQUESTS) is recycled at that limit at the latest.
    """
    unknown = set(overrides) - POOL_SETTING_NAMES - _DERIVED
    if unknown:
        raise ValueError(f"not pool settings: {', '.join(sorted(unknown))}")
    engine = app.engine
    values: dict[str, object] = dict(_pool_value(s, engine) for s in _ENGINE_USES)
    values.update(_pool_value(s, app) for s in _APP_USES)
    values["queue_size"] = SERVE_QUEUE_SIZE
    values["source_suffixes"] = engine.source_suffixes or (".py",)
    if not engine.max_requests:
        # The engine's jitter goes with the engine's own request limit; a limit given on the
        # command line alone gets the pool's default jitter.
        del values["max_requests_jitter"]
    kind = kind_for(engine)
    capacity = kind.connections_per_worker(engine)
    if capacity is not None:
        values["connections_per_worker"] = capacity
    if not kind.elastic(engine):
        values["max_threads_per_worker"] = 0  # fixed: threads set, or an engine that cannot grow
    values.update(overrides)
    if "connections_per_worker" in overrides and "max_threads_per_worker" not in overrides:
        values["max_threads_per_worker"] = 0  # an explicit concurrency stays fixed
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
