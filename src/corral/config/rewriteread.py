"""URL Rewrite rules read from a web.config's `<rewrite>` or a corral.toml's `[[rewrite]]`.

Both spellings become the same `RuleOp`s (`corral.config.rewrite`); `scopes` applies them
folder by folder (a sub-folder inherits its parent's rules, `<clear/>` and `<remove>` work on
what it inherits) and reports the rules that can never match. Everything Corral does not
implement is an error naming its file and line: rewrite maps, outbound rules, server variables
set by a rule, `trackAllCaptures`, a Rewrite to another server (ARR), unknown attributes.

The TOML form (documented in docs/webconfig-mapping.md, "URL Rewrite"):

    [[rewrite]]
    name = "Laravel: everything else to the front controller"
    match = "^"                      # <match url>
    ignore_case = false              # default true
    negate = false                   # default false
    pattern_syntax = "ECMAScript"    # or "Wildcard", "ExactMatch"
    logical_grouping = "MatchAll"    # or "MatchAny"
    conditions = [
      { input = "{REQUEST_FILENAME}", match_type = "IsDirectory", negate = true },
      { input = "{REQUEST_FILENAME}", match_type = "IsFile", negate = true },
    ]
    action = { type = "Rewrite", url = "index.php" }
    stop_processing = true
    folder = ""                      # the sub-folder the rule belongs to (default: the root)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from corral.config.errors import Problems, did_you_mean
from corral.config.model import Location
from corral.config.rewrite import (
    ACTION_TYPES,
    MATCH_TYPES,
    REDIRECT_TYPES,
    SYNTAXES,
    Action,
    ActionType,
    Capture,
    Condition,
    MatchType,
    PatternError,
    RewriteRule,
    RewriteScope,
    RuleOp,
    Syntax,
    Template,
    compile_pattern,
    parse_template,
)
from corral.config.xmlfile import Element

SETTING = "rewrite"
#: A substitution that starts with a scheme: another server.
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

_RULE_ATTRS = ("name", "enabled", "stopProcessing", "patternSyntax")
_MATCH_ATTRS = ("url", "ignoreCase", "negate")
_CONDITIONS_ATTRS = ("logicalGrouping", "trackAllCaptures")
_ADD_ATTRS = ("input", "matchType", "pattern", "ignoreCase", "negate")
_ACTION_ATTRS = (
    "type",
    "url",
    "appendQueryString",
    "redirectType",
    "statusCode",
    "subStatusCode",
    "statusReason",
    "statusDescription",
    "logRewrittenUrl",
)


class _Refused(Exception):
    """One part of a rule is unusable: reported at `location`, the rule is dropped."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


# -- web.config -------------------------------------------------------------------------------


def read_xml(element: Element, folder: str, problems: Problems) -> tuple[RuleOp, ...]:
    """`<rewrite>` of a `<system.webServer>` for `folder`: its `<rules>` as operations."""
    ops: list[RuleOp] = []
    for child in element.children:
        if child.tag == "rules":
            ops += _xml_rules(child, folder, problems)
        else:
            what = {
                "rewriteMaps": "rewrite maps are not supported",
                "outboundRules": "outbound rules (rewriting responses) are not supported",
                "globalRules": "global rules belong to applicationHost.config, not a web.config",
            }.get(child.tag, "unknown element")
            problems.add(child.location, SETTING, f"<rewrite><{child.tag}>: {what}")
    return tuple(ops)


def _xml_rules(element: Element, folder: str, problems: Problems) -> list[RuleOp]:
    ops: list[RuleOp] = []
    for child in element.children:
        name = child.attrs.get("name", "").strip()
        if child.tag == "clear":
            ops.append(RuleOp("clear", "", child.location))
        elif child.tag == "remove":
            if not name:
                problems.add(child.location, SETTING, "<remove> needs the name of a rule")
                continue
            ops.append(RuleOp("remove", name, child.location))
        elif child.tag == "rule":
            try:
                rule = _xml_rule(child, folder)
            except _Refused as refused:
                problems.add(refused.location, SETTING, refused.message)
                continue
            if rule is not None:
                ops.append(RuleOp("add", rule.name, child.location, rule))
        else:
            problems.add(child.location, SETTING, f"<rules>: unknown element <{child.tag}>")
    return ops


def _attrs(element: Element, known: Iterable[str]) -> dict[str, str]:
    allowed = tuple(known)
    for name in element.attrs:
        if name not in allowed and not name.startswith("{"):  # (namespaced: xmlns...)
            raise _Refused(
                element.location,
                f"<{element.tag}>: unknown attribute {name!r}{did_you_mean(name, allowed)}",
            )
    return element.attrs


