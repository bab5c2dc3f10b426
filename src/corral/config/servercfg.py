"""Helicon's `applicationHost.config` `<heliconZooServer>`: engines, user engines, switchboard.

`<engines>` holds the installer's engines; `<userEngines>` (same syntax) replaces an engine of the
same name and adds new ones. `<switchboard>` `add name="*|engine|console" value="Enabled|Disabled"`
applies to every site, or to one site inside `<location path="SiteName">` (the `console` entry
allows or refuses the applications' web consoles; `*` does not cover it: it is no engine). The
rest of the file (IIS's modules, applications, virtual directories) is not read: sites come from
Corral's server TOML.

IIS's `<system.applicationHost><sites><site name="NAME"><bindings>` are read too: a server TOML
site of the same name that writes no `bindings` takes them. `<binding protocol="https"
bindingInformation="*:443:host" certificateFile="a.pem" certificateKeyFile="a.key"/>`: IIS's
certificate store has no equivalent off Windows, so the PEM files are named by these two
attributes of Corral's (relative to this file; docs/webconfig-mapping.md).

What is read of `<system.applicationHost>` besides: each site's application pool identity and
limits, `<applicationPools><add name="P" memoryHardLimit cpuQuota maxProcesses maxOpenFiles>
<processModel userName groupName/>` and `<sites><site name="S"><application path="/blog"
applicationPool="P">`: the `tenant.*` settings of the applications at that virtual path of site
S (`ZooServer.pools`).

The front server's settings (Corral's own; Zoo had none) are attributes of the section itself,
outside any `<location>`: `<heliconZooServer maxBodySize="10000000" headerTimeout="10">`
(`settings.SERVER_BY_ATTRIBUTE`). The server TOML's `[server]` wins over them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from corral.config import convert
from corral.config.bindings import binding_tls, parse_binding_information
from corral.config.declare import Written, declare_engine
from corral.config.errors import Problems, did_you_mean
from corral.config.model import Binding, EngineConfig, EnvVar, Location, NotInEffect
from corral.config.settings import ENGINE_BY_ATTRIBUTE, SERVER_BY_ATTRIBUTE, TENANT_BY_ATTRIBUTE
from corral.config.webconfig import apply_env_ops, env_ops
from corral.config.xmlfile import Element, parse_xml


@dataclass(frozen=True, slots=True)
class SwitchEntry:
    name: str
    enabled: bool
    location: Location


@dataclass(frozen=True, slots=True)
class IisSite:
    """What Corral reads of an IIS `<site>`: its `<bindings>` and its `<hsts>` (IIS 10)."""

    bindings: tuple[Binding, ...]
    #: `<hsts redirectHttpToHttps>`; None: not written.
    https_redirect: bool | None = None
    #: The Strict-Transport-Security value `<hsts>` makes ("" when disabled); None: no `<hsts>`.
    hsts: str | None = None
    #: Errors in its bindings, reported only when a server TOML site takes them.
    errors: tuple[tuple[Location, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ZooServer:
    file: str
    #: `<engines>` then `<userEngines>` entries, in file order, each with its origin.
    engines: tuple[EngineConfig, ...]
    user_engines: tuple[EngineConfig, ...]
    #: site name ("" = every site) -> entries in order.
    switchboard: dict[str, tuple[SwitchEntry, ...]]
    not_in_effect: tuple[NotInEffect, ...]
    #: The front server's settings (`<heliconZooServer>` attributes), not yet converted.
    settings: Written = field(default_factory=dict)
    #: IIS `<sites>`: site name -> its bindings and HSTS.
    sites: dict[str, IisSite] = field(default_factory=dict)
    #: (site, virtual path) -> the `tenant.*` settings of its application pool, as written.
    pools: dict[tuple[str, str], Written] = field(default_factory=dict)


def read_application_host(data: bytes, file: str, problems: Problems) -> ZooServer | None:
    root = parse_xml(data, file, problems)
    if root is None:
        return None
    engines: list[EngineConfig] = []
    user: list[EngineConfig] = []
    switchboard: dict[str, list[SwitchEntry]] = {}
    not_in_effect: list[NotInEffect] = []
    settings: Written = {}

    def section(web_server: Element, site: str) -> None:
        for zoo in web_server.find_all("heliconZooServer"):
            for attribute, value in zoo.attrs.items():
                setting = SERVER_BY_ATTRIBUTE.get(attribute)
                if setting is None:
                    known = ", ".join(sorted(SERVER_BY_ATTRIBUTE))
                    problems.add(
                        zoo.location,
                        attribute,
                        f"unknown attribute of <heliconZooServer>"
                        f"{did_you_mean(attribute, SERVER_BY_ATTRIBUTE)} (known: {known})",
                    )
                elif site:
                    problems.add(
                        zoo.location,
                        attribute,
                        "a server setting applies to the whole server: set it on the "
                        "<heliconZooServer> outside <location>",
                    )
                else:
                    settings[setting.name] = (value, zoo.location)
            for child in zoo.children:
                if child.tag == "engines":
                    engines.extend(_engines(child, "engines", problems))
                elif child.tag == "userEngines":
                    user.extend(_engines(child, "userEngines", problems))
                elif child.tag == "switchboard":
                    entries = switchboard.setdefault(site, [])
                    entries.extend(_switchboard(child, problems))
                else:
                    problems.add(
                        child.location, "heliconZooServer", f"unknown element <{child.tag}>"
                    )

    sites: dict[str, IisSite] = {}
    pools: dict[tuple[str, str], Written] = {}
    for child in root.children:
        if child.tag == "system.applicationHost":
            pools.update(_application_pools(child, problems))
            for element in child.find_all("sites"):
                sites.update(_iis_sites(element, file))
        elif child.tag == "system.webServer":
            section(child, "")
        elif child.tag == "location":
            site = child.attrs.get("path", "").strip().strip("/")
            for inner in child.find_all("system.webServer"):
                section(inner, site)
    return ZooServer(
        file,
        tuple(engines),
        tuple(user),
        {site: tuple(entries) for site, entries in switchboard.items()},
        tuple(not_in_effect),
        settings,
        sites,
        pools,
    )


#: Corral's own `<binding>` attributes naming an https binding's PEM files.
CERTIFICATE_FILE = "certificateFile"
CERTIFICATE_KEY_FILE = "certificateKeyFile"


def _iis_sites(sites: Element, file: str) -> dict[str, IisSite]:
    """IIS `<sites><site name>`: each named site's `<bindings>` and `<hsts>`."""
    base = os.path.dirname(os.path.abspath(file))
    found: dict[str, IisSite] = {}
    for site in sites.find_all("site"):
        name = site.attrs.get("name", "").strip()
        result: list[Binding] = []
        errors: list[tuple[Location, str, str]] = []
        for group in site.find_all("bindings"):
            for binding in group.find_all("binding"):
                where = binding.location
                protocol = binding.attrs.get("protocol", "http").strip().lower()
                certificate = binding.attrs.get(CERTIFICATE_FILE)
                key = binding.attrs.get(CERTIFICATE_KEY_FILE)
                try:
                    tls = binding_tls(
                        protocol, certificate, key, base, (CERTIFICATE_FILE, CERTIFICATE_KEY_FILE)
                    )
                    information = binding.attrs.get("bindingInformation", "")
                    result.append(parse_binding_information(information, where, *tls))
                except ValueError as error:
                    errors.append((where, "binding", str(error)))
        redirect: bool | None = None
        hsts: str | None = None
        for element in site.find_all("hsts"):
            redirect, hsts = _iis_hsts(element, errors)
        if name:
            found[name] = IisSite(tuple(result), redirect, hsts, tuple(errors))
    return found


