"""Which declaration wins: the engine table (built-ins < applicationHost.config `<engines>` <
`<userEngines>` < TOML `[engines]`), `<switchboard>` entries, and what an engine sets that the
runtime does not act on yet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from corral.config import builtin_engines
from corral.config.model import EngineConfig, EngineKind, NotInEffect
from corral.config.servercfg import SwitchEntry, ZooServer
from corral.config.settings import Scope, by_scope


def engine_table(zoo: ZooServer | None, toml: Iterable[EngineConfig]) -> dict[str, EngineConfig]:
    """Declared engines by name: <engines> < <userEngines> < TOML; built-ins fill the rest."""
    table: dict[str, EngineConfig] = {}
    layers: list[Iterable[EngineConfig]] = []
    if zoo is not None:
        layers += [zoo.engines, zoo.user_engines]
    layers.append(toml)
    for layer in layers:
        for engine in layer:
            table[engine.name] = engine
    return table


def resolve_engine(table: Mapping[str, EngineConfig], name: str) -> EngineConfig | None:
    return table.get(name) or builtin_engines.built_in(name)


def engine_not_in_effect(engine: EngineConfig) -> list[NotInEffect]:
    """An engine's set values that the runtime does not act on yet."""
    spelling = "toml_key" if engine.origin == "toml" else "zoo_name"
    items: list[NotInEffect] = []
    for setting in by_scope(Scope.ENGINE):
        attribute = setting.name.removeprefix("engine.")
        if setting.in_effect or not hasattr(engine, attribute):
            continue
        value = getattr(engine, attribute)
        if value != setting.default:
            items.append(
                NotInEffect(
                    f"engine {engine.name}: {getattr(setting, spelling)}",
                    str(value),
                    engine.location,
                )
            )
    if engine.kind is EngineKind.PYTHON_WORKER and engine.arguments:
        items.append(
            NotInEffect(
                f"engine {engine.name}: arguments (Corral runs its own Python worker)",
                engine.arguments,
                engine.location,
            )
        )
    return items


def switch_enabled(entries: Iterable[SwitchEntry], engine: str) -> bool:
    """<switchboard>: the last entry naming the engine, else the last "*", else enabled."""
    named: bool | None = None
    default: bool | None = None
    for entry in entries:
        if entry.name == engine:
            named = entry.enabled
        elif entry.name == "*":
            default = entry.enabled
    if named is not None:
        return named
    return True if default is None else default


def console_allowed(entries: Iterable[SwitchEntry]) -> bool:
    """<switchboard>'s ``console`` entry (the last one): the web console is allowed; no entry:
    allowed (CONSOLE_URL still has to be set). ``*`` is the engines' default, not the
    console's."""
    allowed = True
    for entry in entries:
        if entry.name == "console":
            allowed = entry.enabled
    return allowed