def _bool(value: str | bool | None, default: bool, where: Location, what: str) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise _Refused(where, f"{what} must be true or false, not {value!r}")


def _choice(
    value: str | None, choices: Iterable[str], default: str, where: Location, what: str
) -> str:
    if value is None:
        return default
    for choice in choices:
        if choice.lower() == value.strip().lower():
            return choice
    raise _Refused(where, f"{what} must be one of {', '.join(choices)}, not {value!r}")


def _xml_rule(element: Element, folder: str) -> RewriteRule | None:
    where = element.location
    attrs = _attrs(element, _RULE_ATTRS)
    name = attrs.get("name", "").strip()
    if not name:
        raise _Refused(where, "<rule> needs a name")
    if not _bool(attrs.get("enabled"), True, where, "enabled"):
        return None
    syntax = _syntax(attrs.get("patternSyntax"), where)
    match: Element | None = None
    conditions: Element | None = None
    action: Element | None = None
    for child in element.children:
        if child.tag == "match" and match is None:
            match = child
        elif child.tag == "conditions" and conditions is None:
            conditions = child
        elif child.tag == "action" and action is None:
            action = child
        elif child.tag == "serverVariables":
            raise _Refused(
                child.location,
                f"rule {name!r}: <serverVariables> (setting variables) is not supported",
            )
        else:
            raise _Refused(child.location, f"rule {name!r}: unexpected element <{child.tag}>")
    if match is None:
        raise _Refused(where, f"rule {name!r} has no <match url>")
    if action is None:
        raise _Refused(where, f"rule {name!r} has no <action>")
    match_attrs = _attrs(match, _MATCH_ATTRS)
    if "url" not in match_attrs:
        raise _Refused(match.location, f"rule {name!r}: <match> needs a url pattern")
    conds: list[tuple[Location, Mapping[str, str | bool]]] = []
    grouping: str | None = None
    if conditions is not None:
        cond_attrs = _attrs(conditions, _CONDITIONS_ATTRS)
        grouping = cond_attrs.get("logicalGrouping")
        if _bool(
            cond_attrs.get("trackAllCaptures"), False, conditions.location, "trackAllCaptures"
        ):
            raise _Refused(conditions.location, 'trackAllCaptures="true" is not supported')
        for add in conditions.children:
            if add.tag != "add":
                raise _Refused(
                    add.location, f"<conditions>: <{add.tag}> is not supported (only <add>)"
                )
            conds.append((add.location, _attrs(add, _ADD_ATTRS)))
    return _rule(
        name=name,
        folder=folder,
        where=where,
        syntax=syntax,
        url=match_attrs["url"],
        ignore_case=_bool(match_attrs.get("ignoreCase"), True, match.location, "ignoreCase"),
        negate=_bool(match_attrs.get("negate"), False, match.location, "negate"),
        match_where=match.location,
        conditions=conds,
        grouping=grouping,
        grouping_where=conditions.location if conditions is not None else where,
        action=_attrs(action, _ACTION_ATTRS),
        action_where=action.location,
        stop=_bool(attrs.get("stopProcessing"), False, where, "stopProcessing"),
    )


def _syntax(value: str | None, where: Location) -> Syntax:
    chosen = _choice(value, SYNTAXES, "ECMAScript", where, "patternSyntax")
    return next(syntax for syntax in SYNTAXES if syntax == chosen)


# -- the rule, from either spelling ------------------------------------------------------------


def _rule(
    *,
    name: str,
    folder: str,
    where: Location,
    syntax: Syntax,
    url: str,
    ignore_case: bool,
    negate: bool,
    match_where: Location,
    conditions: list[tuple[Location, Mapping[str, str | bool]]],
    grouping: str | None,
    grouping_where: Location,
    action: Mapping[str, Any],
    action_where: Location,
    stop: bool,
) -> RewriteRule:
    try:
        pattern = compile_pattern(url, syntax, ignore_case)
    except PatternError as error:
        raise _Refused(match_where, f"rule {name!r}: {error}") from None
    grouping = _choice(
        grouping, ("MatchAll", "MatchAny"), "MatchAll", grouping_where, "logicalGrouping"
    )
    built = [_condition(name, syntax, cond_where, cond) for cond_where, cond in conditions]
    built_action = _action(name, action, action_where)
    rule = RewriteRule(
        name=name,
        folder=folder,
        match=pattern,
        negate=negate,
        conditions=tuple(built),
        match_any=grouping == "MatchAny",
        action=built_action,
        stop_processing=stop,
        location=where,
    )
    _check_references(rule)
    return rule


