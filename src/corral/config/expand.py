"""Helicon Zoo's `%VAR%` expansion and environment layering, as pure functions.

Precedence (one function, `layer_env`): OS environment < engine variables < application
variables; the module variables (APPL_PHYSICAL_PATH...) are fixed by Corral. A value that names
itself (`PATH=...;%PATH%`) sees the value from the layer below. Unknown `%X%` stay as written.
Names are looked up exactly first, then case-insensitively (Windows names are case-insensitive).

Windows-style values are made POSIX where they point inside the site: `;`-separated lists become
`os.pathsep` lists and backslashes become `/` (`%APPL_PHYSICAL_PATH%\\python_modules\\Lib` ->
`/srv/site/python_modules/Lib`). Values that do not point inside the site are left as written.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Mapping

from corral.config.model import Env

_REFERENCE = re.compile(r"%([A-Za-z_][A-Za-z0-9_.()\-]*)%")

#: Variables known only when a worker starts; kept as written until `finish_env`.
INSTANCE_VARIABLES = ("PORT", "HOST", "SOCKET", "INSTANCE_ID")

#: Variables that are path lists even when nothing in them points inside the site.
PATH_LIST_VARIABLES = frozenset({"PYTHONPATH", "PATH", "NODE_PATH", "PERL5LIB", "GEM_PATH"})

_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:/")

Lookup = Callable[[str], str | None]


def expand(value: str, lookup: Lookup) -> str:
    """Replace each `%NAME%` for which `lookup` has a value; leave the others as written."""

    def replace(match: re.Match[str]) -> str:
        found = lookup(match.group(1))
        return match.group(0) if found is None else found

    return _REFERENCE.sub(replace, value)


def _lookup_in(mapping: Mapping[str, str]) -> Lookup:
    folded = {name.upper(): value for name, value in mapping.items()}

    def lookup(name: str) -> str | None:
        if name in mapping:
            return mapping[name]
        return folded.get(name.upper())

    return lookup


def module_variables(physical_path: str, virtual_path: str) -> Env:
    """The variables Helicon Zoo's module gives every worker (minus the per-instance ones)."""
    app_id = virtual_path.replace("/", "")
    return (
        ("APPL_PHYSICAL_PATH", physical_path),
        # No 8.3 short names off Windows: the short path is the path.
        ("APPL_PHYSICAL_SHORT_PATH", physical_path),
        ("APPL_VIRTUAL_PATH", virtual_path),
        ("APPL_ID", app_id),
    )


def layer_env(
    os_env: Mapping[str, str],
    module_vars: Env,
    layers: Iterable[Iterable[tuple[str, str]]],
    *,
    site_root: str,
) -> Env:
    """Expand and merge the engine then application variables over the OS environment.

    Returns only the variables the layers define (in first-definition order), each expanded
    against: the module variables, then variables defined so far, then the OS environment.
    Instance variables (%PORT%...) stay as written. Values pointing inside `site_root` are
    normalised by `posix_value`.
    """
    fixed = dict(module_vars)
    context: dict[str, str] = dict(os_env)
    defined: dict[str, str] = {}
    for layer in layers:
        entries = list(layer)
        before = dict(context)
        for name, raw in entries:
            value = _expand_entry(name, raw, fixed, context, before)
            context[name] = value
            defined[name] = value
        # Zoo expands application values twice so that one may use a variable defined after it.
        for name, raw in entries:
            if _REFERENCE.search(raw):
                value = _expand_entry(name, raw, fixed, context, before)
                if value != defined[name]:
                    context[name] = value
                    defined[name] = value
    return tuple((name, posix_value(name, value, site_root)) for name, value in defined.items())


def _expand_entry(
    name: str,
    raw: str,
    fixed: Mapping[str, str],
    context: Mapping[str, str],
    before: Mapping[str, str],
) -> str:
    in_fixed = _lookup_in(fixed)
    in_context = _lookup_in(context)
    in_before = _lookup_in(before)

    def lookup(ref: str) -> str | None:
        if ref.upper() in INSTANCE_VARIABLES:
            return None
        found = in_fixed(ref)
        if found is not None:
            return found
        if ref.upper() == name.upper():
            # PATH=...;%PATH% prepends to the inherited value, or to nothing.
            inherited = in_before(ref)
            return "" if inherited is None else inherited
        return in_context(ref)

    return expand(raw, lookup)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def posix_value(name: str, value: str, site_root: str) -> str:
    """Make a Windows-style value POSIX where it points inside the site; else leave it."""
    if "\\" not in value and ";" not in value:
        return value
    parts = value.split(";")
    is_list = name.upper() in PATH_LIST_VARIABLES
    converted: list[str] = []
    inside_any = False
    for part in parts:
        candidate = part.replace("\\", "/")
        if (
            _inside(posixpath.normpath(candidate), site_root)
            if candidate.startswith("/")
            else False
        ):
            inside_any = True
            converted.append(posixpath.normpath(candidate))
        elif is_list and _WINDOWS_ABSOLUTE.match(candidate):
            # C:/Python27/Lib means nothing here; dropping it keeps the list valid.
            inside_any = True
        elif is_list and candidate and not candidate.startswith("/") and ":" not in candidate:
            # A relative entry (python_modules\Lib): relative to the application folder.
            inside_any = True
            converted.append(candidate.rstrip("/") or ".")
        else:
            converted.append(part)
    if not inside_any:
        return value
    if len(parts) == 1:
        return converted[0]
    return os.pathsep.join(part for part in converted if part)


def resolve_path(value: str, base: str) -> str:
    """An absolute, normalised path: `value` (with `\\` as `/`) relative to `base`."""
    path = value.replace("\\", "/")
    if not path.startswith("/"):
        path = posixpath.join(base, path)
    return posixpath.normpath(path)


def finish(
    value: str,
    *,
    port: int | str | None,
    host: str | None,
    instance_id: int,
    socket: str | None = None,
) -> str:
    """Fill in %PORT%, %HOST%, %SOCKET% and %INSTANCE_ID% (case-insensitively) for one
    worker."""
    values = {"INSTANCE_ID": str(instance_id)}
    if port is not None:
        values["PORT"] = str(port)
    if host is not None:
        values["HOST"] = host
    if socket is not None:
        values["SOCKET"] = socket
    return expand(value, lambda ref: values.get(ref.upper()))


def finish_env(
    env: Env,
    module_vars: Env,
    *,
    port: int | str | None,
    host: str | None,
    instance_id: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of one worker process.

    `base` (default: the current OS environment) < module variables < the app's `env`, with the
    instance variables filled in; PORT and HOST are set too when given (Zoo passes them).
    """
    result = dict(os.environ if base is None else base)
    result.update(module_vars)
    result["INSTANCE_ID"] = str(instance_id)
    if port is not None:
        result["PORT"] = str(port)
    if host is not None:
        result["HOST"] = host
    for name, value in env:
        result[name] = finish(value, port=port, host=host, instance_id=instance_id)
    return result


def finish_argv(
    argv: Iterable[str], *, port: int | str | None, host: str | None, instance_id: int
) -> list[str]:
    return [finish(arg, port=port, host=host, instance_id=instance_id) for arg in argv]


def split_arguments(arguments: str) -> list[str]:
    """Shell-style split of an engine's `arguments` (double quotes as on Windows)."""
    return shlex.split(arguments, posix=True)
