"""What one setting is: its declaration (`Setting`), and how it fills a pool's `PoolUse`.

A `Setting` is the one place a setting is written: its name, every spelling Corral reads (the
key in Corral's TOML, the attribute or variable in Helicon Zoo's XML), its type, default, bounds
and a one-line doc, the model field it fills (`Setting.attribute`: `engine.probe_timeout` fills
`EngineConfig.probe_timeout`, `server.header_timeout` fills `FrontSettings.header_timeout`), and,
for a setting a pool acts on, the `PoolSettings` field it becomes (`PoolUse`: also the name
`corral serve --set` takes). The tables are in `settings_engine`, `settings_app` and
`settings_server`; `corral.config.settings` gathers them and indexes them by spelling.

Pure: no I/O, imports only `corral.config.convert`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from corral.config import convert


class Scope(enum.StrEnum):
    #: An engine: `<heliconZooServer><engines|userEngines><add .../>` or TOML `[engines.NAME]`.
    ENGINE = "engine"
    #: An application: a variable of `<application><environmentVariables>` (also TOML key).
    APP = "application"
    #: A site in the server TOML: `[sites.NAME]`.
    SITE = "site"
    #: A mount (IIS application) of a site: `[sites.NAME.apps."/path"]`.
    MOUNT = "mount"
    #: Who an application runs as and what it may use: the server TOML's `[sites.NAME]` or
    #: `[sites.NAME.apps."/path"]`, or the site's application pool in applicationHost.config.
    TENANT = "tenant"
    #: The server TOML's `[server]` table.
    SERVER = "server"
    #: A pool setting no file spells: only `corral serve --set NAME=VALUE` sets it.
    POOL = "pool"


class Kind(enum.StrEnum):
    STR = "string"
    INT = "integer"
    #: A decimal number (seconds): 2, 2.5 or "2.5".
    NUMBER = "number"
    BOOL = "boolean"
    CHOICE = "choice"
    PATH = "path"
    PATH_LIST = "path list"
    #: Addresses or CIDR networks (or *): a list, or a `;`/`,`-separated string.
    ADDRESSES = "addresses"
    #: An address to listen on: HOST:PORT, or a port alone (on 127.0.0.1).
    LISTEN = "host:port"
    MASK = "file masks"
    VIRTUAL_PATH = "virtual path"
    BINDINGS = "bindings"
    ENV = "variables"
    SWITCHBOARD = "switchboard"
    #: A Strict-Transport-Security value: max-age=SECONDS[; includeSubDomains][; preload].
    HSTS = "HSTS policy"
    #: A request the template sends through the app: /path?query or http[s]://host/path.
    WARM_UP = "warm-up request"


def _same(value: object) -> object:
    return value


def to_float(value: object) -> object:
    assert isinstance(value, int | float)
    return float(value)


def seconds_or_never(value: object) -> object:
    """Whole seconds, 0 (or unset) meaning "never" (None)."""
    if value is None:
        return None
    assert isinstance(value, int | float)
    return float(value) if value else None


def minutes_or_never(value: object) -> object:
    """Minutes as seconds, 0 meaning "never" (None)."""
    assert isinstance(value, int | float)
    return value * 60.0 if value else None


def percent(value: object) -> object:
    assert isinstance(value, int | float)
    return value / 100.0


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


@dataclass(frozen=True, slots=True)
class PoolUse:
    """How a setting fills one `PoolSettings` field, in the pool's units.

    `field` is the `PoolSettings` field and the name `corral serve --set` takes; `kind` is what
    `--set` converts its text to (INT, NUMBER or BOOL); `convert` turns the configuration's value
    (minutes, percent, 0 for never...) into the pool's; the bounds are the ones `PoolSettings`
    checks when it is built (`check`). The pool's default is `convert(Setting.default)`.
    """

    field: str
    kind: Kind
    convert: Callable[[object], object] = _same
    minimum: float | None = None
    maximum: float | None = None
    #: The value must be greater than `minimum`.
    above: bool = False
    #: None is allowed (no limit, never).
    optional: bool = False
    #: How the pool's value differs from the setting's, for the docs ("" when it does not).
    unit: str = ""

    def check(self, value: object) -> None:
        """ValueError naming the field when `value` is out of bounds (`PoolSettings`)."""
        if value is None and self.optional:
            return
        assert isinstance(value, int | float)
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            if not low <= value <= high:
                raise ValueError(
                    f"{self.field} must be between {_show(low)} and {_show(high)}, not {value}"
                )
            return
        if low is None:
            return
        none = " or None" if self.optional else ""
        if self.above and value <= low:
            raise ValueError(f"{self.field} must be > {_show(low)}{none}, not {value}")
        if value < low:
            raise ValueError(f"{self.field} must be >= {_show(low)}{none}, not {value}")

    def parse(self, text: str) -> object:
        """`--set NAME=TEXT`: the typed value (bounds are checked by `PoolSettings`)."""
        if self.kind is Kind.BOOL:
            return convert.to_bool(text)
        if self.kind is Kind.NUMBER:
            return convert.to_number(text)
        if self.kind is Kind.INT:
            return convert.to_int(text)
        raise ValueError(f"cannot set a {self.kind.value} from the command line")


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    scope: Scope
    #: Key in Corral's TOML ("" when TOML has no such key).
    toml_key: str
    #: Helicon Zoo / IIS spelling: an XML attribute for engines, a variable for applications
    #: ("" for a pool setting only the command line sets).
    zoo_name: str
    kind: Kind
    default: object
    doc: str
    #: Whether the runtime acts on it yet; set-but-not-in-effect values are listed by check.
    in_effect: bool = True
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: The value must be greater than `minimum` (a timeout of 0 makes no sense).
    above: bool = False
    #: The `PoolSettings` field this setting fills, if a pool acts on it.
    pool: PoolUse | None = None
    #: A secret (a token): `corral check` and the reload log say it is set, never its value.
    secret: bool = False

    def shown(self, value: object) -> str:
        """``value`` as logs and `corral check` show it (a secret is not shown)."""
        if self.secret:
            return "(set, not shown)" if value else "(none)"
        return ", ".join(value) if isinstance(value, tuple) else str(value)

    @property
    def attribute(self) -> str:
        """The model field it fills: `EngineConfig.X` for `engine.X`, `FrontSettings.X` for
        `server.X`, `AppConfig.X` for `app.X` (where the model has one)."""
        return self.name.partition(".")[2]

    def convert(self, value: object) -> object:
        """The typed value, or ValueError with a message (the reader adds file, line, name)."""
        converter = _CONVERTERS.get(self.kind)
        if self.kind is Kind.CHOICE:
            return convert.to_choice(value, self.choices)
        if self.kind is Kind.INT:
            return convert.to_int(value, minimum=self.minimum, maximum=self.maximum)
        if self.kind is Kind.NUMBER:
            return convert.to_number(
                value, minimum=self.minimum, maximum=self.maximum, above=self.above
            )
        if converter is None:
            raise ValueError(f"{self.name} is not a scalar setting")
        return converter(value)


_CONVERTERS: dict[Kind, Callable[[object], object]] = {
    Kind.STR: convert.to_str,
    Kind.BOOL: convert.to_bool,
    Kind.PATH: convert.to_str,
    Kind.PATH_LIST: convert.to_list,
    Kind.ADDRESSES: convert.to_trusted_proxies,
    Kind.LISTEN: convert.to_listen,
    Kind.MASK: convert.to_mask,
    Kind.VIRTUAL_PATH: convert.to_virtual_path,
    Kind.HSTS: convert.to_hsts,
    Kind.WARM_UP: convert.to_warm_up,
}