def _template(text: str, where: Location, what: str) -> Template:
    try:
        return parse_template(text)
    except PatternError as error:
        raise _Refused(where, f"{what}: {error}") from None


def _condition(
    rule: str, syntax: Syntax, where: Location, attrs: Mapping[str, str | bool]
) -> Condition:
    text = attrs.get("input")
    if not isinstance(text, str) or not text:
        raise _Refused(where, f"rule {rule!r}: a condition needs an input")
    template = _template(text, where, f"rule {rule!r}: condition input")
    raw_type = attrs.get("matchType")
    match_type_text = _choice(
        raw_type if isinstance(raw_type, str) else None, MATCH_TYPES, "Pattern", where, "matchType"
    )
    match_type: MatchType = next(m for m in MATCH_TYPES if m == match_type_text)
    ignore_case = _bool(attrs.get("ignoreCase"), True, where, "ignoreCase")
    negate = _bool(attrs.get("negate"), False, where, "negate")
    pattern = None
    raw_pattern = attrs.get("pattern")
    if match_type == "Pattern":
        if not isinstance(raw_pattern, str):
            raise _Refused(where, f"rule {rule!r}: a Pattern condition needs a pattern")
        try:
            pattern = compile_pattern(raw_pattern, syntax, ignore_case)
        except PatternError as error:
            raise _Refused(where, f"rule {rule!r}: {error}") from None
    return Condition(template, match_type, pattern, negate, where)


def _action(rule: str, attrs: Mapping[str, Any], where: Location) -> Action:
    raw_type = attrs.get("type")
    kind_text = _choice(
        raw_type if isinstance(raw_type, str) else None, ACTION_TYPES, "None", where, "action type"
    )
    kind: ActionType = next(k for k in ACTION_TYPES if k == kind_text)
    append = _bool(attrs.get("appendQueryString"), True, where, "appendQueryString")
    if kind in ("Rewrite", "Redirect"):
        url = attrs.get("url")
        if not isinstance(url, str) or not url.strip():
            raise _Refused(where, f"rule {rule!r}: a {kind} action needs a url")
        template = _template(url.strip(), where, f"rule {rule!r}: action url")
        first = template.pieces[0] if template.pieces else ""
        if kind == "Rewrite" and isinstance(first, str) and _ABSOLUTE.match(first):
            raise _Refused(
                where,
                f"rule {rule!r}: a Rewrite to another server ({url}) needs IIS's Application "
                "Request Routing (a reverse proxy): not supported",
            )
        status = 0
        if kind == "Redirect":
            redirect = str(attrs.get("redirectType", "Permanent")).strip().lower()
            if redirect not in REDIRECT_TYPES:
                raise _Refused(
                    where,
                    f"rule {rule!r}: redirectType must be Permanent, Found, SeeOther, Temporary "
                    f"or one of 301, 302, 303, 307, 308, not {attrs.get('redirectType')!r}",
                )
            status = REDIRECT_TYPES[redirect]
        return Action(kind, template, append, status)
    if kind == "CustomResponse":
        code = attrs.get("statusCode")
        try:
            status = int(str(code))
        except ValueError:
            status = 0
        if not 200 <= status <= 599:
            raise _Refused(where, f"rule {rule!r}: statusCode must be 200..599, not {code!r}")
        reason = str(attrs.get("statusReason", ""))
        if any(not (" " <= char <= "~") for char in reason):
            raise _Refused(where, f"rule {rule!r}: statusReason must be printable ASCII")
        description = _template(
            str(attrs.get("statusDescription", "")), where, f"rule {rule!r}: statusDescription"
        )
        return Action(kind, None, append, status, reason, description)
    return Action(kind, None, append)


def _check_references(rule: RewriteRule) -> None:
    """`{R:n}` beyond the pattern's groups, `{C:n}` without conditions: never what was meant."""
    templates: list[tuple[Template, Location]] = [(c.input, c.location) for c in rule.conditions]
    if rule.action.url is not None:
        templates.append((rule.action.url, rule.location))
    if rule.action.description is not None:
        templates.append((rule.action.description, rule.location))
    groups = rule.match.groups if rule.match.syntax != "ExactMatch" else 0
    has_patterns = any(c.pattern is not None for c in rule.conditions)
    for template, where in templates:
        for piece in template.uses(Capture):
            assert isinstance(piece, Capture)
            if piece.rule and piece.index > groups:
                raise _Refused(
                    where,
                    f"rule {rule.name!r}: {{R:{piece.index}}} but the pattern "
                    f"{rule.match.text!r} has {groups} group(s)",
                )
            if not piece.rule and not has_patterns:
                raise _Refused(
                    where,
                    f"rule {rule.name!r}: {{C:{piece.index}}} but no condition has a pattern",
                )


