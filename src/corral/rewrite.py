"""Applying IIS URL Rewrite rules to one request (pure: the disk is asked through `Facts`).

    decision = apply(rules, base, path, query, facts)

``rules``: a mount's rules in effect for the request's folder (`RewriteScope.rules`), in
order; ``base``: the mount's virtual path ("" for the site's root); ``path``: the request's
percent-decoded path (text, with its leading "/"); ``query``: its raw query string (without
"?"); ``facts``: what else a rule may read (server variables, the file a URL maps to, whether
a file or folder exists).

Each rule sees the current URL path relative to its own folder (the folder of the web.config
that declares it), without the leading slash: a rule of `/blog/web.config` sees `post/1` for
`/blog/post/1`, and is skipped for a URL a previous rule moved out of its folder. The pattern
matches (or, with `negate`, does not); then its conditions (`MatchAll`: every one, the last
one's captures are `{C:n}`; `MatchAny`: the first that matches); then its action:

- ``Rewrite``: the URL becomes the substitution: a path relative to the rule's folder, or from
  the site's root when it starts with "/"; a "?" in it starts a new query string, to which the
  current one is appended (``appendQueryString``, default true, with "&"); without one the
  query is kept, or dropped when ``appendQueryString`` is false. The next rule sees the new URL.
- ``Redirect``: the answer is a redirect to the substitution (made absolute like a Rewrite's
  path unless it is a full URL), with the query appended as for a Rewrite.
- ``CustomResponse``: the answer is that status, reason and description.
- ``AbortRequest``: the connection is dropped without an answer.
- ``None``: nothing.

``stopProcessing`` ends the evaluation after the rule's action; Redirect, CustomResponse and
AbortRequest always end it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote_plus

from corral.config.rewrite import (
    Action,
    Capture,
    Condition,
    Function,
    RewriteRule,
    Template,
    Variable,
)


class Facts(Protocol):
    """What a rule may read of the request besides its current path and query."""

    def variable(self, name: str) -> str:
        """A server variable other than URL, PATH_INFO, QUERY_STRING and REQUEST_FILENAME
        (HTTPS, HTTP_HOST, REQUEST_URI...); "" when the request has none."""

    def filename(self, path: str) -> str:
        """The file a URL path maps to ("" when it maps to none)."""

    def is_file(self, filename: str) -> bool: ...

    def is_dir(self, filename: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Rewritten:
    """Serve the request at ``path`` (decoded, from the site's root) with ``query``;
    ``changed``: some Rewrite action fired."""

    path: str
    query: str
    changed: bool


@dataclass(frozen=True, slots=True)
class Redirected:
    status: int
    location: str
    rule: str


@dataclass(frozen=True, slots=True)
class Responded:
    status: int
    reason: str
    description: str
    rule: str


@dataclass(frozen=True, slots=True)
class Aborted:
    rule: str


Decision = Rewritten | Redirected | Responded | Aborted


class _State:
    __slots__ = ("facts", "path", "query")

    def __init__(self, path: str, query: str, facts: Facts) -> None:
        self.path = path
        self.query = query
        self.facts = facts

    def variable(self, name: str) -> str:
        if name in ("URL", "PATH_INFO"):
            return self.path
        if name == "QUERY_STRING":
            return self.query
        if name == "REQUEST_FILENAME":
            return self.facts.filename(self.path)
        return self.facts.variable(name)


def apply(rules: Sequence[RewriteRule], base: str, path: str, query: str, facts: Facts) -> Decision:
    state = _State(path, query, facts)
    changed = False
    for rule in rules:
        folder_url = _folder_url(base, rule.folder)
        relative = _relative(state.path, folder_url)
        if relative is None:
            continue
        captures = rule.match.captures(relative)
        if rule.negate:
            if captures is not None:
                continue
            captures = ()
        elif captures is None:
            continue
        conditions = _conditions(rule, captures, state)
        if conditions is None:
            continue
        action = rule.action
        kind = action.type
        if kind == "Rewrite":
            assert action.url is not None
            target = render(action.url, captures, conditions, state)
            new_path, new_query = _resolve(target, folder_url, state.query, action)
            state.path, state.query = new_path, new_query
            changed = True
        elif kind == "Redirect":
            assert action.url is not None
            target = render(action.url, captures, conditions, state)
            return Redirected(
                action.status, _location(target, folder_url, state, action), rule.name
            )
        elif kind == "CustomResponse":
            description = (
                render(action.description, captures, conditions, state)
                if action.description is not None
                else ""
            )
            return Responded(action.status, action.reason, description, rule.name)
        elif kind == "AbortRequest":
            return Aborted(rule.name)
        if rule.stop_processing:
            break
    return Rewritten(state.path, state.query, changed)


def _folder_url(base: str, folder: str) -> str:
    """The URL path of a rule's folder, without a trailing slash ("" for the site's root)."""
    return f"{base}/{folder}" if folder else base


def _relative(path: str, folder_url: str) -> str | None:
    """What a rule of ``folder_url`` matches for ``path``: the rest without its leading "/";
    None when the path is not in that folder."""
    if not folder_url:
        return path[1:]
    if path == folder_url:
        return ""
    if path.startswith(folder_url) and path[len(folder_url)] == "/":
        return path[len(folder_url) + 1 :]
    return None


def _conditions(
    rule: RewriteRule, captures: tuple[str, ...], state: _State
) -> tuple[str, ...] | None:
    """The captures `{C:n}` refers to, or None when the conditions fail."""
    last: tuple[str, ...] = ()
    if not rule.conditions:
        return last
    for condition in rule.conditions:
        value = render(condition.input, captures, last, state)
        found = _test(condition, value, state)
        if rule.match_any:
            if found is not None:
                return found
        elif found is None:
            return None
        else:
            last = found
    return None if rule.match_any else last


def _test(condition: Condition, value: str, state: _State) -> tuple[str, ...] | None:
    if condition.match_type == "Pattern":
        assert condition.pattern is not None
        found = condition.pattern.captures(value)
        if condition.negate:
            return () if found is None else None
        return found
    if condition.match_type == "IsFile":
        exists = bool(value) and state.facts.is_file(value)
    else:
        exists = bool(value) and state.facts.is_dir(value)
    return () if exists != condition.negate else None


def render(
    template: Template, rule: tuple[str, ...], condition: tuple[str, ...], state: _State
) -> str:
    """A template's value for the current request."""
    parts: list[str] = []
    for piece in template.pieces:
        if isinstance(piece, str):
            parts.append(piece)
        elif isinstance(piece, Capture):
            source = rule if piece.rule else condition
            parts.append(source[piece.index] if piece.index < len(source) else "")
        elif isinstance(piece, Variable):
            parts.append(state.variable(piece.name))
        else:
            parts.append(_function(piece, render(piece.argument, rule, condition, state)))
    return "".join(parts)


