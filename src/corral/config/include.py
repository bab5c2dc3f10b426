"""Sites as files: the server file's `include` patterns, each match read and built on its own.

    [server]
    include = ["sites.d/*.toml", "vhosts/*/"]
    include_bindings = ["*:80"]          # where the site folders listen (default 127.0.0.1:8080)

A pattern is relative to the server file's folder, with its wildcards (`*`, `?`, `[...]`) in its
last part only (the folder it names is the one watched for new files). Hidden names are never
matched (an editor's `.a.toml.swp`), nor is a file a pattern does not match (`a.toml~`).

- A pattern ending in "/" matches site folders: each is a site named after its folder, bound on
  `include_bindings` with the folder's name as its host name, with one application at "/" whose
  web.config or corral.toml is read as for any mount (Helicon Zoo's layout: one folder per site).
- Any other pattern matches site files: each holds `[sites.NAME]` tables in the server file's own
  form, relative paths from the site file's own folder. `[server]`, `[engines]` or any other
  table is refused: those belong to the whole server.

`assemble` builds each match apart from the others: a match with errors is refused (every error
with its file and line) and, when the configuration it replaces is given (a reload), keeps the
sites it had there; the other matches load. Between matches, a site name already declared (by
the server file or another match) or a binding (address, port, host) already bound refuses the
later match; a match that already served before comes first, so that a new file never takes a
running site's name or binding.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from corral.config import convert
from corral.config.appbuild import BuildContext
from corral.config.errors import ConfigError, Problems, in_file_order
from corral.config.model import Binding, IncludedFile, Location, ServerConfig, SiteConfig
from corral.config.tomlfile import IncludeDecl, MountDecl, SiteDecl, read_sites, read_toml

_MAGIC = re.compile(r"[*?[]")

#: Builds one site declaration into `ctx` (its problems, notices), adding the files it reads.
BuildSite = Callable[[BuildContext, SiteDecl, list[str]], SiteConfig]
BindKey = tuple[str, int, str]


@dataclass(frozen=True, slots=True)
class Pattern:
    written: str
    #: Absolute, without the trailing "/" of a folder pattern.
    path: str
    #: Matches site folders (written with a trailing "/"), else site files.
    folders: bool
    location: Location

    @property
    def folder(self) -> str:
        """The folder its matches appear in (watched for new ones)."""
        return os.path.dirname(self.path)


@dataclass(frozen=True, slots=True)
class Unit:
    """One match: a site file or a site folder, its site declarations and its own errors."""

    path: str
    pattern: Pattern
    sites: tuple[SiteDecl, ...]
    errors: tuple[ConfigError, ...] = ()


@dataclass(frozen=True, slots=True)
class Included:
    """What the include patterns matched, before building."""

    patterns: tuple[Pattern, ...]
    units: tuple[Unit, ...]
    #: "matches nothing yet" and the like, for `corral check`.
    notices: tuple[str, ...]


def patterns(decl: IncludeDecl, base: str, problems: Problems) -> list[Pattern]:
    """The patterns made absolute from `base`; a wildcard before the last part is an error."""
    result: list[Pattern] = []
    for text, where in decl.patterns:
        folders = text.endswith(("/", os.sep))
        path = os.path.normpath(os.path.join(base, os.path.expanduser(text.rstrip("/" + os.sep))))
        if not text.rstrip("/" + os.sep):
            problems.add(where, "include", f"{text!r} names no file or folder")
        elif _MAGIC.search(os.path.dirname(path)):
            problems.add(
                where,
                "include",
                f"{text!r}: a wildcard goes in the last part only (the file or folder name), "
                'as in "sites.d/*.toml" or "vhosts/*/"',
            )
        else:
            result.append(Pattern(text, path, folders, where))
    return result


def matches(pattern: Pattern) -> list[str]:
    """The files (or folders) `pattern` matches now, sorted."""
    found = glob.glob(glob.escape(pattern.folder) + os.sep + os.path.basename(pattern.path))
    keep = os.path.isdir if pattern.folders else os.path.isfile
    return sorted(path for path in found if keep(path))


def read(decl: IncludeDecl, base: str, problems: Problems) -> Included:
    """Every match of the include patterns, each read on its own (its errors kept apart)."""
    found = patterns(decl, base, problems)
    units: list[Unit] = []
    notices: list[str] = []
    seen: set[str] = set()
    for pattern in found:
        paths = matches(pattern)
        if not paths:
            missing = "" if os.path.isdir(pattern.folder) else f" (no folder {pattern.folder})"
            notices.append(
                f"{pattern.location}: include {pattern.written!r} matches nothing yet{missing}: "
                "no sites from it"
            )
        for path in paths:
            if path in seen:
                continue
            seen.add(path)
            if pattern.folders:
                units.append(site_folder(path, pattern, decl.folder_bindings))
            else:
                units.append(site_file(path, pattern))
    return Included(tuple(found), tuple(units), tuple(notices))


def site_file(path: str, pattern: Pattern) -> Unit:
    """A site file: `[sites.NAME]` tables only."""
    problems = Problems()
    sites: list[SiteDecl] = []
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        problems.add(Location(path), "file", f"cannot read: {error.strerror}")
        data = None
    source = None if data is None else read_toml(data, path, problems)
    if source is not None:
        for key in source.data:
            if key != "sites":
                written = [n for path, n in source.lines.lines.items() if path[:1] == (key,)]
                problems.add(
                    Location(path, min(written, default=0)),
                    key,
                    f"[{key}] in an included site file (it holds [sites.NAME] tables only; "
                    f"[server] and [engines] belong in the server file, {pattern.location.file})",
                )
        sites = read_sites(source, problems, os.path.dirname(path))
        if not sites and "sites" not in source.data:
            problems.add(Location(path, 1), "sites", "the site file declares no site")
    return Unit(path, pattern, tuple(sites), tuple(problems.errors))


def site_folder(path: str, pattern: Pattern, bindings: Iterable[Binding]) -> Unit:
    """A site folder: a site named after it, its name as host name, its application at "/"."""
    name = os.path.basename(path)
    where = Location(path)
    problems = Problems()
    try:
        host = convert.to_host_name(name)
    except ValueError as error:
        problems.add(where, "include", f"a site folder's name is its host name: {error}")
        return Unit(path, pattern, (), tuple(problems.errors))
    own = tuple(dataclasses.replace(b, hosts=(host,), location=where) for b in bindings)
    decl = SiteDecl(name, own, (), (MountDecl("/", path, where),), where)
    return Unit(path, pattern, (decl,))


def _keys(site: SiteConfig) -> Iterable[tuple[BindKey, Binding]]:
    for binding in site.bindings:
        for host in binding.hosts or ("",):
            yield (binding.address, binding.port, host), binding


def _claim(
    problems: Problems, sites: Iterable[SiteConfig], bound: dict[BindKey, str]
) -> dict[BindKey, str]:
    """The bindings `sites` would take; an error for each one another site holds."""
    claims: dict[BindKey, str] = {}
    for site in sites:
        for key, binding in _keys(site):
            other = bound.get(key) or claims.get(key)
            if other is not None and other != site.name:
                what = f"host {key[2]}" if key[2] else "every host (no host name)"
                problems.add(
                    binding.location or site.location or Location("?"),
                    "bindings",
                    f"{what} on {key[0]}:{key[1]} is already bound by site {other!r}",
                )
            else:
                claims[key] = site.name
    return claims


def _named(
    problems: Problems, sites: Iterable[tuple[str, Location | None]], names: dict[str, str]
) -> None:
    for name, where in sites:
        if name in names:
            problems.add(
                where or Location("?"),
                "sites",
                f"site {name!r} is already declared ({names[name]})",
            )


def assemble(
    ctx: BuildContext,
    included: Included,
    main_sites: list[SiteConfig],
    previous: ServerConfig | None,
    build: BuildSite,
    sources: list[str],
) -> tuple[list[SiteConfig], list[IncludedFile]]:
    """Build each match apart; the sites that load (or are kept) and each match's outcome.

    Notices, settings not in effect and engines used of a match that loads join `ctx`'s; the
    files every match read join `sources` (a refused file too: its fix must be seen)."""
    before = {item.path: item for item in (previous.included if previous else ())}
    old_sites = {site.name: site for site in (previous.sites if previous else ())}
    names = {site.name: str(site.location or "the server file") for site in main_sites}
    bound = {key: site.name for site in main_sites for key, _ in _keys(site)}
    units = included.units
    outcome: dict[int, tuple[list[SiteConfig], IncludedFile]] = {}
    for index in sorted(range(len(units)), key=lambda i: (units[i].path not in before, i)):
        unit = units[index]
        problems = Problems()
        problems.errors.extend(unit.errors)
        _named(problems, ((decl.name, decl.location) for decl in unit.sites), names)
        built: list[SiteConfig] = []
        claims: dict[BindKey, str] = {}
        if not unit.pattern.folders:
            sources.append(unit.path)
        if not problems:
            sub = dataclasses.replace(
                ctx,
                problems=problems,
                notices=[],
                not_in_effect=[],
                used_engines=dict(ctx.used_engines),
            )
            read: list[str] = []
            built = [build(sub, decl, read) for decl in unit.sites]
            sources.extend(read)
            claims = _claim(problems, built, bound)
            if not problems:
                ctx.notices.extend(sub.notices)
                ctx.not_in_effect.extend(sub.not_in_effect)
                ctx.used_engines.update(sub.used_engines)
        errors = tuple((e.location, e.setting, e.message) for e in in_file_order(problems.errors))
        kept = False
        if problems:
            built, claims = _keep(before.get(unit.path), old_sites, names, bound)
            kept = bool(built)
        for site in built:
            names[site.name] = str(site.location or unit.path)
        bound.update(claims)
        record = IncludedFile(
            unit.path, unit.pattern.written, tuple(s.name for s in built), errors, kept
        )
        outcome[index] = (built, record)
    sites = [site for index in sorted(outcome) for site in outcome[index][0]]
    return sites, [outcome[index][1] for index in sorted(outcome)]


def _keep(
    old: IncludedFile | None,
    old_sites: dict[str, SiteConfig],
    names: dict[str, str],
    bound: dict[BindKey, str],
) -> tuple[list[SiteConfig], dict[BindKey, str]]:
    """A refused match's sites as they were before, when it had any and they still fit."""
    if old is None:
        return [], {}
    sites = [old_sites[name] for name in old.sites if name in old_sites]
    check = Problems()
    _named(check, ((site.name, site.location) for site in sites), names)
    claims = _claim(check, sites, bound)
    if check:
        return [], {}
    return sites, claims
