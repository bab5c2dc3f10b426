"""The one declaration of every configuration setting, gathered and indexed by spelling.

Each `Setting` (`corral.config.setting`) names the value once for every spelling Corral reads:
the key in Corral's TOML, the attribute or variable in Helicon Zoo's XML (`applicationHost.config`
engines, `web.config` `<environmentVariables>`), its type, default and a one-line doc, whether the
runtime acts on it yet, the model field it fills and, for the settings a pool acts on, the
`PoolSettings` field it becomes (`PoolUse`, also the name `corral serve --set` takes). The
readers validate against these tables, `declare` builds `EngineConfig` and `FrontSettings` from
them, `PoolSettings` takes its defaults and bounds from them, `corral.engines.pool_settings_for`
maps an application's values through them, `corral check` lists set values that are not in
effect from them, and `docs/configuration.md` is generated from them
(`python -m corral.config.docgen`).

The tables: `settings_engine` (engines), `settings_app` (applications, sites, mounts),
`settings_server` (the front server, and the pool settings only `--set` spells).
"""

from __future__ import annotations

from corral.config.model import Transport, WireProtocol
from corral.config.setting import Kind, PoolUse, Scope, Setting
from corral.config.settings_app import APP_SETTINGS, SITE_SETTINGS, TENANT_SETTINGS
from corral.config.settings_engine import ENGINE_SETTINGS
from corral.config.settings_server import FRONT_DEFAULTS, POOL_SETTINGS, SERVER_SETTINGS

__all__ = [
    "APP_BY_TOML",
    "APP_BY_VARIABLE",
    "BY_NAME",
    "ENGINE_BY_ATTRIBUTE",
    "ENGINE_BY_TOML",
    "FRONT_DEFAULTS",
    "NOT_FRONT",
    "POOL_BY_FIELD",
    "PROTOCOLS_IN_EFFECT",
    "SERVER_BY_ATTRIBUTE",
    "SERVER_BY_TOML",
    "SETTINGS",
    "SITE_BY_TOML",
    "TENANT_BY_ATTRIBUTE",
    "TENANT_BY_TOML",
    "TRANSPORTS_IN_EFFECT",
    "Kind",
    "PoolUse",
    "Scope",
    "Setting",
    "by_scope",
]

SETTINGS: tuple[Setting, ...] = (
    ENGINE_SETTINGS
    + APP_SETTINGS
    + SITE_SETTINGS
    + TENANT_SETTINGS
    + SERVER_SETTINGS
    + POOL_SETTINGS
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def by_scope(scope: Scope) -> tuple[Setting, ...]:
    return tuple(setting for setting in SETTINGS if setting.scope is scope)


#: Engine XML attribute -> setting.
ENGINE_BY_ATTRIBUTE: dict[str, Setting] = {
    s.zoo_name: s for s in by_scope(Scope.ENGINE) if s.kind is not Kind.ENV
}
#: Engine TOML key -> setting.
ENGINE_BY_TOML: dict[str, Setting] = {s.toml_key: s for s in by_scope(Scope.ENGINE) if s.toml_key}
#: Application variable name (as in web.config) -> setting; the variables Corral interprets.
APP_BY_VARIABLE: dict[str, Setting] = {
    s.zoo_name: s
    for s in by_scope(Scope.APP)
    if s.kind is not Kind.ENV and s.name not in ("app.engine", "app.paths")
}
#: `[server]` settings of the server file itself, not of the front (`FrontSettings`).
NOT_FRONT = frozenset({"server.application_host", "server.include", "server.include_bindings"})
#: Front-server settings (FrontSettings fields): `[server]` TOML key -> setting.
SERVER_BY_TOML: dict[str, Setting] = {
    s.toml_key: s for s in by_scope(Scope.SERVER) if s.name not in NOT_FRONT
}
#: Front-server settings: `<heliconZooServer>` attribute -> setting.
SERVER_BY_ATTRIBUTE: dict[str, Setting] = {s.zoo_name: s for s in SERVER_BY_TOML.values()}
#: A site's own scalar settings in the server TOML (`[sites.NAME]`): TOML key -> setting.
SITE_BY_TOML: dict[str, Setting] = {
    s.toml_key: s for s in by_scope(Scope.SITE) if s.kind in (Kind.BOOL, Kind.HSTS)
}
#: Application TOML key -> setting.
APP_BY_TOML: dict[str, Setting] = {s.toml_key: s for s in by_scope(Scope.APP) if s.toml_key}
#: Users and limits: TOML key (site and mount tables) -> setting.
TENANT_BY_TOML: dict[str, Setting] = {s.toml_key: s for s in by_scope(Scope.TENANT)}
#: Users and limits: applicationHost.config attribute of an application pool's `<add>` (or,
#: for `processModel userName`/`groupName`, of its `<processModel>`) -> setting.
TENANT_BY_ATTRIBUTE: dict[str, Setting] = {s.zoo_name: s for s in by_scope(Scope.TENANT)}
#: `PoolSettings` field (and `--set` name) -> the setting that fills it.
POOL_BY_FIELD: dict[str, Setting] = {s.pool.field: s for s in SETTINGS if s.pool is not None}

#: Values of engine settings the runtime implements (anything else is listed as not in effect).
#: (`corral.engines.backend_for` is what runs them; it refuses the others with a clear error.)
TRANSPORTS_IN_EFFECT: frozenset[Transport] = frozenset(
    {Transport.NAMED_PIPE, Transport.TCP, Transport.TCP_SERVICE, Transport.UNIX}
)
PROTOCOLS_IN_EFFECT: frozenset[WireProtocol] = frozenset(
    {WireProtocol.FASTCGI, WireProtocol.FASTCGI_PHP, WireProtocol.HTTP}
)
