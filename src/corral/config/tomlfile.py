"""Corral's TOML files: a site folder's `corral.toml` and the server file listing sites.

tomllib gives no positions, so `KeyLines` scans the source text for each table header and
`key =` line; a value inside an inline table or array is reported at its key's line.

A site's `corral.toml` is read into the same operations as a web.config (`webconfig.Section`),
so both spellings go through one loader:

    [apps.blog]                   # an application (Zoo's <application name>)
    engine = "python.3.x.wsgi"    # the handler's scriptProcessor
    paths = ["*"]                 # handler path patterns (default ["*"])
    wsgi_app = "blog.wsgi:application"
    pythonpath = ["src"]
    [apps.blog.env]               # <environmentVariables>
    DJANGO_SETTINGS_MODULE = "blog.settings"

    [locations]                   # per sub-folder: "none" (static) or an application name
    static = "none"

    [[rewrite]]                   # URL Rewrite rules (corral.config.rewriteread)
    name = "front controller"
    match = "^"
    action = { type = "Rewrite", url = "index.php" }

The server file:

    [server]
    application_host = "applicationHost.config"    # optional <heliconZooServer> source
    include = ["sites.d/*.toml", "vhosts/*/"]       # site files and site folders (include.py)
    trusted_proxies = ["127.0.0.1", "10.0.0.0/8"] # may send X-Forwarded-* (HTTP backends)
    max_body_size = 10_000_000                      # the front's limits and timeouts
    header_timeout = 10                             # (settings.SERVER_BY_TOML)
    [engines."python.3.x.wsgi"]                     # add or override engines
    max_instances = 4
    [sites.main]
    bindings = ["127.0.0.1:8080:example.com", { address = "127.0.0.1", port = 8080 }]
    switchboard = { "*" = true, "php.fastcgi" = false }
    [sites.main.apps."/"]
    physical_path = "www/main"
    [sites.main.apps."/blog"]
    physical_path = "www/blog"
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.config import convert, rewriteread
from corral.config.bindings import parse_binding
from corral.config.declare import Written, declare_engine
from corral.config.errors import Problems, did_you_mean
from corral.config.model import Binding, EngineConfig, EnvVar, Location
from corral.config.servercfg import SwitchEntry
from corral.config.settings import (
    APP_BY_TOML,
    ENGINE_BY_TOML,
    SERVER_BY_TOML,
    SITE_BY_TOML,
    TENANT_BY_TOML,
    Kind,
)
from corral.config.webconfig import EnvOp, HandlerOp, Section, ZooAppOp

KeyPath = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")

#: A site's own scalar settings (besides bindings, switchboard and apps).
_SITE_SCALARS = ("https_redirect", "hsts")


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


def _escape(text: str, pos: int) -> tuple[str, int]:
    """The character of the escape at `pos` (a backslash) and the position after it."""
    code = text[pos + 1]
    if code in _ESCAPES:
        return _ESCAPES[code], pos + 2
    width = {"u": 4, "U": 8}.get(code, 0)
    digits = text[pos + 2 : pos + 2 + width]
    if width and len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
        value = int(digits, 16)
        if value <= 0x10FFFF:
            return chr(value), pos + 2 + width
    return text[pos : pos + 2], pos + 2


def _parse_keys(text: str, pos: int) -> tuple[list[str], int] | None:
    """Dotted key starting at `pos`; returns (parts, position after) or None."""
    parts: list[str] = []
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n:
            return None
        char = text[pos]
        if char == '"':
            end = pos + 1
            buf = []
            while end < n and text[end] != '"':
                if text[end] == "\\" and end + 1 < n:
                    char, end = _escape(text, end)
                    buf.append(char)
                    continue
                buf.append(text[end])
                end += 1
            if end >= n:
                return None
            parts.append("".join(buf))
            pos = end + 1
        elif char == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE.match(text, pos)
            if not match:
                return None
            parts.append(match.group(0))
            pos = match.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


class KeyLines:
    """Line numbers of the tables and keys in a TOML source, by key path."""

    def __init__(self, source: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        table: KeyPath = ()
        counts: dict[KeyPath, int] = {}
        in_multiline: str | None = None
        for number, line in enumerate(source.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            offset = len(line) - len(stripped)
            if stripped.startswith("[["):
                parsed = _parse_keys(line, offset + 2)
                if parsed:
                    path: KeyPath = tuple(parsed[0])
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    table = (*path, index)
                    self.lines.setdefault(table, number)
                    self.lines.setdefault(path, number)
                continue
            if stripped.startswith("["):
                parsed = _parse_keys(line, offset + 1)
                if parsed:
                    table = tuple(parsed[0])
                    self.lines.setdefault(table, number)
                continue
            parsed = _parse_keys(line, offset)
            if parsed and parsed[1] < len(line) and line[parsed[1]] == "=":
                key_path: KeyPath = (*table, *parsed[0])
                self.lines.setdefault(key_path, number)
                rest = line[parsed[1] + 1 :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote

    def line(self, path: KeyPath) -> int:
        """The line of `path`, else of its nearest ancestor written in the file; 0 if none."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return 0


