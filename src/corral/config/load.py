"""Files -> one validated `ServerConfig`, or `ConfigErrors` listing every error.

    load(path)          a site folder, its web.config/corral.toml, or a server TOML file
    load_site(folder)   `corral serve SITE_DIR`: one site, one application at "/"
    load_server(file)   a server TOML listing sites, bindings and applications at virtual paths,
                        and the site files and folders its `include` patterns match (include.py)

Precedence lives in `engine_table` (built-ins < applicationHost.config `<engines>` <
`<userEngines>` < TOML `[engines]`), `switch_enabled` (site entry < global, a named engine beats
"*") and `expand.layer_env` (OS < engine < application variables).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

from corral.config import builtin_engines, expand, include, rewriteread
from corral.config.appbuild import BuildContext, build_app
from corral.config.declare import Written, declare_server, declare_tenancy
from corral.config.errors import Problems
from corral.config.model import (
    DEFAULT_DOCUMENTS,
    AppConfig,
    Binding,
    EngineConfig,
    Handler,
    HandlerScope,
    IncludedFile,
    Location,
    Mount,
    NotInEffect,
    ServerConfig,
    SiteConfig,
    StaticPolicy,
)
from corral.config.precedence import (
    engine_not_in_effect,
    engine_table,
    resolve_engine,
    switch_enabled,
)
from corral.config.rewrite import RuleOp
from corral.config.servercfg import SwitchEntry, ZooServer, read_application_host
from corral.config.settings import (
    PROTOCOLS_IN_EFFECT,
    TRANSPORTS_IN_EFFECT,
)
from corral.config.sitebindings import with_bindings
from corral.config.tlsfiles import check_tls
from corral.config.tomlfile import (
    MountDecl,
    SiteDecl,
    read_engines,
    read_server,
    read_server_settings,
    read_toml,
    site_sections,
)
from corral.config.webconfig import (
    EnvOp,
    HandlerOp,
    Section,
    ZooAppOp,
    apply_env_ops,
    read_webconfig,
)
from corral.config.zoofile import read_zoofile

WEB_CONFIG = "web.config"
CORRAL_TOML = "corral.toml"
ZOO_FILE = ".zoo"
#: Folders never searched for sub-folder web.config files.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})

DEFAULT_BINDING = Binding(address="127.0.0.1", port=8080)


def load(
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    previous: ServerConfig | None = None,
) -> ServerConfig:
    """A site folder (or its web.config / corral.toml), or a server TOML file. ``previous``:
    the configuration this one replaces (a reload), whose sites a refused site file keeps."""
    if os.path.isdir(path):
        return load_site(path, environ=environ)
    name = os.path.basename(path).lower()
    if name in (WEB_CONFIG, CORRAL_TOML, ZOO_FILE):
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
    return load_server(path, environ=environ, previous=previous)


def load_site(
    folder: str,
    *,
    bindings: Iterable[Binding] = (DEFAULT_BINDING,),
    environ: Mapping[str, str] | None = None,
    default_engine: str | None = None,
    default_env: Mapping[str, str] | None = None,
) -> ServerConfig:
    """One site answering every host on `bindings`, with one application at "/" in `folder`.

    The folder's corral.toml may declare `[engines]` here (it is the whole server). A folder with
    no web.config, corral.toml or .zoo at all is a static site, unless `default_engine` is given
    (`corral serve DIR` passes "python"): then every URL goes to one application named "default"
    on that engine (for Python: wsgi.py, WSGI_APP from the OS, or the service-information page),
    with the variables `default_env` (the one-line serve's WSGI_APP: `config.quickserve`).
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
        default_env=default_env,
    )
    return dataclasses.replace(config, front=front)


def load_server(
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    previous: ServerConfig | None = None,
) -> ServerConfig:
    """The server file and what its `include` patterns match (`corral.config.include`): an
    error in the server file raises `ConfigErrors`; a site file or folder with errors is
    refused alone (`ServerConfig.included`), keeping its sites of ``previous`` if given."""
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
    sites = with_bindings(server.sites, zoo, problems)
    engines = read_engines(source, problems, engine_table(zoo, ()))
    # applicationHost.config's <heliconZooServer> attributes < the server TOML's [server].
    layers = [(zoo.settings, "applicationHost")] if zoo is not None else []
    front = declare_server([*layers, (server.settings, "toml")], problems)
    included = None
    if server.include is not None:
        included = include.read(server.include, os.path.dirname(path), problems)
    config = _build(problems, zoo, engines, sites, environ, sources, included, previous)
    return dataclasses.replace(config, front=front)


