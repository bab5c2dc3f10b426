"""A Helicon Zoo 4 `.zoo` file (YAML), read into the same located operations as a web.config.

Zoo 4's Manager writes a `.zoo` into an application's folder: one top-level key `application:`
holding the product record it installed, plus

- `parameters:` the install parameters; `selected-engine` is the engine the application runs on;
- `engines:` a list of `{engine, path, environment_variables}`: one environment preset per
  engine the application supports (switching engine switches the preset);
- `locations:` a list of `{path, engine}`: `path` is a URL pattern (`*`, `*.php`) or a
  sub-folder (`static`, `public/`); `engine` is `selected-engine`, an engine id, or `none`
  (served as static files). Without `locations`, Zoo used `[{path: "*", engine: selected}]`.

They become one `<heliconZoo>` application (the selected engine's preset as its variables) and
handler operations: at the folder for the patterns, a `<clear/>` (engine `none`) or a `*`
handler at each sub-folder location. The file is YAML parsed with PyYAML's safe loader into
its node tree (`yaml.compose`), never constructed into objects, and walked node by node so that
every error names the file, the line and the setting. The product record's descriptive keys are
accepted; Zoo's installer code (`install_command`...) is never run (a notice says so); any
other key is named as not in effect. What `corral.config.load` does with the result (and when a
web.config wins over a `.zoo`) is documented in docs/webconfig-mapping.md (".zoo files").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from corral.config import builtin_engines
from corral.config.errors import Problems
from corral.config.model import Location, NotInEffect
from corral.config.webconfig import EnvOp, HandlerOp, Section, ZooAppOp

#: The name of the application a `.zoo` declares when its record has no `application` id.
DEFAULT_APP = "zoo"
#: What a location's `engine` may say besides an engine id.
SELECTED = "selected-engine"
NONE = "none"
#: The product record's descriptive keys (Zoo's feed and Manager): accepted, not used.
RECORD_KEYS = frozenset(
    {
        "application",
        "name",
        "title",
        "version",
        "installed_version",
        "description",
        "link",
        "author",
        "eula",
        "icon",
        "tags",
        "os",
        "files",
        "dependencies",
        "database_type",
        "start_page",
        "has_upgrade",
        "is_upgradable",
        "lang",
        "webserver",
        "bitness",
    }
)
#: Python source Zoo's installer ran: never run here.
INSTALLER_KEYS = frozenset(
    {"install_command", "upgrade_command", "uninstall_command", "find_installed_command"}
)
#: Zoo 4's install parameters (how the Manager created the site): accepted, not used.
PARAMETER_KEYS = frozenset(
    {
        SELECTED,
        "create-site",
        "site-name",
        "site-binding",
        "create-app",
        "app-name",
        "create-app-pool",
        "app-pool-name",
        "app-pool-dot-net",
        "physical-path",
        "install_dir",
        "db-engine",
        "db-host",
        "db-port",
        "db-username",
        "db-password",
        "db-name",
    }
)
#: An application id: the application's name in logs, status and the control commands.
_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: A file suffix written for its pattern (`.php` for `*.php`), as engine filters are.
_SUFFIX = re.compile(r"\.[A-Za-z0-9_]+")
_ENGINE_KEYS = frozenset({"engine", "path", "environment_variables"})
_LOCATION_KEYS = frozenset({"path", "engine"})


@dataclass(frozen=True, slots=True)
class _Route:
    """One location: its path as written, where, and the node naming its engine (None: the
    location is served as static files, engine none)."""

    path: str
    node: Node
    engine_node: Node | None


@dataclass(frozen=True, slots=True)
class ZooFile:
    """One `.zoo` file read: its sections (folders relative to the file's own), or none for an
    empty file (Zoo 4: the parent's application is disabled in that folder)."""

    file: str
    #: The application it declares ("" for an empty file).
    app_name: str
    sections: tuple[Section, ...]
    #: Keys accepted but not acted on (unknown ones included).
    ignored: tuple[NotInEffect, ...]
    notices: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.app_name


class _Reader:
    def __init__(self, file: str, problems: Problems) -> None:
        self.file = file
        self.problems = problems
        self.ignored: list[NotInEffect] = []
        self.notices: list[str] = []

    def at(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1)

    def error(self, node: Node, setting: str, message: str) -> None:
        self.problems.add(self.at(node), setting, message)

    def mapping(self, node: Node, setting: str) -> dict[str, tuple[ScalarNode, Node]] | None:
        """A mapping's entries by key (scalar keys only; a duplicate key is an error)."""
        if not isinstance(node, MappingNode):
            self.error(node, setting, f"must be a mapping, not {_shape(node)}")
            return None
        entries: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or not _is_text(key):
                self.error(key, setting, f"keys must be names, not {_shape(key)}")
                continue
            if key.value in entries:
                first = entries[key.value][0].start_mark.line + 1
                self.error(key, f"{setting}.{key.value}", f"duplicate key (first at line {first})")
                continue
            entries[key.value] = (key, value)
        return entries

    def text(self, node: Node, setting: str) -> str | None:
        """A scalar's text as written (numbers and booleans too); None (an error) otherwise."""
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(node, setting, f"must be a value, not {_shape(node)}")
            return None
        return str(node.value)

    def sequence(self, node: Node, setting: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.error(node, setting, f"must be a list, not {_shape(node)}")
            return []
        return list(node.value)


def read_zoofile(data: bytes, file: str, problems: Problems) -> ZooFile | None:
    """Parse one `.zoo`; syntax and shape errors go to `problems` (None when it cannot be
    read at all)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problems.add(Location(file, 1), "file", f"not UTF-8 text ({error.reason})")
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(part for part in (error.context, error.problem) if part)
        problems.add(Location(file, line), "YAML", what or "not valid YAML")
        return None
    except yaml.YAMLError as error:
        problems.add(Location(file, 1), "YAML", str(error))
        return None
    if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
        return ZooFile(file, "", (), (), ())
    reader = _Reader(file, problems)
    top = reader.mapping(root, ".zoo")
    if top is None:
        return None
    for key, (key_node, _) in top.items():
        if key != "application":
            reader.ignored.append(
                NotInEffect(f".zoo key {key!r} (unknown)", "", reader.at(key_node))
            )
    if "application" not in top:
        reader.error(root, "application", "a .zoo file holds one application: key missing")
        return None
    result = _application(reader, top["application"][1])
    if result is None:
        return None
    name, sections = result
    return ZooFile(file, name, sections, tuple(reader.ignored), tuple(reader.notices))


def _application(reader: _Reader, node: Node) -> tuple[str, tuple[Section, ...]] | None:
    record = reader.mapping(node, "application")
    if record is None:
        return None
    for key, (key_node, _) in record.items():
        where = reader.at(key_node)
        if key in INSTALLER_KEYS:
            reader.notices.append(
                f"{where}: application.{key} is Zoo's installer code: Corral never runs it"
            )
        elif key == "state":
            value = record[key][1]
            shown = str(value.value) if isinstance(value, ScalarNode) else ""
            reader.ignored.append(NotInEffect("application.state (Zoo Manager's)", shown, where))
        elif key not in RECORD_KEYS | {"parameters", "engines", "locations"}:
            reader.ignored.append(NotInEffect(f"application.{key} (unknown key)", "", where))
    name = DEFAULT_APP
    if "application" in record:
        id_node = record["application"][1]
        written = reader.text(id_node, "application.application")
        if written is not None and written.strip():
            name = written.strip()
            if not _APP_ID.fullmatch(name):
                reader.error(
                    id_node,
                    "application.application",
                    f"{name!r} is no application id (letters, digits, . _ -)",
                )
                return None
    if "parameters" not in record:
        reader.error(node, "application.parameters", "missing (it names the selected-engine)")
        return None
    selected = _parameters(reader, record["parameters"][1])
    if selected is None:
        return None
    engine, engine_node = selected
    presets = _engines(reader, record["engines"][1]) if "engines" in record else {}
    preset = presets.get(engine.lower())
    if preset is None:
        known = ", ".join(sorted(presets)) or "none"
        reader.notices.append(
            f"{reader.at(engine_node)}: no environment preset for the selected engine "
            f"{engine!r} in application.engines (presets: {known}): the application gets no "
            "variables of its own"
        )
    env, filter_path = preset if preset is not None else ((), "")
    worker = next((op for op in env if op.name.upper() == "HTTP_WORKER"), None)
    if worker is not None and builtin_engines.is_python_alias(engine):
        reader.notices.append(
            f"{worker.location}: HTTP_WORKER ({worker.value}) is not run: engine {engine!r} "
            "runs Corral's Python worker, which serves the WSGI application named by "
            "WSGI_HANDLER or WSGI_APP (else wsgi.py)"
        )
    if "locations" in record:
        routes = _locations(reader, record["locations"][1], engine, engine_node)
    else:
        routes = [_Route("*", engine_node, engine_node)]
    app = ZooAppOp("application", name, env, reader.at(node))
    sections = _sections(reader, name, engine, app, routes, filter_path)
    return name, tuple(sections)


def _parameters(reader: _Reader, node: Node) -> tuple[str, Node] | None:
    params = reader.mapping(node, "application.parameters")
    if params is None:
        return None
    for key, (key_node, value) in params.items():
        if key not in PARAMETER_KEYS:
            reader.ignored.append(
                NotInEffect(f"application.parameters.{key} (unknown key)", "", reader.at(key_node))
            )
        elif key == "db-password" and isinstance(value, ScalarNode) and value.value:
            reader.notices.append(
                f"{reader.at(key_node)}: application.parameters.db-password is a password kept "
                "in the web root: Corral never serves .zoo files, but move it out of the file"
            )
    if SELECTED not in params:
        reader.error(node, f"application.parameters.{SELECTED}", "missing")
        return None
    value = params[SELECTED][1]
    engine = reader.text(value, f"application.parameters.{SELECTED}")
    if engine is None:
        return None
    if not engine.strip() or engine.strip().lower() in (NONE, SELECTED):
        reader.error(value, f"application.parameters.{SELECTED}", f"{engine!r} names no engine")
        return None
    return engine.strip(), value


def _engines(reader: _Reader, node: Node) -> dict[str, tuple[tuple[EnvOp, ...], str]]:
    """The presets by lower-case engine id: (variables, the engine's URL filter)."""
    presets: dict[str, tuple[tuple[EnvOp, ...], str]] = {}
    lines: dict[str, int] = {}
    for item in reader.sequence(node, "application.engines"):
        entry = reader.mapping(item, "application.engines")
        if entry is None:
            continue
        for key, (key_node, _) in entry.items():
            if key not in _ENGINE_KEYS:
                reader.error(
                    key_node,
                    f"application.engines.{key}",
                    f"unknown key (an engine preset has {', '.join(sorted(_ENGINE_KEYS))})",
                )
        if "engine" not in entry:
            reader.error(item, "application.engines.engine", "missing: which engine is this for?")
            continue
        engine = reader.text(entry["engine"][1], "application.engines.engine")
        if engine is None:
            continue
        key = engine.strip().lower()
        if key in lines:
            reader.error(
                entry["engine"][1],
                "application.engines.engine",
                f"a second preset for {engine!r} (first at line {lines[key]})",
            )
            continue
        lines[key] = entry["engine"][1].start_mark.line + 1
        filter_path = ""
        if "path" in entry:
            filter_path = (reader.text(entry["path"][1], "application.engines.path") or "").strip()
        env: list[EnvOp] = []
        if "environment_variables" in entry:
            variables = reader.mapping(
                entry["environment_variables"][1], "application.engines.environment_variables"
            )
            for name, (name_node, value) in (variables or {}).items():
                written = reader.text(value, name)
                if not name.strip():
                    reader.error(name_node, "environment_variables", "a variable needs a name")
                elif written is not None:
                    env.append(EnvOp("add", name.strip(), written, reader.at(name_node)))
        presets[key] = (tuple(env), filter_path)
    return presets


def _locations(reader: _Reader, node: Node, selected: str, selected_node: Node) -> list[_Route]:
    """Each location in order; a handler names the line of the engine it runs (the
    selected-engine parameter when the location says selected-engine)."""
    routes: list[_Route] = []
    for item in reader.sequence(node, "application.locations"):
        entry = reader.mapping(item, "application.locations")
        if entry is None:
            continue
        for key, (key_node, _) in entry.items():
            if key not in _LOCATION_KEYS:
                reader.error(
                    key_node,
                    f"application.locations.{key}",
                    "unknown key (a location has path and engine)",
                )
        missing = sorted(_LOCATION_KEYS - set(entry))
        if missing:
            reader.error(item, f"application.locations.{missing[0]}", "missing")
            continue
        path_node, engine_node = entry["path"][1], entry["engine"][1]
        path = reader.text(path_node, "application.locations.path")
        engine = reader.text(engine_node, "application.locations.engine")
        if path is None or engine is None:
            continue
        engine = engine.strip().lower()
        if engine == NONE:
            routes.append(_Route(path, path_node, None))
        elif engine == SELECTED:
            routes.append(_Route(path, path_node, selected_node))
        elif engine == selected.lower():
            routes.append(_Route(path, path_node, engine_node))
        else:
            reader.error(
                engine_node,
                "application.locations.engine",
                f"{engine_node.value!r} is not the selected engine {selected!r}: a .zoo "
                f"application runs on one engine (write {SELECTED} or none)",
            )
    return routes


def _sections(
    reader: _Reader,
    name: str,
    engine: str,
    app: ZooAppOp,
    routes: list[_Route],
    filter_path: str,
) -> list[Section]:
    """The file's folder: the application and its patterns' handlers, in order (after a
    `<clear/>`); each sub-folder location: a `<clear/>` (engine none) or a `*` handler."""
    root_ops: list[HandlerOp] = [HandlerOp("clear", "", app.location)]
    folders: dict[str, Section] = {}
    for route in routes:
        raw = route.path.strip().replace("\\", "/")
        where = reader.at(route.node)
        if raw.startswith("/") and raw.strip("/") == "":
            raw = "*"
        if raw == "*" or raw.startswith("*.") or _SUFFIX.fullmatch(raw):
            pattern = _pattern(raw, filter_path)
            if "/" in pattern or "?" in pattern or pattern.count("*") > 1:
                reader.error(
                    route.node, "application.locations.path", f"{route.path!r} is not a URL pattern"
                )
                continue
            if route.engine_node is None:
                reader.error(
                    route.node,
                    "application.locations.engine",
                    f"engine none is for folders (static, public/), not the pattern {route.path!r}",
                )
                continue
            # "<name>#<n>": one application, several handler paths (as name#x64 in web.config).
            number = len(root_ops)
            handler_where = reader.at(route.engine_node)
            root_ops.append(HandlerOp("add", f"{name}#{number}", handler_where, pattern, engine))
            continue
        parts = [part for part in raw.strip("/").split("/") if part and part != "."]
        if not parts or any(part == ".." or "*" in part or "?" in part for part in parts):
            reader.error(
                route.node,
                "application.locations.path",
                f"{route.path!r} is neither a folder nor a pattern",
            )
            continue
        folder = "/".join(parts)
        if folder in folders:
            reader.error(
                route.node, "application.locations.path", f"a second location for {route.path!r}"
            )
            continue
        ops: tuple[HandlerOp, ...] = (HandlerOp("clear", "", where),)
        if route.engine_node is not None:
            handler = HandlerOp(
                "add", f"{name}#{folder}", reader.at(route.engine_node), "*", engine
            )
            ops += (handler,)
        folders[folder] = Section(folder, ops, (), where)
    return [Section("", tuple(root_ops), (app,), app.location), *folders.values()]


def _pattern(location: str, filter_path: str) -> str:
    """A location's handler path: `*` narrowed by the engine's URL filter (`.php` -> `*.php`),
    a `.php` written for `*.php`."""
    if location == "*" and filter_path and filter_path != "*":
        location = filter_path
    if location.startswith("."):
        location = "*" + location
    return location


def _is_text(node: ScalarNode) -> bool:
    return node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int") or not node.tag


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
        return "empty"
    return f"{node.value!r}" if isinstance(node, ScalarNode) else "this"