@dataclass(frozen=True, slots=True)
class TomlSource:
    file: str
    data: dict[str, Any]
    lines: KeyLines

    def at(self, *path: str | int) -> Location:
        return Location(self.file, self.lines.line(path))


def read_toml(data: bytes, file: str, problems: Problems) -> TomlSource | None:
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        problems.add(Location(file, line), "toml", "the file is not UTF-8")
        return None
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else 0
        if not match and "(at end of document)" in message:  # an unclosed array or string
            line = max(1, len(text.splitlines()))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        problems.add(Location(file, line), "toml", f"malformed TOML: {message}")
        return None
    return TomlSource(file, parsed, KeyLines(text))


def _table(source: TomlSource, value: object, path: KeyPath, problems: Problems) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    problems.add(source.at(*path), ".".join(str(p) for p in path), "expected a table")
    return {}


# --- engines ------------------------------------------------------------------------------


def read_engines(
    source: TomlSource,
    problems: Problems,
    bases: Mapping[str, EngineConfig] | None = None,
) -> list[EngineConfig]:
    """`[engines.NAME]` tables; one named in `bases` amends that engine (unwritten keys kept)."""
    result: list[EngineConfig] = []
    for name, table in _table(
        source, source.data.get("engines", {}), ("engines",), problems
    ).items():
        table = _table(source, table, ("engines", name), problems)
        written: Written = {}
        env: tuple[EnvVar, ...] | None = None
        for key, value in table.items():
            where = source.at("engines", name, key)
            if key == "env":
                env = tuple(_env_vars(source, value, ("engines", name, "env"), problems))
                continue
            setting = ENGINE_BY_TOML.get(key)
            if setting is None:
                hint = did_you_mean(key, [*ENGINE_BY_TOML, "env"])
                problems.add(where, key, f"unknown engine setting in engine {name!r}{hint}")
                continue
            written[setting.name] = (value, where)
        engine = declare_engine(
            name,
            written,
            env,
            origin="toml",
            location=source.at("engines", name),
            problems=problems,
            base=(bases or {}).get(name),
        )
        if engine is not None:
            result.append(engine)
    return result