def _read(path: str, problems: Problems) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        problems.add(Location(path), "file", f"cannot read: {error.strerror}")
        return None


# --- building -----------------------------------------------------------------------------


def _build(
    problems: Problems,
    zoo: ZooServer | None,
    toml_engines: list[EngineConfig],
    sites: list[SiteDecl],
    environ: Mapping[str, str] | None,
    sources: list[str],
    included: include.Included | None = None,
    previous: ServerConfig | None = None,
    *,
    site_engines_allowed: bool = False,
    default_engine: str | None = None,
    default_env: Mapping[str, str] | None = None,
) -> ServerConfig:
    ctx = BuildContext(
        problems, engine_table(zoo, toml_engines), dict(os.environ if environ is None else environ)
    )
    ctx.site_engines_allowed = site_engines_allowed
    ctx.default_engine = default_engine
    ctx.default_env = dict(default_env or {})
    if zoo is not None:
        ctx.not_in_effect.extend(zoo.not_in_effect)
        known = {site.name for site in sites}
        for site_name, entries in zoo.switchboard.items():
            if site_name and site_name not in known:
                ctx.notices.append(
                    f"{entries[0].location}: switchboard for site {site_name!r}, which the "
                    "server file does not declare"
                )

    def build_site(ctx: BuildContext, decl: SiteDecl, sources: list[str]) -> SiteConfig:
        switchboard: list[SwitchEntry] = []
        if zoo is not None:
            switchboard += zoo.switchboard.get("", ()) + zoo.switchboard.get(decl.name, ())
        switchboard += decl.switchboard
        pools = zoo.pools if zoo is not None else {}
        return _build_site(ctx, decl, switchboard, sources, pools)

    built = [build_site(ctx, decl, sources) for decl in sites]
    _check_bindings(problems, built)
    files: list[IncludedFile] = []
    if included is not None:
        ctx.notices.extend(included.notices)
        more, files = include.assemble(ctx, included, built, previous, build_site, sources)
        built += more
    check_tls(problems, built, ctx.notices)
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
    config = ServerConfig(
        sites=tuple(built),
        engines=tuple(all_engines[name] for name in sorted(all_engines)),
        sources=tuple(dict.fromkeys(sources)),
        notices=tuple(ctx.notices),
        not_in_effect=tuple(ctx.not_in_effect),
        included=tuple(files),
        include_patterns=() if included is None else tuple(p.path for p in included.patterns),
    )
    problems.raise_if_any(partial=config)
    return config


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
    ctx: BuildContext,
    decl: SiteDecl,
    switchboard: list[SwitchEntry],
    sources: list[str],
    pools: Mapping[tuple[str, str], Written],
) -> SiteConfig:
    mounts: list[Mount] = []
    apps: list[AppConfig] = []
    for mount_decl in decl.mounts:
        other_roots = [m.physical_path for m in decl.mounts if m is not mount_decl]
        built = _build_mount(ctx, decl.name, mount_decl, switchboard, sources, other_roots)
        if built is not None:
            mounts.append(built[0])
            # Users and limits: the site's pool < the mount's pool < the site's TOML table <
            # the mount's TOML table.
            site_pool = pools.get((decl.name, "/"), {})
            mount_pool = pools.get((decl.name, mount_decl.virtual_path), {})
            tenancy = declare_tenancy(
                [
                    (site_pool, "applicationHost"),
                    (mount_pool if mount_pool is not site_pool else {}, "applicationHost"),
                    (decl.tenancy, "toml"),
                    (mount_decl.tenancy, "toml"),
                ],
                ctx.problems,
            )
            apps.extend(dataclasses.replace(app, tenancy=tenancy) for app in built[1])
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
        https_redirect=bool(decl.https_redirect),
        hsts=decl.hsts,
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
    ctx: BuildContext, root: str, sources: list[str], others: frozenset[str]
) -> list[Section]:
    sections: list[Section] = []
    for rel, path in _config_files(root, others):
        sources.append(path)
        data = _read(path, ctx.problems)
        if data is None:
            continue
        name = os.path.basename(path)
        if name == ZOO_FILE:
            sections.extend(_zoo_sections(ctx, rel, path, data, sections))
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
            rewrite = section.rewrite
            if rewrite is not None and rel:
                rewrite = rewriteread.in_folder(rewrite, rel)
            sections.append(
                Section(
                    folder,
                    section.handlers,
                    section.zoo,
                    section.location,
                    section.documents,
                    rewrite,
                )
            )
    sections.sort(key=lambda section: section.folder.count("/") + bool(section.folder))
    return sections