def _function(function: Function, value: str) -> str:
    if function.name == "ToLower":
        return value.lower()
    if function.name == "UrlEncode":
        return quote(value, safe="")
    return unquote_plus(value)


def _resolve(target: str, folder_url: str, query: str, action: Action) -> tuple[str, str]:
    """A Rewrite's substitution as (path from the site's root, query)."""
    append = action.append_query_string
    path, mark, new_query = target.partition("?")
    if mark:
        if append and query:
            new_query = f"{new_query}&{query}" if new_query else query
    else:
        new_query = query if append else ""
    if not path.startswith("/"):
        path = f"{folder_url}/{path}"
    return remove_dot_segments(path), new_query


def _location(target: str, folder_url: str, state: _State, action: Action) -> str:
    append = action.append_query_string
    scheme, sep, _ = target.partition("://")
    absolute = bool(sep) and scheme.isascii() and scheme.replace("+", "").replace("-", "").isalnum()
    if not absolute and not target.startswith("/"):
        target = f"{folder_url}/{target}"
    if append and state.query:
        target += ("&" if "?" in target else "?") + state.query
    return target


def remove_dot_segments(path: str) -> str:
    """`.` and `..` segments resolved (RFC 3986 5.2.4); never above the root."""
    if "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for segment in segments[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    result = "/" + "/".join(out)
    if segments[-1] in (".", "..") and not result.endswith("/"):
        result += "/"
    return result