# -- corral.toml ------------------------------------------------------------------------------

_TOML_KEYS = (
    "name",
    "match",
    "ignore_case",
    "negate",
    "pattern_syntax",
    "logical_grouping",
    "conditions",
    "action",
    "stop_processing",
    "enabled",
    "folder",
)
_TOML_CONDITION = {
    "input": "input",
    "match_type": "matchType",
    "pattern": "pattern",
    "ignore_case": "ignoreCase",
    "negate": "negate",
}
_TOML_ACTION = {
    "type": "type",
    "url": "url",
    "append_query_string": "appendQueryString",
    "redirect_type": "redirectType",
    "status_code": "statusCode",
    "status_reason": "statusReason",
    "status_description": "statusDescription",
}


def read_toml(
    value: object, at: Callable[..., Location], problems: Problems
) -> dict[str, list[RuleOp]]:
    """`[[rewrite]]` (a list of tables): rules by folder. `at(*key_path)` locates a key."""
    by_folder: dict[str, list[RuleOp]] = {}
    if not isinstance(value, list):
        problems.add(at("rewrite"), SETTING, "[[rewrite]] is a list of rules (an array of tables)")
        return by_folder
    names: dict[tuple[str, str], Location] = {}
    for index, table in enumerate(value):
        where = at("rewrite", index)
        if not isinstance(table, dict):
            problems.add(where, SETTING, "each [[rewrite]] entry is a table")
            continue
        try:
            rule = _toml_rule(table, index, at)
        except _Refused as refused:
            problems.add(refused.location, SETTING, refused.message)
            continue
        if rule is None:
            continue
        key = (rule.folder, rule.name.lower())
        if key in names:
            problems.add(
                where,
                SETTING,
                f"duplicate rule name {rule.name!r} (first at line {names[key].line})",
            )
            continue
        names[key] = where
        by_folder.setdefault(rule.folder, []).append(RuleOp("add", rule.name, where, rule))
    return by_folder


