"""A site folder's `web.config`, read as Helicon Zoo and IIS did, into raw located operations.

Read: `<system.webServer><handlers>` (`add`, `remove`, `clear`) and
`<system.webServer><heliconZoo>` (`<application name>` with `<environmentVariables>` `add`,
`remove`, `clear`; `<clear/>` and `<remove name>` of applications) and
`<system.webServer><defaultDocument>` (`enabled`, `<files>` `add`/`remove`/`clear`) and
`<system.webServer><rewrite><rules>` (`corral.config.rewriteread`), also inside
`<location path="sub/folder">`. Handlers whose `modules` is not a HeliconZoo module are IIS's own
(StaticFile, aspnet...) and are listed as not in effect, like every other `system.webServer`
section Corral does not implement (`staticContent`, `httpErrors`...). `load` applies the
operations folder by folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.config import rewriteread
from corral.config.errors import Problems
from corral.config.model import Location, NotInEffect
from corral.config.rewrite import RuleOp
from corral.config.xmlfile import Element, parse_xml


@dataclass(frozen=True, slots=True)
class HandlerOp:
    action: str  # "add" | "remove" | "clear"
    name: str
    location: Location
    path: str = ""
    script_processor: str = ""
    pre_condition: str = ""


@dataclass(frozen=True, slots=True)
class EnvOp:
    action: str  # "add" | "remove" | "clear"
    name: str
    value: str
    location: Location


@dataclass(frozen=True, slots=True)
class ZooAppOp:
    action: str  # "application" | "remove" | "clear"
    name: str
    env: tuple[EnvOp, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class DocumentOp:
    """One change to the default documents: `<add value>`, `<remove value>`, `<clear/>`, or
    `enabled="false"` ("disable") on `<defaultDocument>`."""

    action: str  # "add" | "remove" | "clear" | "disable"
    value: str
    location: Location


@dataclass(frozen=True, slots=True)
class Section:
    """The `<system.webServer>` content for one folder (`""`: the web.config's own folder)."""

    folder: str
    #: None when the section has no `<handlers>` (the parent's stay in effect).
    handlers: tuple[HandlerOp, ...] | None
    zoo: tuple[ZooAppOp, ...]
    location: Location
    #: `<defaultDocument>` changes; None when the section has none.
    documents: tuple[DocumentOp, ...] | None = None
    #: `<rewrite><rules>` changes (`corral.config.rewriteread`); None when the section has none.
    rewrite: tuple[RuleOp, ...] | None = None


@dataclass(frozen=True, slots=True)
class WebConfig:
    file: str
    sections: tuple[Section, ...]
    ignored: tuple[NotInEffect, ...]


def read_webconfig(data: bytes, file: str, problems: Problems) -> WebConfig | None:
    """Parse one web.config; syntax and shape errors go to `problems` (None on a syntax error)."""
    root = parse_xml(data, file, problems)
    if root is None:
        return None
    if root.tag != "configuration":
        problems.add(root.location, "configuration", f"the root element is <{root.tag}>")
        return WebConfig(file, (), ())
    sections: list[Section] = []
    ignored: list[NotInEffect] = []
    for child in root.children:
        if child.tag == "system.webServer":
            sections.append(_section(child, "", problems, ignored))
        elif child.tag == "location":
            folder = _location_folder(child, problems)
            for inner in child.find_all("system.webServer"):
                if folder is not None:
                    sections.append(_section(inner, folder, problems, ignored))
    return WebConfig(file, tuple(sections), tuple(ignored))


def _location_folder(element: Element, problems: Problems) -> str | None:
    raw = element.attrs.get("path", "").replace("\\", "/").strip("/")
    parts = [part for part in raw.split("/") if part and part != "."]
    if any(part == ".." for part in parts):
        problems.add(element.location, "location", f"path {raw!r} leaves the folder")
        return None
    return "/".join(parts)


def _section(
    element: Element, folder: str, problems: Problems, ignored: list[NotInEffect]
) -> Section:
    handlers: tuple[HandlerOp, ...] | None = None
    documents: tuple[DocumentOp, ...] | None = None
    rewrite: tuple[RuleOp, ...] | None = None
    zoo: list[ZooAppOp] = []
    for child in element.children:
        if child.tag == "handlers":
            handlers = (handlers or ()) + _handlers(child, problems, ignored)
        elif child.tag == "heliconZoo":
            zoo.extend(_zoo(child, problems))
        elif child.tag == "defaultDocument":
            documents = (documents or ()) + _documents(child, problems)
        elif child.tag == "rewrite":
            rewrite = (rewrite or ()) + rewriteread.read_xml(child, folder, problems)
        else:
            ignored.append(NotInEffect(f"<system.webServer><{child.tag}>", "", child.location))
    return Section(folder, handlers, tuple(zoo), element.location, documents, rewrite)


def _documents(element: Element, problems: Problems) -> tuple[DocumentOp, ...]:
    """IIS's `<defaultDocument enabled="..."><files><clear/><add value="..."/>...</files>`."""
    ops: list[DocumentOp] = []
    enabled = element.attrs.get("enabled", "true").strip().lower()
    if enabled not in ("true", "false"):
        problems.add(
            element.location, "defaultDocument", f"enabled must be true or false, not {enabled!r}"
        )
    elif enabled == "false":
        ops.append(DocumentOp("disable", "", element.location))
    for files in element.children:
        if files.tag != "files":
            problems.add(files.location, "defaultDocument", f"unknown element <{files.tag}>")
            continue
        for child in files.children:
            value = child.attrs.get("value", "").strip()
            if child.tag == "clear":
                ops.append(DocumentOp("clear", "", child.location))
            elif child.tag in ("add", "remove"):
                if not value or "/" in value or "\\" in value:
                    problems.add(
                        child.location,
                        "defaultDocument",
                        f"<{child.tag}> needs a file name as value",
                    )
                    continue
                ops.append(DocumentOp(child.tag, value, child.location))
            else:
                problems.add(child.location, "defaultDocument", f"unknown element <{child.tag}>")
    return tuple(ops)


def _handlers(
    element: Element, problems: Problems, ignored: list[NotInEffect]
) -> tuple[HandlerOp, ...]:
    ops: list[HandlerOp] = []
    for child in element.children:
        name = child.attrs.get("name", "").strip()
        if child.tag == "clear":
            ops.append(HandlerOp("clear", "", child.location))
        elif child.tag == "remove":
            if not name:
                problems.add(child.location, "handlers", "<remove> needs a name")
                continue
            ops.append(HandlerOp("remove", name, child.location))
        elif child.tag == "add":
            if not name:
                problems.add(child.location, "handlers", "<add> needs a name")
                continue
            modules = child.attrs.get("modules", "")
            if not modules.lower().startswith("heliconzoo"):
                # IIS's own handler (StaticFile, a native FastCgiModule, ASP.NET...).
                ignored.append(
                    NotInEffect(f"handler {name}", modules or "(no modules)", child.location)
                )
                continue
            path = child.attrs.get("path", "").strip()
            processor = child.attrs.get("scriptProcessor", "").strip()
            if not path:
                problems.add(child.location, "path", f"handler {name!r} has no path")
                continue
            if not processor:
                problems.add(child.location, "scriptProcessor", f"handler {name!r} names no engine")
                continue
            ops.append(
                HandlerOp(
                    "add",
                    name,
                    child.location,
                    path,
                    processor,
                    child.attrs.get("preCondition", ""),
                )
            )
        else:
            problems.add(child.location, "handlers", f"unknown element <{child.tag}>")
    return tuple(ops)


def _zoo(element: Element, problems: Problems) -> list[ZooAppOp]:
    ops: list[ZooAppOp] = []
    seen: dict[str, Location] = {}
    for child in element.children:
        name = child.attrs.get("name", "").strip()
        if child.tag == "clear":
            seen.clear()
            ops.append(ZooAppOp("clear", "", (), child.location))
        elif child.tag == "remove":
            if not name:
                problems.add(child.location, "heliconZoo", "<remove> needs a name")
                continue
            seen.pop(name, None)
            ops.append(ZooAppOp("remove", name, (), child.location))
        elif child.tag == "application":
            if not name:
                problems.add(child.location, "application", "<application> needs a name")
                continue
            if name in seen:
                problems.add(
                    child.location,
                    "application",
                    f"duplicate application {name!r} (first at line {seen[name].line})",
                )
                continue
            seen[name] = child.location
            env: list[EnvOp] = []
            for inner in child.children:
                if inner.tag == "environmentVariables":
                    env.extend(env_ops(inner, problems))
                else:
                    problems.add(
                        inner.location,
                        "application",
                        f"unknown element <{inner.tag}> in application {name!r}",
                    )
            ops.append(ZooAppOp("application", name, tuple(env), child.location))
        else:
            problems.add(child.location, "heliconZoo", f"unknown element <{child.tag}>")
    return ops


def env_ops(element: Element, problems: Problems) -> list[EnvOp]:
    """`<environmentVariables>`: `add name value`, `remove name`, `clear`."""
    ops: list[EnvOp] = []
    seen: dict[str, Location] = {}
    for child in element.children:
        name = child.attrs.get("name", "").strip()
        if child.tag == "clear":
            seen.clear()
            ops.append(EnvOp("clear", "", "", child.location))
        elif child.tag in ("add", "remove"):
            if not name:
                problems.add(child.location, "environmentVariables", f"<{child.tag}> needs a name")
                continue
            if child.tag == "add" and "value" not in child.attrs:
                problems.add(child.location, name, "<add> needs a value")
                continue
            if child.tag == "remove":
                seen.pop(name, None)
            elif name in seen:
                problems.add(
                    child.location,
                    name,
                    f"duplicate variable (first set at line {seen[name].line})",
                )
                continue
            else:
                seen[name] = child.location
            ops.append(EnvOp(child.tag, name, child.attrs.get("value", ""), child.location))
        else:
            problems.add(child.location, "environmentVariables", f"unknown element <{child.tag}>")
    return ops


def apply_env_ops(env: dict[str, tuple[str, Location]], ops: tuple[EnvOp, ...]) -> None:
    """Apply `<environmentVariables>` operations, in order, to an ordered name -> value map."""
    for op in ops:
        if op.action == "clear":
            env.clear()
        elif op.action == "remove":
            env.pop(op.name, None)
        else:
            env.pop(op.name, None)
            env[op.name] = (op.value, op.location)
