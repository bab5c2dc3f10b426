"""Turning an engine declaration (XML attributes or a TOML table) into an `EngineConfig`, and
the server settings into `FrontSettings`.

Shared by `servercfg` (applicationHost.config) and `tomlfile` (Corral's TOML). Values not written
come from `base` (the engine being overridden, if any) and then from the settings' defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from corral.config import builtin_engines
from corral.config.errors import Problems
from corral.config.model import (
    EngineConfig,
    EngineKind,
    EnvVar,
    FrontSettings,
    Location,
    Tenancy,
    Transport,
    WireProtocol,
)
from corral.config.settings import BY_NAME, Scope, by_scope

#: setting name -> (value as written, where)
Written = dict[str, tuple[object, Location]]

#: The engine settings that fill an `EngineConfig` field of their name as they are converted
#: (name, transport, protocol and env are set apart: the name is the table's, the kind follows
#: the transport, and env is merged).
_ENGINE_FIELDS = tuple(
    setting
    for setting in by_scope(Scope.ENGINE)
    if setting.attribute not in ("name", "transport", "protocol", "env")
)


def declare_engine(
    name: str,
    written: Written,
    env: tuple[EnvVar, ...] | None,
    *,
    origin: str,
    location: Location,
    problems: Problems,
    base: EngineConfig | None = None,
) -> EngineConfig | None:
    """The engine, or None after adding every error in the declaration to `problems`.

    Unwritten values come from `base` (Corral's TOML amends the engine it overrides), else from
    the built-in engine the name stands for, else from the settings' defaults. Set values that
    are not in effect are listed by `load` for the engines applications use.
    """
    ok = True
    values: dict[str, object] = {}
    for setting_name, (raw, where) in written.items():
        setting = BY_NAME[setting_name]
        try:
            values[setting_name] = setting.convert(raw)
        except ValueError as error:
            problems.add(where, _spelling(setting_name, origin), str(error))
            ok = False
            continue
    if not ok:
        return None

    def get(setting_name: str, fallback: object) -> object:
        return values.get(setting_name, fallback)

    if base is None:
        builtin = builtin_engines.built_in(name)
        base = builtin if builtin is not None else _blank(name)
    transport = Transport(str(get("engine.transport", base.transport.value)))
    protocol = WireProtocol(str(get("engine.protocol", base.protocol.value)))
    if transport is Transport.TCP_SERVICE:
        kind = EngineKind.SERVICE
    elif base.kind is EngineKind.PYTHON_WORKER or name == builtin_engines.PYTHON:
        kind = EngineKind.PYTHON_WORKER
    else:
        kind = EngineKind.COMMAND
    # Every other engine setting fills the EngineConfig field of its name (`Setting.attribute`).
    fields: dict[str, object] = {
        setting.attribute: values[setting.name]
        for setting in _ENGINE_FIELDS
        if setting.name in values
    }
    engine = replace(
        base,
        name=name,
        kind=kind,
        transport=transport,
        protocol=protocol,
        env=_merge_env(base.env, env, amend=origin == "toml"),
        origin=origin,
        location=location,
        # Each value has its setting's kind (an INT setting converts to an int...), which is
        # the field's type (tests/unit/config: test_engine_settings_fill_fields_of_their_type).
        **fields,  # type: ignore[arg-type]
    )
    if engine.port_lower > engine.port_upper:
        where = written.get("engine.port_lower", (None, location))[1]
        problems.add(
            where,
            _spelling("engine.port_lower", origin),
            f"portLower {engine.port_lower} is above portUpper {engine.port_upper}",
        )
        return None
    if 0 < engine.max_instances < engine.min_instances:
        where = written.get("engine.min_instances", (None, location))[1]
        problems.add(
            where,
            _spelling("engine.min_instances", origin),
            f"minInstances {engine.min_instances} is above maxInstances {engine.max_instances}",
        )
        return None
    return engine


def _spelling(setting_name: str, origin: str) -> str:
    """How the file the value came from spells the setting: its TOML key, or its Zoo name."""
    setting = BY_NAME[setting_name]
    return setting.toml_key if origin == "toml" else setting.zoo_name


def _merge_env(
    base: tuple[EnvVar, ...], env: tuple[EnvVar, ...] | None, *, amend: bool
) -> tuple[EnvVar, ...]:
    """Zoo's <userEngines> replace the variables; Corral's TOML amends them by name."""
    if env is None:
        return base
    if not amend:
        return env
    merged = {var.name: var for var in base}
    for var in env:
        merged.pop(var.name, None)
        merged[var.name] = var
    return tuple(merged.values())


def _blank(name: str) -> EngineConfig:
    return EngineConfig(
        name=name,
        kind=EngineKind.COMMAND,
        transport=Transport(str(BY_NAME["engine.transport"].default)),
        protocol=WireProtocol(str(BY_NAME["engine.protocol"].default)),
    )


#: Server settings naming a file: relative to the folder of the file that sets them.
_SERVER_FILES = frozenset(("server.access_log", "server.pid_file"))


def _beside(value: str, file: str) -> str:
    """A file setting's path: as written when absolute (or "-", "off"), else beside ``file``."""
    if value in ("-", "off") or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(file)), value))


def declare_server(
    layers: Iterable[tuple[Written, str]], problems: Problems, base: FrontSettings | None = None
) -> FrontSettings:
    """The front server's settings: `base` (default: FrontSettings' defaults), then each layer
    of written `server.*` values in order (a later layer wins). A layer's origin is "toml" or
    the XML file's kind; errors are added to `problems` in that origin's spelling."""
    values: dict[str, object] = {}
    for written, origin in layers:
        for setting_name, (raw, where) in written.items():
            setting = BY_NAME[setting_name]
            try:
                value = setting.convert(raw)
                if setting_name in _SERVER_FILES and isinstance(value, str):
                    value = _beside(value, where.file)
                values[setting_name.removeprefix("server.")] = value
            except ValueError as error:
                problems.add(
                    where, setting.toml_key if origin == "toml" else setting.zoo_name, str(error)
                )
    return replace(base or FrontSettings(), **values)  # type: ignore[arg-type]


def declare_tenancy(
    layers: Iterable[tuple[Written, str]], problems: Problems, base: Tenancy | None = None
) -> Tenancy:
    """An application's user and limits: `base`, then each layer of written `tenant.*` values
    in order (a later layer wins: the site's pool, the mount's pool, the TOML site table, the
    TOML mount table). The user's location is kept for refusals naming file and line."""
    values: dict[str, object] = {}
    for written, origin in layers:
        for setting_name, (raw, where) in written.items():
            setting = BY_NAME[setting_name]
            try:
                values[setting.attribute] = setting.convert(raw)
            except ValueError as error:
                problems.add(
                    where, setting.toml_key if origin == "toml" else setting.zoo_name, str(error)
                )
                continue
            if setting_name == "tenant.user":
                values["location"] = where
    return replace(base or Tenancy(), **values)  # type: ignore[arg-type]
