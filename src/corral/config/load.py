"""Files -> one validated `ServerConfig`, or `ConfigErrors` listing every error.

    load(path)          a site folder, its web.config/corral.toml, or a server TOML file
    load_site(folder)   `corral serve SITE_DIR`: one site, one application at "/"
    load_server(file)   a server TOML listing sites, bindings and applications at virtual paths

Precedence lives in `engine_table` (built-ins < applicationHost.config `<engines>` <
`<userEngines>` < TOML `[engines]`), `switch_enabled` (site entry < global, a named engine beats
"*") and `expand.layer_env` (OS < engine < application variables).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from corral.config import engines as builtin_engines
from corral.config import expand
from corral.config.declare import Written, declare_server
from corral.config.errors import Problems
from corral.config.model import (
    DEFAULT_DOCUMENTS,
    AppConfig,
    Binding,
    EngineConfig,
    EngineKind,
    Handler,
    HandlerScope,
    Location,
    Mount,
    NotInEffect,
    Protocol,
    ServerConfig,
    SiteConfig,
    StaticPolicy,
)
from corral.config.servercfg import SwitchEntry, ZooServer, read_application_host
from corral.config.settings import (
    APP_BY_VARIABLE,
    BY_NAME,
    PROTOCOLS_IN_EFFECT,
    TRANSPORTS_IN_EFFECT,
    Kind,
    Scope,
    Setting,
    by_scope,
)
from corral.config.tomlfile import (
    MountDecl,
    SiteDecl,
    read_engines,
    read_server,
    read_server_settings,
    read_toml,
    site_sections,
)
from corral.config.webconfig import HandlerOp, Section, ZooAppOp, apply_env_ops, read_webconfig

WEB_CONFIG = "web.config"
CORRAL_TOML = "corral.toml"
ZOO_FILE = ".zoo"
#: Folders never searched for sub-folder web.config files.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})

DEFAULT_BINDING = Binding(address="127.0.0.1", port=8080)


def load(path: str, *, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """A site folder (or its web.config / corral.toml), or a server TOML file."""
    if os.path.isdir(path):
        return load_site(path, environ=environ)
    name = os.path.basename(path).lower()
    if name in (WEB_CONFIG, CORRAL_TOML):
        return load_site(os.path.dirname(os.path.abspath(path)), environ=environ)
    if name.endswith(".config"):
        problems = Problems()
        problems.add(
            Location(os.path.abspath(path)),
            "file",
            "an applicationHost.config is read through a server TOML: "
            '[server] application_host = "applicationHost.config"',
        )
        problems.raise_if_any()
    return load_server(path, environ=environ)


def load_site(
    folder: str,
    *,
    bindings: Iterable[Binding] = (DEFAULT_BINDING,),
    environ: Mapping[str, str] | None = None,
    default_engine: str | None = None,
) -> ServerConfig:
    """One site answering every host on `bindings`, with one application at "/" in `folder`.

    The folder's corral.toml may declare `[engines]` here (it is the whole server). A folder with
    no web.config, corral.toml or .zoo at all is a static site, unless `default_engine` is given
    (`corral serve DIR` passes "python"): then every URL goes to one application named "default"
    on that engine (for Python: wsgi.py, WSGI_APP from the OS, or the service-information page).
    """
    problems = Problems()
    folder = os.path.abspath(folder)
    where = Location(folder)
    engines_toml: list[EngineConfig] = []
    server_settings: Written = {}
    toml_path = os.path.join(folder, CORRAL_TOML)
    if os.path.isfile(toml_path):
        data = _read(toml_path, problems)
        source = None if data is None else read_toml(data, toml_path, problems)
        if source is not None:
            engines_toml = read_engines(source, problems)
            server_settings = read_server_settings(source, problems, server_file=False)[0]
    front = declare_server([(server_settings, "toml")], problems)
    site = SiteDecl("default", tuple(bindings), (), (MountDecl("/", folder, where),), where)
    config = _build(
        problems,
        None,
        engines_toml,
        [site],
        environ,
        [],
        site_engines_allowed=True,
        default_engine=default_engine,
    )
    return dataclasses.replace(config, front=front)


def load_server(path: str, *, environ: Mapping[str, str] | None = None) -> ServerConfig:
    problems = Problems()
    path = os.path.abspath(path)
    data = _read(path, problems)
    source = None if data is None else read_toml(data, path, problems)
    if source is None:
        problems.raise_if_any()
        raise AssertionError("unreachable")  # pragma: no cover
    server = read_server(source, problems)
    zoo: ZooServer | None = None
    sources = [path]
    if server.application_host is not None:
        host_path, where = server.application_host
        if not os.path.isfile(host_path):
            problems.add(where, "application_host", f"no such file: {host_path}")
        else:
            sources.append(host_path)
            host_data = _read(host_path, problems)
            if host_data is not None:
                zoo = read_application_host(host_data, host_path, problems)
    engines = read_engines(source, problems, engine_table(zoo, ()))
    # applicationHost.config's <heliconZooServer> attributes < the server TOML's [server].
    layers = [(zoo.settings, "applicationHost")] if zoo is not None else []
    front = declare_server([*layers, (server.settings, "toml")], problems)
    config = _build(problems, zoo, engines, list(server.sites), environ, sources)
    return dataclasses.replace(config, front=front)


def _read(path: str, problems: Problems) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        problems.add(Location(path), "file", f"cannot read: {error.strerror}")
        return None


# --- precedence ---------------------------------------------------------------------------


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


# --- building -----------------------------------------------------------------------------


@dataclass
class _Context:
    problems: Problems
    engines: dict[str, EngineConfig]
    environ: Mapping[str, str]
    notices: list[str] = field(default_factory=list)
    not_in_effect: list[NotInEffect] = field(default_factory=list)
    used_engines: dict[str, EngineConfig] = field(default_factory=dict)
    site_engines_allowed: bool = False
    default_engine: str | None = None


def _build(
    problems: Problems,
    zoo: ZooServer | None,
    toml_engines: list[EngineConfig],
    sites: list[SiteDecl],
    environ: Mapping[str, str] | None,
    sources: list[str],
    *,
    site_engines_allowed: bool = False,
    default_engine: str | None = None,
) -> ServerConfig:
    ctx = _Context(
        problems, engine_table(zoo, toml_engines), dict(os.environ if environ is None else environ)
    )
    ctx.site_engines_allowed = site_engines_allowed
    ctx.default_engine = default_engine
    if zoo is not None:
        ctx.not_in_effect.extend(zoo.not_in_effect)
        known = {site.name for site in sites}
        for site_name, entries in zoo.switchboard.items():
            if site_name and site_name not in known:
                ctx.notices.append(
                    f"{entries[0].location}: switchboard for site {site_name!r}, which the "
                    "server file does not declare"
                )
    built: list[SiteConfig] = []
    for decl in sites:
        switchboard: list[SwitchEntry] = []
        if zoo is not None:
            switchboard += zoo.switchboard.get("", ()) + zoo.switchboard.get(decl.name, ())
        switchboard += decl.switchboard
        built.append(_build_site(ctx, decl, switchboard, sources))
    _check_bindings(problems, built)
    problems.raise_if_any()
    for name, engine in sorted(ctx.used_engines.items()):
        ctx.not_in_effect.extend(engine_not_in_effect(engine))
        if engine.transport not in TRANSPORTS_IN_EFFECT:
            ctx.not_in_effect.append(
                NotInEffect(f"engine {name}: transport", engine.transport.value, engine.location)
            )
        if engine.protocol not in PROTOCOLS_IN_EFFECT:
            ctx.not_in_effect.append(
                NotInEffect(f"engine {name}: protocol", engine.protocol.value, engine.location)
            )
    all_engines = dict(ctx.engines)
    for engine in builtin_engines.BUILT_IN:
        all_engines.setdefault(engine.name, engine)
    all_engines.update(ctx.used_engines)
    return ServerConfig(
        sites=tuple(built),
        engines=tuple(all_engines[name] for name in sorted(all_engines)),
        sources=tuple(dict.fromkeys(sources)),
        notices=tuple(ctx.notices),
        not_in_effect=tuple(ctx.not_in_effect),
    )


def _check_bindings(problems: Problems, sites: list[SiteConfig]) -> None:
    owners: dict[tuple[str, int, str], str] = {}
    for site in sites:
        for binding in site.bindings:
            for host in binding.hosts or ("",):
                key = (binding.address, binding.port, host)
                other = owners.get(key)
                if other is not None and other != site.name:
                    what = f"host {host}" if host else "every host (no host name)"
                    problems.add(
                        binding.location or Location("?"),
                        "bindings",
                        f"{what} on {binding.address}:{binding.port} is already bound by site "
                        f"{other!r}",
                    )
                else:
                    owners[key] = site.name


def _build_site(
    ctx: _Context, decl: SiteDecl, switchboard: list[SwitchEntry], sources: list[str]
) -> SiteConfig:
    mounts: list[Mount] = []
    apps: list[AppConfig] = []
    for mount_decl in decl.mounts:
        other_roots = [m.physical_path for m in decl.mounts if m is not mount_decl]
        built = _build_mount(ctx, decl.name, mount_decl, switchboard, sources, other_roots)
        if built is not None:
            mounts.append(built[0])
            apps.extend(built[1])
    board: dict[str, bool] = {}
    for entry in switchboard:
        board[entry.name] = entry.enabled
    return SiteConfig(
        name=decl.name,
        bindings=decl.bindings,
        mounts=tuple(mounts),
        apps=tuple(apps),
        switchboard=tuple(board.items()),
        location=decl.location,
    )


def _config_files(root: str, others: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(relative folder, file) for every web.config, .zoo and (at the root) corral.toml.

    Hidden folders, __pycache__, node_modules, virtualenvs and the folders of other mounts
    (an application nested in this one's folder owns its own web.config) are not searched.
    """
    found: list[tuple[str, str]] = []
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not os.path.isfile(os.path.join(current, d, "pyvenv.cfg"))
            and os.path.realpath(os.path.join(current, d)) not in others
        )
        rel = os.path.relpath(current, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        by_lower = {name.lower(): name for name in files}
        if WEB_CONFIG in by_lower:
            found.append((rel, os.path.join(current, by_lower[WEB_CONFIG])))
        if rel == "" and CORRAL_TOML in files:
            found.append((rel, os.path.join(current, CORRAL_TOML)))
        if ZOO_FILE in files:
            found.append((rel, os.path.join(current, ZOO_FILE)))
    return found


def _sections(
    ctx: _Context, root: str, sources: list[str], others: frozenset[str]
) -> list[Section]:
    sections: list[Section] = []
    for rel, path in _config_files(root, others):
        sources.append(path)
        data = _read(path, ctx.problems)
        if data is None:
            continue
        name = os.path.basename(path)
        if name == ZOO_FILE:
            where = Location(path, 1)
            if data.strip():
                ctx.not_in_effect.append(NotInEffect("Zoo 4 .zoo file (YAML)", rel, where))
            elif rel:
                # Zoo 4: an empty .zoo in a sub-folder disables the parent's application there.
                sections.append(Section(rel, (HandlerOp("clear", "", where),), (), where))
            continue
        if name == CORRAL_TOML:
            source = read_toml(data, path, ctx.problems)
            if source is not None:
                if "engines" in source.data and not ctx.site_engines_allowed:
                    ctx.not_in_effect.append(
                        NotInEffect(
                            "[engines] in a site's corral.toml (declare them in the server file)",
                            "",
                            source.at("engines"),
                        )
                    )
                if "server" in source.data and not ctx.site_engines_allowed:
                    ctx.not_in_effect.append(
                        NotInEffect(
                            "[server] in a site's corral.toml (set it in the server file)",
                            "",
                            source.at("server"),
                        )
                    )
                sections.extend(site_sections(source, ctx.problems))
            continue
        webconfig = read_webconfig(data, path, ctx.problems)
        if webconfig is None:
            continue
        ctx.not_in_effect.extend(webconfig.ignored)
        for section in webconfig.sections:
            folder = "/".join(part for part in (rel, section.folder) if part)
            sections.append(
                Section(folder, section.handlers, section.zoo, section.location, section.documents)
            )
    sections.sort(key=lambda section: section.folder.count("/") + bool(section.folder))
    return sections


def _parent_scope(folder: str, scopes: Mapping[str, list[HandlerOp]]) -> list[HandlerOp]:
    while folder:
        folder = folder.rpartition("/")[0]
        if folder in scopes:
            return list(scopes[folder])
    return list(scopes.get("", []))


def _apply_handlers(
    ctx: _Context, current: list[HandlerOp], ops: tuple[HandlerOp, ...]
) -> list[HandlerOp]:
    for op in ops:
        if op.action == "clear":
            current = []
        elif op.action == "remove":
            current = [h for h in current if h.name.lower() != op.name.lower()]
        else:
            for existing in current:
                if existing.name.lower() == op.name.lower():
                    ctx.problems.add(
                        op.location,
                        "handlers",
                        f"duplicate handler name {op.name!r} (already added at "
                        f"{existing.location}; <remove> it first)",
                    )
                    break
            else:
                current.append(op)
    return current


def _effective_handlers(ops: list[HandlerOp]) -> list[Handler]:
    """One handler per (application, path): the 64-bit one of a name#x86/name#x64 pair."""
    has64 = {op.path for op in ops if "bitness64" in op.pre_condition.lower()}
    result: list[Handler] = []
    seen: set[tuple[str, str]] = set()
    for op in ops:
        if op.path in has64 and "bitness32" in op.pre_condition.lower():
            continue
        app_name = op.name.split("#", 1)[0]
        key = (app_name, op.path)
        if key in seen:
            continue
        seen.add(key)
        result.append(Handler(op.name, app_name, op.path, op.script_processor, op.location))
    return result


def _build_mount(
    ctx: _Context,
    site: str,
    decl: MountDecl,
    switchboard: list[SwitchEntry],
    sources: list[str],
    other_roots: Iterable[str] = (),
) -> tuple[Mount, list[AppConfig]] | None:
    root = decl.physical_path
    if not os.path.isdir(root):
        ctx.problems.add(decl.location, "physical_path", f"no such folder: {root}")
        return None
    root = os.path.realpath(root)
    others = frozenset(os.path.realpath(p) for p in other_roots) - {root}
    sections = _sections(ctx, root, sources, others)
    if not sections and ctx.default_engine is not None:
        where = Location(root)
        add = HandlerOp("add", "default", where, "*", ctx.default_engine)
        sections = [Section("", (add,), (), where)]
    # Handlers, folder by folder (a sub-folder starts from its nearest configured ancestor).
    raw_scopes: dict[str, list[HandlerOp]] = {}
    scope_where: dict[str, Location] = {}
    # <heliconZoo> applications (at the mount's root).
    app_env: dict[str, dict[str, tuple[str, Location]]] = {}
    app_where: dict[str, Location] = {}
    for section in sections:
        if section.handlers is not None:
            base = raw_scopes.get(section.folder)
            if base is None:
                base = _parent_scope(section.folder, raw_scopes)
            raw_scopes[section.folder] = _apply_handlers(ctx, base, section.handlers)
            scope_where.setdefault(section.folder, section.location)
        if section.zoo and section.folder:
            ctx.not_in_effect.append(
                NotInEffect(
                    f"<heliconZoo> in sub-folder {section.folder!r} (variables are set "
                    "at the application's root)",
                    "",
                    section.location,
                )
            )
            continue
        _apply_zoo(ctx, app_env, app_where, section.zoo)
    scopes: list[HandlerScope] = []
    uses: dict[str, list[Handler]] = {}
    for folder, ops in raw_scopes.items():
        handlers = _effective_handlers(ops)
        scopes.append(HandlerScope(folder, tuple(handlers), scope_where.get(folder)))
        for handler in handlers:
            used = uses.setdefault(handler.app_name, [])
            if handler not in used:  # an inherited handler appears in every scope below
                used.append(handler)
    apps: list[AppConfig] = []
    for app_name, handlers in uses.items():
        app = _build_app(
            ctx,
            site,
            decl.virtual_path,
            root,
            app_name,
            handlers,
            app_env.get(app_name, {}),
            app_where.get(app_name),
            switchboard,
        )
        if app is not None:
            apps.append(app)
    for app_name, where in app_where.items():
        if app_name not in uses:
            ctx.notices.append(
                f"{where}: application {app_name!r} has no handler: its variables are unused"
            )
    hidden: list[str] = []
    hidden_files: list[str] = []
    suffixes: list[str] = []

    def inside(path: str) -> str | None:
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        return None if rel == "." or rel.startswith("..") else rel

    for app in apps:
        if app.error_log_dir is not None and (rel := inside(app.error_log_dir)):
            hidden.append(rel)
        if app.deploy_log and (rel := inside(os.path.dirname(app.deploy_log))):
            hidden.append(rel)  # the DEPLOY_LOG's folder, unless it is the site's own
        named = [app.deploy_file, app.deploy_log]
        php_ini = app.env_dict().get("PHP_INI")
        if php_ini:
            named.append(expand.resolve_path(php_ini, root))
        hidden_files.extend(rel for path in named if path and (rel := inside(path)))
        suffixes.extend(builtin_engines.source_suffixes(app.engine))
    static = StaticPolicy(
        root,
        tuple(dict.fromkeys(hidden)),
        tuple(dict.fromkeys(suffixes)),
        tuple(dict.fromkeys(hidden_files)),
        _default_documents(ctx, sections),
    )
    mount = Mount(
        decl.virtual_path, root, tuple(scopes), tuple(a.name for a in apps), static, decl.location
    )
    return mount, apps


def _default_documents(ctx: _Context, sections: Iterable[Section]) -> tuple[str, ...]:
    """The mount's default documents: DEFAULT_DOCUMENTS changed by its own web.config's
    `<defaultDocument>` (IIS inheritance: `<add>` appends, `<remove>`, `<clear/>`). A sub-folder's
    list is not read (listed as not in effect)."""
    documents = list(DEFAULT_DOCUMENTS)
    for section in sections:
        if section.documents is None:
            continue
        if section.folder:
            ctx.not_in_effect.append(
                NotInEffect(
                    f"<defaultDocument> in sub-folder {section.folder!r} (the application's "
                    "own list applies to every folder)",
                    "",
                    section.location,
                )
            )
            continue
        for op in section.documents:
            if op.action in ("clear", "disable"):
                documents = []
            elif op.action == "add":
                if op.value.lower() not in (name.lower() for name in documents):
                    documents.append(op.value)
            else:
                documents = [name for name in documents if name.lower() != op.value.lower()]
        if any(op.action == "disable" for op in section.documents):
            documents = []
    return tuple(documents)


def _apply_zoo(
    ctx: _Context,
    app_env: dict[str, dict[str, tuple[str, Location]]],
    app_where: dict[str, Location],
    ops: tuple[ZooAppOp, ...],
) -> None:
    for op in ops:
        if op.action == "clear":
            app_env.clear()
            app_where.clear()
        elif op.action == "remove":
            app_env.pop(op.name, None)
            app_where.pop(op.name, None)
        else:
            env = app_env.setdefault(op.name, {})
            apply_env_ops(env, op.env)
            app_where[op.name] = op.location


_WINDOWS_EXE = re.compile(r"^([A-Za-z]:[\\/]|%[^%]+%[\\/])|\.exe$", re.IGNORECASE)


def _build_app(
    ctx: _Context,
    site: str,
    virtual_path: str,
    root: str,
    name: str,
    handlers: list[Handler],
    env_written: dict[str, tuple[str, Location]],
    where: Location | None,
    switchboard: list[SwitchEntry],
) -> AppConfig | None:
    problems = ctx.problems
    first = handlers[0]
    engine_name = first.engine
    in_toml = first.location is not None and first.location.file.endswith(".toml")
    engine_key = "engine" if in_toml else "scriptProcessor"
    for handler in handlers[1:]:
        if handler.engine != engine_name:
            problems.add(
                handler.location or Location("?"),
                engine_key,
                f"application {name!r} uses engine {handler.engine!r} here but "
                f"{engine_name!r} at {first.location}",
            )
            return None
    engine = resolve_engine(ctx.engines, engine_name)
    if engine is None:
        known = sorted(set(ctx.engines) | {e.name for e in builtin_engines.BUILT_IN})
        problems.add(
            first.location or Location("?"),
            engine_key,
            f"unknown engine {engine_name!r} (known: {', '.join(known)}; Zoo names "
            "python.*, php.*.pipe, nodejs.http* and ruby.*.pipe also work)",
        )
        return None
    if not switch_enabled(switchboard, engine_name) or not engine.enabled:
        why = "by <switchboard>" if engine.enabled else "(enabled = false)"
        problems.add(
            first.location or Location("?"),
            engine_key,
            f"engine {engine_name!r} is disabled for site {site!r} {why}",
        )
        return None
    ctx.used_engines[engine_name] = engine
    app_where = where or first.location
    module_vars = expand.module_variables(root, virtual_path)
    fixed = {var.upper() for var, _ in module_vars}
    for var, (_, loc) in env_written.items():
        if var.upper() in fixed:
            ctx.notices.append(f"{loc}: {var} is set by Corral; this value is ignored")
    engine_layer = [(var.name, var.value) for var in engine.env if var.name.upper() not in fixed]
    app_layer = [
        (var, value) for var, (value, _) in env_written.items() if var.upper() not in fixed
    ]
    env = dict(
        expand.layer_env(ctx.environ, module_vars, [engine_layer, app_layer], site_root=root)
    )
    where_of: dict[str, Location | None] = {var.name: var.location for var in engine.env}
    where_of.update({var: loc for var, (_, loc) in env_written.items()})
    notices: list[str] = []
    not_in_effect: list[NotInEffect] = []
    values: dict[str, object] = {}
    ok = True
    for variable, setting in APP_BY_VARIABLE.items():
        if variable not in env:
            continue
        raw = env[variable]
        loc = where_of.get(variable) or app_where or Location(root)
        try:
            values[setting.name] = _app_value(setting, raw)
        except ValueError as error:
            problems.add(loc, variable, str(error))
            ok = False
            continue
        if not setting.in_effect and raw.strip():
            not_in_effect.append(NotInEffect(f"{name}: {variable}", raw, loc))
    if not ok:
        return None

    def path_value(key: str, default: str | None = None) -> str | None:
        raw = values.get(key)
        if not isinstance(raw, str) or not raw.strip():
            return default
        if raw.strip().upper() == "NULL":
            return None
        return expand.resolve_path(raw.strip(), root)

    pythonpath: tuple[str, ...] = ()
    raw_pythonpath = env.get("PYTHONPATH")
    if raw_pythonpath is not None:
        entries = [e for e in re.split(f"[{re.escape(os.pathsep)};]", raw_pythonpath) if e]
        pythonpath = tuple(
            dict.fromkeys(expand.resolve_path(e, root) for e in entries if not e.startswith("%"))
        )
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    current_directory = path_value("app.current_directory", root) or root
    virtual_env = path_value("app.virtual_env")
    if virtual_env is not None:
        env["VIRTUAL_ENV"] = virtual_env
        scripts, bin_dir = f"{virtual_env}/Scripts", f"{virtual_env}/bin"
        if "PATH" in env and not os.path.isdir(scripts) and os.path.isdir(bin_dir):
            # A Windows virtualenv's Scripts folder is bin/ in a POSIX one.
            entries = env["PATH"].split(os.pathsep)
            env["PATH"] = os.pathsep.join(bin_dir if e == scripts else e for e in entries)
    lookup_env = {**ctx.environ, **dict(module_vars), **env}
    folded = {key.upper(): value for key, value in lookup_env.items()}

    def lookup(ref: str) -> str | None:
        if ref.upper() in expand.INSTANCE_VARIABLES:
            return None
        return lookup_env.get(ref, folded.get(ref.upper()))

    def expand_here(text: str) -> str:
        return expand.expand(text, lookup)

    interpreter = ""
    argv: tuple[str, ...] = ()
    if engine.kind is EngineKind.PYTHON_WORKER:
        interpreter = _interpreter(engine, virtual_env, expand_here, notices)
        argv = (interpreter, "-m", "corral.worker")
        asked = re.match(r"python\.(\d+(?:\.\d+)?)", engine_name)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        detail = f" (Python {version})" if interpreter == sys.executable else ""
        if builtin_engines.is_python_alias(engine_name) or engine.origin != "built-in":
            asked_text = (
                f"; the engine name asks for Python {asked.group(1)}"
                if asked
                and interpreter == sys.executable
                and not f"{version}.".startswith(asked.group(1) + ".")
                else ""
            )
            notices.append(
                f"engine {engine_name!r} runs Corral's Python worker (WSGI or ASGI over "
                f"FastCGI) under {interpreter}{detail}{asked_text}"
            )
    elif engine.kind is EngineKind.COMMAND:
        command = env.get("APP_COMMAND", "").strip()
        if engine.full_path:
            full_path = expand_here(engine.full_path)
            if _WINDOWS_EXE.search(full_path):
                posix = re.split(r"[\\/]", full_path)[-1]
                posix = re.sub(r"\.exe$", "", posix, flags=re.IGNORECASE)
                notices.append(
                    f"engine {engine_name!r}: Windows fullPath {full_path!r} runs as "
                    f"{posix!r} from PATH"
                )
                full_path = posix
            arguments = expand_here(engine.arguments)
            if engine.origin != "toml":
                arguments = arguments.replace("\\", "/")
            try:
                argv = (full_path, *expand.split_arguments(arguments))
            except ValueError as error:
                problems.add(
                    engine.location or app_where or Location(root),
                    "arguments",
                    f"engine {engine_name!r}: {error}",
                )
                return None
        elif command:
            try:
                argv = tuple(expand.split_arguments(command))
            except ValueError as error:
                problems.add(
                    where_of.get("APP_COMMAND") or Location(root), "APP_COMMAND", str(error)
                )
                return None
        else:
            problems.add(
                app_where or Location(root),
                "APP_COMMAND",
                f"application {name!r} uses engine {engine_name!r}, which has no "
                "fullPath: set APP_COMMAND to the command that runs the backend",
            )
            return None
    max_requests = 0
    if _runs_php_cgi(engine, argv):
        argv = _php_argv(argv, path_value("app.php_ini"))
        limit = values.get("app.php_fcgi_max_requests")
        max_requests = limit if isinstance(limit, int) else 0
    timeout = values.get("app.worker_request_timeout")
    mask = values.get("app.watch_file_changes_mask", ())
    return AppConfig(
        name=name,
        site=site,
        virtual_path=virtual_path,
        physical_path=root,
        engine=engine,
        handlers=tuple(handlers),
        env=tuple(env.items()),
        module_vars=module_vars,
        argv=argv,
        current_directory=current_directory,
        interpreter=interpreter,
        pythonpath=pythonpath,
        wsgi_app=_opt_str(values.get("app.wsgi_app")),
        deploy_file=path_value("app.deploy_file"),
        deploy_log=path_value("app.deploy_log"),
        deploy_timeout=_int_value(values, "app.deploy_timeout"),
        error_log_dir=path_value("app.error_log_dir"),
        error_log_max_kb=_int_value(values, "app.error_log_max_kb"),
        error_log_files=_int_value(values, "app.error_log_files"),
        watch_file_changes_mask=tuple(str(m) for m in mask) if isinstance(mask, tuple) else (),
        console_url=_opt_str(values.get("app.console_url")),
        worker_request_timeout=timeout if isinstance(timeout, int) else None,
        development_mode=values.get("app.development_mode") is True,
        max_requests=max_requests,
        notices=tuple(notices),
        not_in_effect=tuple(not_in_effect),
        location=app_where,
    )


_PHP_CGI = re.compile(r"php-?cgi[\d.]*", re.IGNORECASE)


def _runs_php_cgi(engine: EngineConfig, argv: tuple[str, ...]) -> bool:
    """A PHP engine: protocol fastcgi-php, or (Zoo's own declarations say protocol="fastcgi")
    a command that is php-cgi."""
    if engine.kind is not EngineKind.COMMAND or not argv:
        return False
    program = os.path.basename(argv[0])
    return engine.protocol is Protocol.FASTCGI_PHP or bool(_PHP_CGI.fullmatch(program))


def _php_argv(argv: tuple[str, ...], php_ini: str | None) -> tuple[str, ...]:
    """php-cgi reads the application's PHP_INI: `-c FILE`, unless the command names one."""
    if not php_ini or not argv or "-c" in argv[1:]:
        return argv
    return (*argv, "-c", php_ini)


def _app_value(setting: Setting, raw: str) -> object:
    if setting.kind is Kind.INT and not raw.strip():
        return None
    if setting.kind is Kind.PATH_LIST:
        return raw
    return setting.convert(raw)


def _int_value(values: dict[str, object], name: str) -> int:
    """An integer application setting's value, or its declared default."""
    value = values.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    default = BY_NAME[name].default
    assert isinstance(default, int)
    return default


def _opt_str(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _interpreter(
    engine: EngineConfig,
    virtual_env: str | None,
    expand_here: Callable[[str], str],
    notices: list[str],
) -> str:
    if virtual_env is not None:
        candidate = os.path.join(virtual_env, "bin", "python")
        if _executable(candidate):
            return candidate
        notices.append(f"VIRTUAL_ENV {virtual_env} has no bin/python; using Corral's interpreter")
    if engine.full_path:
        path = expand_here(engine.full_path)
        if path.startswith("/") and _executable(path):
            return path
    return sys.executable


def _executable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


__all__ = [
    "engine_table",
    "load",
    "load_server",
    "load_site",
    "resolve_engine",
    "switch_enabled",
]