def _iis_hsts(
    element: Element, errors: list[tuple[Location, str, str]]
) -> tuple[bool | None, str | None]:
    """IIS 10's `<hsts enabled max-age includeSubDomains preload redirectHttpToHttps>`."""
    attrs = element.attrs
    flags: dict[str, bool] = {}
    for name in ("enabled", "includeSubDomains", "preload", "redirectHttpToHttps"):
        if name in attrs:
            try:
                flags[name] = convert.to_bool(attrs[name])
            except ValueError as error:
                errors.append((element.location, f"hsts {name}", str(error)))
    redirect = flags.get("redirectHttpToHttps")
    if not flags.get("enabled", False):
        return redirect, ""
    try:
        age = convert.to_int(attrs.get("max-age", "0"), minimum=0)
    except ValueError as error:
        errors.append((element.location, "hsts max-age", str(error)))
        return redirect, None
    value = f"max-age={age}"
    if flags.get("includeSubDomains"):
        value += "; includeSubDomains"
    if flags.get("preload"):
        value += "; preload"
    return redirect, value


def _application_pools(host: Element, problems: Problems) -> dict[tuple[str, str], Written]:
    """(site, virtual path) -> its application pool's `tenant.*` settings (IIS attributes other
    than Corral's are left alone: an applicationHost.config from IIS has many)."""
    declared: dict[str, Written] = {}
    for pools in host.find_all("applicationPools"):
        for add in pools.find_all("add"):
            name = add.attrs.get("name", "").strip()
            written: Written = {}
            for attribute, value in add.attrs.items():
                setting = TENANT_BY_ATTRIBUTE.get(attribute)
                if setting is not None:
                    written[setting.name] = (value, add.location)
            for model in add.find_all("processModel"):
                for attribute in ("userName", "groupName"):
                    setting = TENANT_BY_ATTRIBUTE[f"processModel {attribute}"]
                    if model.attrs.get(attribute, "").strip():
                        written[setting.name] = (model.attrs[attribute].strip(), model.location)
            if name:
                declared[name] = written
    used: dict[tuple[str, str], Written] = {}
    for sites in host.find_all("sites"):
        for site in sites.find_all("site"):
            site_name = site.attrs.get("name", "").strip()
            for application in site.find_all("application"):
                pool = application.attrs.get("applicationPool", "").strip()
                if not pool:
                    continue
                if pool not in declared:
                    problems.add(
                        application.location,
                        "applicationPool",
                        f"no application pool named {pool!r}{did_you_mean(pool, list(declared))}",
                    )
                    continue
                path = "/" + application.attrs.get("path", "/").strip().strip("/")
                used[(site_name, path)] = declared[pool]
    return used