# --- Zoo 4 .zoo files (docs/webconfig-mapping.md, ".zoo files") -------------------------------
def _zoo_sections(
    ctx: BuildContext, rel: str, path: str, data: bytes, read: list[Section]
) -> list[Section]:
    """A `.zoo` at folder `rel`: its application at the mount's root; an empty one in a
    sub-folder disables the parent's application there. A web.config or corral.toml of the
    same folder that maps handlers or declares applications wins (the .zoo is not read)."""
    where = Location(path, 1)
    zoo = read_zoofile(data, path, ctx.problems)
    if zoo is None:
        return []
    if zoo.empty:
        # Zoo 4: an empty .zoo in a sub-folder disables the parent's application there.
        return [Section(rel, (HandlerOp("clear", "", where),), (), where)] if rel else []
    if rel:
        ctx.not_in_effect.append(
            NotInEffect(
                "a .zoo application in a sub-folder (serve that folder as its own "
                "application: a mount in a server TOML)",
                rel,
                where,
            )
        )
        return []
    others = [s.location for s in read if s.folder == rel and (s.handlers is not None or s.zoo)]
    if others:
        ctx.notices.append(
            f"{path} is not read: {others[0].file} maps this folder's handlers "
            "(a web.config or corral.toml wins over a .zoo)"
        )
        return []
    ctx.not_in_effect.extend(zoo.ignored)
    ctx.notices.extend(zoo.notices)
    return list(zoo.sections)


def _parent_scope(folder: str, scopes: Mapping[str, list[HandlerOp]]) -> list[HandlerOp]:
    while folder:
        folder = folder.rpartition("/")[0]
        if folder in scopes:
            return list(scopes[folder])
    return list(scopes.get("", []))


def _apply_handlers(
    ctx: BuildContext, current: list[HandlerOp], ops: tuple[HandlerOp, ...]
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


def _check_reachable(ctx: BuildContext, handlers: list[Handler]) -> None:
    """A handler that can never match is an error: an earlier handler of another application
    takes every URL it would (``*``, or the same path pattern). The first match wins."""
    for index, handler in enumerate(handlers):
        for earlier in handlers[:index]:
            if earlier.app_name == handler.app_name:
                continue
            if earlier.path == "*" or earlier.path.lower() == handler.path.lower():
                where = f" at {earlier.location}" if earlier.location else ""
                ctx.problems.add(
                    handler.location or Location("?"),
                    "handlers",
                    f"handler {handler.name!r} (path {handler.path!r}) can never match: "
                    f"handler {earlier.name!r}{where} (path {earlier.path!r}) comes first and "
                    "takes every URL it would",
                )
                break


def _build_mount(
    ctx: BuildContext,
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
        env = tuple(EnvOp("add", name, value, where) for name, value in ctx.default_env.items())
        zoo = (ZooAppOp("application", "default", env, where),) if env else ()
        sections = [Section("", (add,), zoo, where)]
    # Handlers, folder by folder (a sub-folder starts from its nearest configured ancestor).
    raw_scopes: dict[str, list[HandlerOp]] = {}
    scope_where: dict[str, Location] = {}
    # <heliconZoo> applications (at the mount's root).
    app_env: dict[str, dict[str, tuple[str, Location]]] = {}
    app_where: dict[str, Location] = {}
    # URL Rewrite rules, folder by folder (a sub-folder inherits its parent's).
    rule_ops: dict[str, list[RuleOp]] = {}
    for section in sections:
        if section.rewrite is not None:
            rule_ops.setdefault(section.folder, []).extend(section.rewrite)
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
        _check_reachable(ctx, handlers)
        scopes.append(HandlerScope(folder, tuple(handlers), scope_where.get(folder)))
        for handler in handlers:
            used = uses.setdefault(handler.app_name, [])
            if handler not in used:  # an inherited handler appears in every scope below
                used.append(handler)
    apps: list[AppConfig] = []
    for app_name, handlers in uses.items():
        app = build_app(
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
        decl.virtual_path,
        root,
        tuple(scopes),
        tuple(a.name for a in apps),
        static,
        decl.location,
        rewriteread.scopes(rule_ops, ctx.problems, ctx.notices),
    )
    return mount, apps


def _default_documents(ctx: BuildContext, sections: Iterable[Section]) -> tuple[str, ...]:
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
    ctx: BuildContext,
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


__all__ = [
    "engine_table",
    "load",
    "load_server",
    "load_site",
    "resolve_engine",
    "switch_enabled",
]
