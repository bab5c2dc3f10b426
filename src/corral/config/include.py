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
sites it had there; the other matches load. Between matches, a site name or a binding (address,
port, host) that two claim goes to the server file, else to the match that held it before, else
to the first in include order; the other is refused. So a new or changed file never takes a
name or a binding that another file's site holds: editing one customer's file cannot take
another customer's site down.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from corral.config import convert
from corral.config.appbuild import BuildContext
from corral.config.errors import ConfigError, Problems, in_file_order
from corral.config.model import Binding, IncludedFile, Location, ServerConfig, SiteConfig
from corral.config.sitebindings import with_bindings
from corral.config.tomlfile import IncludeDecl, MountDecl, SiteDecl, read_sites, read_toml

_MAGIC = re.compile(r"[*?[]")

#: Builds one site declaration into `ctx` (its problems, notices), adding the files it reads.
BuildSite = Callable[[BuildContext, SiteDecl, list[str]], SiteConfig]


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
        sites = with_bindings(read_sites(source, problems, os.path.dirname(path)), None, problems)
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


#: What one site holds that no other may: its name ("site", NAME, 0, "") and each host on each
#: address and port it binds ("binding", ADDRESS, PORT, HOST; "" for every host).
Claim = tuple[str, str, int, str]


def _claims(site: SiteConfig) -> Iterator[tuple[Claim, Location]]:
    """Each claim of `site`, with where it is written."""
    where = site.location or Location("?")
    yield ("site", site.name, 0, ""), where
    for binding in site.bindings:
        for host in binding.hosts or ("",):
            yield ("binding", binding.address, binding.port, host), binding.location or where


def _conflict(problems: Problems, claim: Claim, where: Location, holder: SiteConfig) -> None:
    """The error of a site claiming what `holder` holds."""
    held_at = f" ({holder.location})" if holder.location else ""
    if claim[0] == "site":
        problems.add(where, "sites", f"site {claim[1]!r} is already declared{held_at}")
        return
    what = f"host {claim[3]}" if claim[3] else "every host (no host name)"
    problems.add(
        where,
        "bindings",
        f"{what} on {claim[1]}:{claim[2]} is already bound by site {holder.name!r}{held_at}",
    )


@dataclass(slots=True)
class _Match:
    """One unit while `assemble` settles who holds what."""

    unit: Unit
    problems: Problems
    #: Its sites built from its files (when it had no error of its own).
    built: list[SiteConfig]
    sub: BuildContext | None
    #: Its sites now: the built ones, its previous ones when refused, or none.
    sites: list[SiteConfig]
    refused: bool = False


def _build_match(ctx: BuildContext, unit: Unit, build: BuildSite, sources: list[str]) -> _Match:
    """Build one unit on its own: its own errors, and conflicts between its own sites."""
    problems = Problems()
    problems.errors.extend(unit.errors)
    if not unit.pattern.folders:
        sources.append(unit.path)
    if problems:
        return _Match(unit, problems, [], None, [])
    sub = dataclasses.replace(
        ctx, problems=problems, notices=[], not_in_effect=[], used_engines=dict(ctx.used_engines)
    )
    built = [build(sub, decl, sources) for decl in unit.sites]
    own: dict[Claim, SiteConfig] = {}
    for site in built:
        for claim, where in _claims(site):
            holder = own.setdefault(claim, site)
            if holder is not site:
                _conflict(problems, claim, where, holder)
    return _Match(unit, problems, built, sub, built)


def assemble(
    ctx: BuildContext,
    included: Included,
    main_sites: list[SiteConfig],
    previous: ServerConfig | None,
    build: BuildSite,
    sources: list[str],
) -> tuple[list[SiteConfig], list[IncludedFile]]:
    """Build each match apart; the sites that load (or are kept) and each match's outcome.

    Who holds a site name or a binding two matches claim: the server file; else the match that
    held it in ``previous``; else the first in include order. The others are refused (and keep
    their previous sites, unless those conflict too), until no conflict is left. Notices,
    settings not in effect and engines used of a match that loads join `ctx`'s; the files every
    match read join `sources` (a refused file too: its fix must be seen)."""
    before = {item.path: item for item in (previous.included if previous else ())}
    old_sites = {site.name: site for site in (previous.sites if previous else ())}
    owner: dict[Claim, str] = {}
    for item in before.values():
        for name in item.sites:
            if name in old_sites:
                owner.update((claim, item.path) for claim, _ in _claims(old_sites[name]))
    server: dict[Claim, SiteConfig] = {c: s for s in main_sites for c, _ in _claims(s)}
    matches = [_build_match(ctx, unit, build, sources) for unit in included.units]
    for match in matches:
        if match.problems:
            _refuse(match, before, old_sites)
    while _settle(matches, server, owner, before, old_sites):
        pass
    for match in matches:
        if not match.refused and match.sub is not None:
            ctx.notices.extend(match.sub.notices)
            ctx.not_in_effect.extend(match.sub.not_in_effect)
            ctx.used_engines.update(match.sub.used_engines)
    records = [
        IncludedFile(
            m.unit.path,
            m.unit.pattern.written,
            tuple(site.name for site in m.sites),
            tuple((e.location, e.setting, e.message) for e in in_file_order(m.problems.errors)),
            kept=m.refused and bool(m.sites),
        )
        for m in matches
    ]
    return [site for match in matches for site in match.sites], records


def _refuse(match: _Match, before: dict[str, IncludedFile], old: dict[str, SiteConfig]) -> None:
    """Refuse a match: its sites are the ones it had before (none at start)."""
    match.refused = True
    item = before.get(match.unit.path)
    match.sites = [] if item is None else [old[name] for name in item.sites if name in old]


def _settle(
    matches: list[_Match],
    server: dict[Claim, SiteConfig],
    owner: dict[Claim, str],
    before: dict[str, IncludedFile],
    old: dict[str, SiteConfig],
) -> bool:
    """One round: refuse each match that claims what another holds (a refused one's previous
    sites are dropped then). True when something changed (another round is needed)."""
    claimants: dict[Claim, list[tuple[int, SiteConfig, Location]]] = {}
    for index, match in enumerate(matches):
        for site in match.sites:
            for claim, where in _claims(site):
                claimants.setdefault(claim, []).append((index, site, where))
    losers: dict[int, list[tuple[Claim, Location, SiteConfig]]] = {}
    for claim, who in claimants.items():
        holder = server.get(claim)
        if holder is None and len(who) == 1:
            continue
        if holder is None:
            first = who[0]
            by_owner = [w for w in who if matches[w[0]].unit.path == owner.get(claim)]
            winner = by_owner[0] if by_owner else first
            holder = winner[1]
            who = [w for w in who if w is not winner]
        for index, _, where in who:
            losers.setdefault(index, []).append((claim, where, holder))
    for index, lost in losers.items():
        match = matches[index]
        for claim, where, holder in lost:
            _conflict(match.problems, claim, where, holder)
        if match.refused:
            match.sites = []  # its previous sites do not fit any more
        else:
            _refuse(match, before, old)
    return bool(losers)