def _env_value(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _env_vars(source: TomlSource, value: object, path: KeyPath, problems: Problems) -> list[EnvVar]:
    result: list[EnvVar] = []
    for name, raw in _table(source, value, path, problems).items():
        where = source.at(*path, name)
        text = _env_value(raw)
        if text is None:
            problems.add(where, name, f"a variable's value is a string, got {raw!r}")
            continue
        result.append(EnvVar(name, text, where))
    return result


# --- a site folder's corral.toml ----------------------------------------------------------


def site_sections(source: TomlSource, problems: Problems) -> tuple[Section, ...]:
    """The applications and locations of a corral.toml as web.config-style sections."""
    handlers: list[HandlerOp] = []
    zoo: list[ZooAppOp] = []
    app_paths: dict[str, tuple[str, ...]] = {}
    app_engines: dict[str, str] = {}
    for key in source.data:
        if key not in ("apps", "locations", "engines", "server", "rewrite"):
            problems.add(source.at(key), key, "unknown table in corral.toml")
    apps = _table(source, source.data.get("apps", {}), ("apps",), problems)
    for name, table in apps.items():
        table = _table(source, table, ("apps", name), problems)
        app_where = source.at("apps", name)
        env: list[EnvOp] = []
        engine = ""
        paths: tuple[str, ...] = ("*",)
        for key, value in table.items():
            where = source.at("apps", name, key)
            if key == "env":
                env.extend(
                    EnvOp("add", var.name, var.value, var.location or where)
                    for var in _env_vars(source, value, ("apps", name, "env"), problems)
                )
                continue
            setting = APP_BY_TOML.get(key)
            if setting is None:
                hint = did_you_mean(key, [*APP_BY_TOML, "env"])
                problems.add(where, key, f"unknown application setting in app {name!r}{hint}")
                continue
            try:
                typed = setting.convert(value)
            except ValueError as error:
                problems.add(where, key, str(error))
                continue
            if setting.name == "app.engine":
                engine = str(typed)
            elif setting.name == "app.paths":
                paths = tuple(str(p) for p in typed) if isinstance(typed, tuple) else ()
            elif setting.kind in (Kind.PATH_LIST, Kind.MASK) and isinstance(typed, tuple):
                separator = os.pathsep if setting.kind is Kind.PATH_LIST else ";"
                env.append(EnvOp("add", setting.zoo_name, separator.join(typed), where))
            else:
                env.append(EnvOp("add", setting.zoo_name, str(typed), where))
        if not engine:
            problems.add(app_where, "engine", f"application {name!r} names no engine")
            continue
        if not paths:
            problems.add(
                source.at("apps", name, "paths"), "paths", f"application {name!r} maps no paths"
            )
            continue
        names = [var.name for var in env]
        for var in env:
            if names.count(var.name) > 1:
                problems.add(
                    var.location,
                    var.name,
                    f"set twice in application {name!r} (a key and an env entry)",
                )
        app_paths[name] = paths
        app_engines[name] = engine
        for pattern in paths:
            handlers.append(HandlerOp("add", f"{name}#{pattern}", app_where, pattern, engine))
        zoo.append(ZooAppOp("application", name, tuple(env), app_where))
    sections = [
        Section("", tuple(handlers) if handlers else None, tuple(zoo), Location(source.file, 1))
    ]
    locations = _table(source, source.data.get("locations", {}), ("locations",), problems)
    for folder, target in locations.items():
        where = source.at("locations", folder)
        clean = folder.replace("\\", "/").strip("/")
        if not isinstance(target, str):
            problems.add(where, folder, 'a location maps to "none" or an application name')
            continue
        if any(part == ".." for part in clean.split("/")):
            problems.add(where, folder, "a location cannot leave the application folder")
            continue
        ops = [HandlerOp("clear", "", where)]
        if target != "none":
            if target not in app_paths:
                problems.add(where, folder, f"no application named {target!r}")
                continue
            ops.extend(
                HandlerOp("add", f"{target}#{pattern}", where, pattern, app_engines[target])
                for pattern in app_paths[target]
            )
        sections.append(Section(clean, tuple(ops), (), where))
    if "rewrite" in source.data:
        rules = rewriteread.read_toml(source.data["rewrite"], source.at, problems)
        for folder, rule_ops in rules.items():
            sections.append(
                Section(folder, None, (), source.at("rewrite"), rewrite=tuple(rule_ops))
            )
    return tuple(sections)


# --- the server file ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MountDecl:
    virtual_path: str
    physical_path: str
    location: Location
    #: The mount's users and limits (`tenant.*`), as written.
    tenancy: Written = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SiteDecl:
    name: str
    bindings: tuple[Binding, ...]
    switchboard: tuple[SwitchEntry, ...]
    mounts: tuple[MountDecl, ...]
    location: Location
    #: `https_redirect` and `hsts` as converted (`SiteConfig`'s fields); None: not written.
    https_redirect: bool | None = None
    hsts: str | None = None
    #: The site's table has a `bindings` key (else applicationHost.config's may give them).
    bindings_written: bool = True
    #: The site's users and limits (`tenant.*`), as written.
    tenancy: Written = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncludeDecl:
    """`[server] include` and `include_bindings` as written (`corral.config.include`)."""

    patterns: tuple[tuple[str, Location], ...]
    #: The bindings of the site folders ("vhosts/*/"), without host names.
    folder_bindings: tuple[Binding, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class ServerToml:
    file: str
    application_host: tuple[str, Location] | None
    sites: tuple[SiteDecl, ...]
    #: The front server's settings written in `[server]`, not yet converted (`declare_server`).
    settings: Written
    include: IncludeDecl | None = None


def read_server_settings(
    source: TomlSource, problems: Problems, *, server_file: bool = True
) -> tuple[Written, tuple[str, Location] | None]:
    """`[server]`: the front server's settings as written, and `application_host` (the path
    made absolute) when `server_file` (a site's corral.toml served alone has no such key)."""
    base = os.path.dirname(os.path.abspath(source.file))
    written: Written = {}
    application_host: tuple[str, Location] | None = None
    server = _table(source, source.data.get("server", {}), ("server",), problems)
    for key, value in server.items():
        where = source.at("server", key)
        setting = SERVER_BY_TOML.get(key)
        if setting is not None:
            written[setting.name] = (value, where)
        elif key in ("include", "include_bindings") and server_file:
            continue  # read by `read_include`
        elif key in ("include", "include_bindings"):
            problems.add(where, key, "only a server file includes site files")
        elif key == "application_host" and not server_file:
            problems.add(where, key, "only a server file names an applicationHost.config")
        elif key == "application_host" and isinstance(value, str):
            application_host = (os.path.normpath(os.path.join(base, value)), where)
        elif key == "application_host":
            problems.add(where, key, "expected a path")
        else:
            own = ["application_host", "include", "include_bindings"] * server_file
            known = ", ".join(own + sorted(SERVER_BY_TOML))
            hint = did_you_mean(key, own + list(SERVER_BY_TOML))
            problems.add(where, key, f"unknown server setting{hint} (known: {known})")
    return written, application_host


def read_server(source: TomlSource, problems: Problems) -> ServerToml:
    """`[server]` and `[sites]`; `[engines]` is read by `read_engines` once the
    applicationHost.config they may amend has been read."""
    base = os.path.dirname(os.path.abspath(source.file))
    for key in source.data:
        if key not in ("server", "engines", "sites"):
            problems.add(source.at(key), key, "unknown table in the server file")
    settings, application_host = read_server_settings(source, problems)
    include = read_include(source, problems)
    sites = read_sites(source, problems, base)
    if not sites and include is None:
        problems.add(Location(source.file, 1), "sites", "the server file declares no site")
    return ServerToml(source.file, application_host, tuple(sites), settings, include)


def read_include(source: TomlSource, problems: Problems) -> IncludeDecl | None:
    """`[server] include` (a list of patterns, or one) and `include_bindings`."""
    server = source.data.get("server", {})
    if not isinstance(server, dict) or "include" not in server:
        if isinstance(server, dict) and "include_bindings" in server:
            problems.add(
                source.at("server", "include_bindings"),
                "include_bindings",
                "set without include (it gives the bindings of included site folders)",
            )
        return None
    where = source.at("server", "include")
    value = server["include"]
    items = [value] if isinstance(value, str) else value
    patterns: list[tuple[str, Location]] = []
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        problems.add(where, "include", 'expected a list of patterns, such as ["sites.d/*.toml"]')
    else:
        patterns = [(item, where) for item in items]
    bindings: tuple[Binding, ...] = ()
    if "include_bindings" in server:
        bindings = _bindings(
            source, server["include_bindings"], ("server", "include_bindings"), problems
        )
        for binding in bindings:
            if binding.hosts:
                problems.add(
                    binding.location or where,
                    "include_bindings",
                    "no host name here: each site folder's name is its host name",
                )
    else:
        bindings = (parse_binding("127.0.0.1:8080", where),)
    return IncludeDecl(tuple(patterns), bindings, where)


def read_sites(source: TomlSource, problems: Problems, base: str) -> list[SiteDecl]:
    """`[sites.NAME]` tables; relative physical paths from `base` (the file's folder)."""
    sites: list[SiteDecl] = []
    for name, table in _table(source, source.data.get("sites", {}), ("sites",), problems).items():
        table = _table(source, table, ("sites", name), problems)
        bindings: tuple[Binding, ...] = ()
        switchboard: list[SwitchEntry] = []
        mounts: list[MountDecl] = []
        scalars: dict[str, object] = {}
        tenancy: Written = {}
        for key, value in table.items():
            where = source.at("sites", name, key)
            if key in TENANT_BY_TOML:
                tenancy[TENANT_BY_TOML[key].name] = (value, where)
            elif key == "bindings":
                bindings = _bindings(source, value, ("sites", name, key), problems)
            elif key == "switchboard":
                for engine, enabled in _table(
                    source, value, ("sites", name, key), problems
                ).items():
                    try:
                        switchboard.append(SwitchEntry(engine, convert.to_bool(enabled), where))
                    except ValueError as error:
                        problems.add(where, "switchboard", f"{engine}: {error}")
            elif key == "apps":
                mounts.extend(_mounts(source, value, ("sites", name, key), base, problems))
            elif key in _SITE_SCALARS:
                try:
                    scalars[key] = SITE_BY_TOML[key].convert(value)
                except ValueError as error:
                    problems.add(where, key, str(error))
            else:
                hint = did_you_mean(
                    key, ["bindings", "switchboard", "apps", *_SITE_SCALARS, *TENANT_BY_TOML]
                )
                problems.add(where, key, f"unknown site setting in site {name!r}{hint}")
        if not mounts:
            problems.add(
                source.at("sites", name),
                "apps",
                f'site {name!r} has no application (add [sites.{name}.apps."/"])',
            )
        redirect = scalars.get("https_redirect")
        hsts = scalars.get("hsts")
        sites.append(
            SiteDecl(
                name,
                bindings,
                tuple(switchboard),
                tuple(mounts),
                source.at("sites", name),
                https_redirect=redirect if isinstance(redirect, bool) else None,
                hsts=hsts if isinstance(hsts, str) else None,
                bindings_written="bindings" in table,
                tenancy=tenancy,
            )
        )
    return sites


def _mounts(
    source: TomlSource, value: object, path: KeyPath, base: str, problems: Problems
) -> list[MountDecl]:
    result: list[MountDecl] = []
    seen: dict[str, Location] = {}
    for virtual, table in _table(source, value, path, problems).items():
        where = source.at(*path, virtual)
        try:
            virtual_path = convert.to_virtual_path(virtual)
        except ValueError as error:
            problems.add(where, "virtual path", str(error))
            continue
        if virtual_path in seen:
            problems.add(
                where,
                "virtual path",
                f"duplicate virtual path {virtual_path} (first at line {seen[virtual_path].line})",
            )
            continue
        seen[virtual_path] = where
        table = _table(source, table, (*path, virtual), problems)
        physical = table.get("physical_path")
        tenancy: Written = {}
        for key in table:
            if key in TENANT_BY_TOML:
                tenancy[TENANT_BY_TOML[key].name] = (table[key], source.at(*path, virtual, key))
            elif key != "physical_path":
                known = ["physical_path", *TENANT_BY_TOML]
                problems.add(
                    source.at(*path, virtual, key),
                    key,
                    f"unknown setting{did_you_mean(key, known)} (an application's "
                    "own settings live in its folder's web.config or corral.toml)",
                )
        if not isinstance(physical, str) or not physical:
            problems.add(where, "physical_path", f"{virtual_path} needs a physical_path")
            continue
        folder = os.path.normpath(os.path.join(base, os.path.expanduser(physical)))
        result.append(MountDecl(virtual_path, folder, where, tenancy))
    return result


def _bindings(
    source: TomlSource, value: object, path: KeyPath, problems: Problems
) -> tuple[Binding, ...]:
    where = source.at(*path)
    if not isinstance(value, list):
        problems.add(where, "bindings", "expected a list of bindings")
        return ()
    result: list[Binding] = []
    for item in value:
        try:
            result.append(parse_binding(item, where))
        except ValueError as error:
            problems.add(where, "bindings", str(error))
    return tuple(result)