def _engines(element: Element, origin: str, problems: Problems) -> list[EngineConfig]:
    declared: dict[str, EngineConfig] = {}
    seen: dict[str, Location] = {}
    for child in element.children:
        name = child.attrs.get("name", "").strip()
        if child.tag == "clear":
            declared.clear()
            seen.clear()
            continue
        if child.tag == "remove":
            declared.pop(name, None)
            seen.pop(name, None)
            continue
        if child.tag != "add":
            problems.add(child.location, origin, f"unknown element <{child.tag}>")
            continue
        if not name:
            problems.add(child.location, "name", f"an engine in <{origin}> has no name")
            continue
        if name in seen:
            problems.add(
                child.location,
                "name",
                f"duplicate engine {name!r} in <{origin}> (first at line {seen[name].line})",
            )
            continue
        seen[name] = child.location
        written: Written = {}
        for attribute, value in child.attrs.items():
            if attribute == "name":
                continue
            setting = ENGINE_BY_ATTRIBUTE.get(attribute)
            if setting is None:
                hint = did_you_mean(attribute, ENGINE_BY_ATTRIBUTE)
                problems.add(
                    child.location, attribute, f"unknown engine attribute on engine {name!r}{hint}"
                )
                continue
            written[setting.name] = (value, child.location)
        env: tuple[EnvVar, ...] | None = None
        for inner in child.children:
            if inner.tag != "environmentVariables":
                problems.add(inner.location, name, f"unknown element <{inner.tag}> in engine")
                continue
            merged: dict[str, tuple[str, Location]] = {}
            apply_env_ops(merged, tuple(env_ops(inner, problems)))
            env = (env or ()) + tuple(
                EnvVar(var, value, where) for var, (value, where) in merged.items()
            )
        engine = declare_engine(
            name,
            written,
            env,
            origin=origin,
            location=child.location,
            problems=problems,
        )
        if engine is not None:
            declared[name] = engine
    return list(declared.values())


def _switchboard(element: Element, problems: Problems) -> list[SwitchEntry]:
    entries: list[SwitchEntry] = []
    for child in element.children:
        if child.tag == "clear":
            entries.clear()
            continue
        if child.tag != "add":
            problems.add(child.location, "switchboard", f"unknown element <{child.tag}>")
            continue
        name = child.attrs.get("name", "").strip()
        if not name:
            problems.add(child.location, "switchboard", "<add> needs a name")
            continue
        try:
            enabled = convert.to_bool(child.attrs.get("value", ""))
        except ValueError as error:
            problems.add(child.location, "switchboard", f"{name}: {error}")
            continue
        entries.append(SwitchEntry(name, enabled, child.location))
    return entries
