"""Find and load the application the worker serves (WSGI, or ASGI 3: see ``is_asgi``).

The application comes from, in order: ``--app``, ``ASGI_APP``, ``WSGI_APP``, ``WSGI_HANDLER``,
``DJANGO_SETTINGS_MODULE``, ``wsgi.application`` when ``wsgi.py`` is in the working directory,
else the built-in service-information page. A spec names an object by a dotted path
(``pkg.mod.app``), by ``module:attr`` (``pkg.mod:app.wsgi``), or calls a factory with literal
arguments (``pkg.make_app()``, ``pkg:create(debug=True)``). Calls are parsed with :mod:`ast` and
only literals are accepted as arguments: nothing in a spec is ever evaluated as code.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

WSGIApp = Callable[..., Any]

#: Environment variables naming the application, in the order they are consulted. ASGI_APP
#: also says the application is an ASGI one, whatever it looks like.
ENV_SPECS = ("ASGI_APP", "WSGI_APP", "WSGI_HANDLER")


class AppLoadError(Exception):
    """The application could not be found, imported or built.

    ``__cause__`` holds the original exception (an ImportError, a SyntaxError in the app, an
    exception raised by a factory...) when there is one.
    """


@dataclass(frozen=True, slots=True)
class AppSource:
    """Where the application comes from: ``kind`` is the option or variable that named it."""

    kind: str
    spec: str


@dataclass(frozen=True, slots=True)
class ParsedSpec:
    """A spec split into the module to import, the attribute path and an optional call."""

    module: str | None  # None: try the longest importable prefix of ``attrs``
    attrs: tuple[str, ...]
    call: bool = False
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def choose_source(app_option: str | None, environ: Mapping[str, str], cwd: str) -> AppSource:
    """Decide which application to serve (see the module docstring for the order)."""
    if app_option:
        return AppSource("--app", app_option)
    for name in ENV_SPECS:
        value = environ.get(name, "").strip()
        if value:
            return AppSource(name, value)
    django = environ.get("DJANGO_SETTINGS_MODULE", "").strip()
    if django:
        return AppSource("DJANGO_SETTINGS_MODULE", django)
    if os.path.isfile(os.path.join(cwd, "wsgi.py")):
        return AppSource("wsgi.py", "wsgi:application")
    return AppSource("default", "corral.worker.info:application")


def parse_spec(spec: str) -> ParsedSpec:
    """Parse ``module.attr``, ``module:attr.sub`` or either followed by a literal-argument call."""
    text = spec.strip()
    module: str | None = None
    if ":" in text:
        module, _, text = text.partition(":")
        module = module.strip()
        if not module or not _is_dotted(module):
            raise AppLoadError(f"invalid module name {module!r} in {spec!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise AppLoadError(f"cannot parse {spec!r}: {exc.msg}") from None
    call = isinstance(node, ast.Call)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if isinstance(node, ast.Call):
        try:
            args = tuple(_literal(arg, spec) for arg in node.args)
            for keyword in node.keywords:
                if keyword.arg is None:
                    raise AppLoadError(f"'**' arguments are not allowed in {spec!r}")
                kwargs[keyword.arg] = _literal(keyword.value, spec)
        except ValueError:
            raise AppLoadError(
                f"only literal arguments (strings, numbers, True/False/None, lists, dicts...) "
                f"are allowed in {spec!r}"
            ) from None
        node = node.func
    attrs = _dotted_parts(node)
    if attrs is None:
        raise AppLoadError(
            f"{spec!r} is not a dotted name ('module.attr', 'module:attr' or 'module.factory()')"
        )
    if module is None and len(attrs) < 2:
        raise AppLoadError(f"{spec!r} names no attribute: use 'module.attr' or 'module:attr'")
    return ParsedSpec(module, tuple(attrs), call, args, kwargs)


def _is_dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _literal(node: ast.expr, spec: str) -> Any:
    if isinstance(node, ast.Starred):
        raise AppLoadError(f"'*' arguments are not allowed in {spec!r}")
    return ast.literal_eval(node)


def _dotted_parts(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    parts.reverse()
    return parts


def _import_longest_prefix(attrs: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """Import the longest importable module prefix of ``attrs``; return it and the rest."""
    for cut in range(len(attrs) - 1, 0, -1):
        name = ".".join(attrs[:cut])
        try:
            return importlib.import_module(name), attrs[cut:]
        except ModuleNotFoundError as exc:
            # Only "this very module (or a parent) does not exist" means: try a shorter prefix.
            # A missing module imported *by* the app's code is the app's error: report it.
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise
    raise ModuleNotFoundError(f"No module named {attrs[0]!r}", name=attrs[0])


def resolve(parsed: ParsedSpec) -> Any:
    """Import the module, walk the attributes, call the factory: return the object."""
    if parsed.module is not None:
        obj: Any = importlib.import_module(parsed.module)
        rest = parsed.attrs
        where = parsed.module
    else:
        obj, rest = _import_longest_prefix(parsed.attrs)
        where = obj.__name__
    for name in rest:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AttributeError(f"{where!r} has no attribute {name!r}") from None
        where = f"{where}.{name}"
    if parsed.call:
        obj = obj(*parsed.args, **parsed.kwargs)
    return obj


def ensure_app_root_on_path(cwd: str) -> None:
    """Make the application root (the working directory) ``sys.path[0]``, and the only entry
    naming that folder (``python -m`` puts the working directory first; the app's PYTHONPATH,
    ``%APPL_PHYSICAL_PATH%`` in Zoo's web.configs, names it again)."""
    root = os.path.realpath(cwd)
    rest = [entry for entry in sys.path if os.path.realpath(entry or cwd) != root]
    sys.path[:] = [cwd, *rest]


#: Where the frames of how an application was imported come from: Corral's worker package
#: (this loader, ``__main__``) and the import system (``importlib``, frozen or not).
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_IMPORTLIB_DIR = os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep


def _loading_frame(filename: str) -> bool:
    return (
        filename.startswith("<frozen importlib")
        or filename.startswith(_PACKAGE_DIR)
        or filename.startswith(_IMPORTLIB_DIR)
    )


def _trim(summary: traceback.TracebackException, seen: set[int]) -> None:
    if id(summary) in seen:
        return
    seen.add(id(summary))
    frames = [frame for frame in summary.stack if not _loading_frame(frame.filename)]
    summary.stack = traceback.StackSummary.from_list(frames)
    for chained in (summary.__cause__, summary.__context__):
        if chained is not None:
            _trim(chained, seen)


def format_app_error(exc: BaseException) -> list[str]:
    """``exc``'s traceback as the application's author needs it: the exception and the app's
    own frames (and those of the exceptions it chains), without the frames of Corral's loader
    and of importlib that led to the app's code."""
    summary = traceback.TracebackException.from_exception(exc)
    _trim(summary, set())
    return list(summary.format())


def load(source: AppSource) -> WSGIApp:
    """Load the application named by ``source``; raise AppLoadError (with ``__cause__``)."""
    if source.kind == "DJANGO_SETTINGS_MODULE":
        spec = "django.core.wsgi:get_wsgi_application()"
    else:
        spec = source.spec
    parsed = parse_spec(spec)
    try:
        app = resolve(parsed)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit from an app's import is a load failure too
        raise AppLoadError(f"{type(exc).__name__}: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"{spec!r} is a {type(app).__name__}, not a callable application")
    return app  # type: ignore[no-any-return]


def is_asgi(app: object) -> bool:
    """Whether ``app`` looks like an ASGI 3 application: a coroutine function (or a partial of
    one), or an object whose ``__call__`` is one (Starlette, FastAPI, most ASGI middleware).
    Anything else callable is taken for WSGI; ``--interface asgi`` or ``ASGI_APP`` overrides."""
    if inspect.iscoroutinefunction(app):
        return True
    if inspect.isfunction(app) or inspect.ismethod(app) or isinstance(app, type):
        return False
    call = getattr(app, "__call__", None)  # noqa: B004 - an instance's __call__ is wanted
    return call is not None and inspect.iscoroutinefunction(call)


def describe(source: AppSource) -> str:
    """A human description of the source, for messages."""
    if source.kind == "default":
        return "the built-in service-information page"
    if source.kind == "wsgi.py":
        return "'wsgi.application' (wsgi.py in the application root)"
    return f"{source.spec!r} (from {source.kind})"