def _toml_rule(
    table: dict[str, Any], index: int, at: Callable[..., Location]
) -> RewriteRule | None:
    where = at("rewrite", index)
    for key in table:
        if key not in _TOML_KEYS:
            raise _Refused(
                at("rewrite", index, key),
                f"unknown rewrite rule key {key!r}{did_you_mean(key, _TOML_KEYS)}",
            )

    def text(key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise _Refused(at("rewrite", index, key), f"{key} must be a string")
        return value

    def flag(key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise _Refused(at("rewrite", index, key), f"{key} must be true or false")
        return value

    name = (text("name") or "").strip()
    if not name:
        raise _Refused(where, "a rewrite rule needs a name")
    if not flag("enabled", True):
        return None
    url = text("match")
    if url is None:
        raise _Refused(where, f"rule {name!r} needs match (the URL pattern)")
    folder_text = text("folder", "") or ""
    folder = folder_text.replace("\\", "/").strip("/")
    if any(part == ".." for part in folder.split("/")):
        raise _Refused(
            at("rewrite", index, "folder"), "a rule's folder cannot leave the application"
        )
    syntax = _syntax(text("pattern_syntax"), at("rewrite", index, "pattern_syntax"))
    conditions: list[tuple[Location, Mapping[str, str | bool]]] = []
    raw_conditions = table.get("conditions", [])
    cond_where = at("rewrite", index, "conditions")
    if not isinstance(raw_conditions, list):
        raise _Refused(cond_where, "conditions is a list of tables")
    for item in raw_conditions:
        conditions.append((cond_where, _renamed(item, _TOML_CONDITION, cond_where, "condition")))
    action_where = at("rewrite", index, "action")
    raw_action = table.get("action")
    if raw_action is None:
        raise _Refused(where, f"rule {name!r} has no action")
    action = _renamed(raw_action, _TOML_ACTION, action_where, "action")
    return _rule(
        name=name,
        folder=folder,
        where=where,
        syntax=syntax,
        url=url,
        ignore_case=flag("ignore_case", True),
        negate=flag("negate", False),
        match_where=at("rewrite", index, "match"),
        conditions=conditions,
        grouping=text("logical_grouping"),
        grouping_where=at("rewrite", index, "logical_grouping"),
        action=action,
        action_where=action_where,
        stop=flag("stop_processing", False),
    )


def _renamed(
    value: object, names: Mapping[str, str], where: Location, what: str
) -> dict[str, str | bool]:
    """A TOML inline table with its keys in IIS's spelling (values as strings or booleans)."""
    if not isinstance(value, dict):
        raise _Refused(where, f"a {what} is a table ({{ ... }})")
    out: dict[str, str | bool] = {}
    for key, item in value.items():
        iis = names.get(key)
        if iis is None:
            raise _Refused(where, f"unknown {what} key {key!r}{did_you_mean(key, names)}")
        if isinstance(item, bool | str):
            out[iis] = item
        elif isinstance(item, int):
            out[iis] = str(item)
        else:
            raise _Refused(where, f"{what} key {key!r} must be a string, a number or a boolean")
    return out


# -- folders, inheritance, and rules that can never match -------------------------------------


def scopes(
    ops_by_folder: Mapping[str, Iterable[RuleOp]], problems: Problems, notices: list[str]
) -> tuple[RewriteScope, ...]:
    """The rules in effect for each folder with rule operations (a folder's rules come after
    its parent's), in folder order, or none at all when no folder has a rule; errors for
    duplicate names and for rules that can never match, notices for patterns that match no
    ordinary URL."""
    effective: dict[str, list[RewriteRule]] = {}
    for folder in sorted(ops_by_folder, key=lambda f: (f.count("/") + bool(f), f)):
        current = list(_parent(folder, effective))
        own: dict[str, Location] = {}
        for op in ops_by_folder[folder]:
            if op.action == "clear":
                current = []
                own.clear()
            elif op.action == "remove":
                current = [r for r in current if r.name.lower() != op.name.lower()]
                own.pop(op.name.lower(), None)
            else:
                assert op.rule is not None
                clash = next((r for r in current if r.name.lower() == op.name.lower()), None)
                if clash is not None:
                    problems.add(
                        op.location,
                        SETTING,
                        f"duplicate rule name {op.name!r} (already at {clash.location}; "
                        "<remove> it first)",
                    )
                    continue
                current.append(op.rule)
                own[op.name.lower()] = op.location
        effective[folder] = current
    for folder, rules in effective.items():
        _check_reachable(folder, rules, problems)
        for rule in rules:
            if (
                rule.folder == folder
                and rule.match.syntax == "ECMAScript"
                and not rule.negate
                and rule.match.text.startswith(("^/", "^\\/"))
            ):
                notices.append(
                    f"{rule.location}: rule {rule.name!r}: its pattern "
                    f"{rule.match.text!r} starts with a slash, but the URL a rule sees has "
                    "none (IIS strips it): it matches only URLs that start with //"
                )
    if not any(effective.values()):
        return ()
    # (A folder whose rules are all cleared keeps its empty scope: its parent's do not apply.)
    return tuple(RewriteScope(folder, tuple(rules)) for folder, rules in effective.items())


def _parent(folder: str, effective: Mapping[str, list[RewriteRule]]) -> list[RewriteRule]:
    while folder:
        folder = folder.rpartition("/")[0]
        if folder in effective:
            return effective[folder]
    return effective.get("", [])


def _check_reachable(folder: str, rules: list[RewriteRule], problems: Problems) -> None:
    """A rule after one that takes every URL of a folder containing it can never match."""
    for index, rule in enumerate(rules):
        if rule.folder != folder:
            continue  # inherited: checked in its own folder
        if rule.negate and rule.match.matches_everything():
            problems.add(
                rule.location,
                SETTING,
                f"rule {rule.name!r} can never match: its pattern {rule.match.text!r} matches "
                'every URL and negate="true" turns that into none',
            )
            continue
        for earlier in rules[:index]:
            contains = (
                earlier.folder == ""
                or rule.folder == earlier.folder
                or (rule.folder.startswith(earlier.folder + "/"))
            )
            if contains and earlier.takes_every_url():
                problems.add(
                    rule.location,
                    SETTING,
                    f"rule {rule.name!r} can never match: rule {earlier.name!r} at "
                    f"{earlier.location} comes first, takes every URL (pattern "
                    f"{earlier.match.text!r}, no conditions) and ends the evaluation",
                )
                break


def in_folder(ops: Iterable[RuleOp], folder: str) -> tuple[RuleOp, ...]:
    """The operations of a web.config in sub-folder `folder` of the mount (its rules were read
    relative to the web.config's own folder)."""
    moved: list[RuleOp] = []
    for op in ops:
        rule = op.rule
        if rule is not None:
            inner = "/".join(part for part in (folder, rule.folder) if part)
            rule = dataclasses.replace(rule, folder=inner)
        moved.append(dataclasses.replace(op, rule=rule))
    return tuple(moved)
