"""The one-line serve: ``corral serve module:app`` and ``corral serve app.py``, as a gunicorn or
uvicorn user types them (pure: the file system is only looked at, the application's code is
parsed, never imported: it runs in the worker).

``target`` is what follows ``corral serve``:

* ``package.module:name`` (not an existing path): the application ``name`` of that module,
  imported from the current folder (``name`` may be a factory call, ``create_app()``, as the
  worker's WSGI_APP accepts);
* ``some/app.py``: that file's ``application``, else its ``app`` (names bound at the file's top
  level: an assignment, a def, a class or an import), imported from the file's folder.

Either way the folder becomes a site with one application at "/" on Corral's Python worker,
whose WSGI_APP is that spec (WSGI or ASGI: the worker tells them apart). A folder with its own
configuration (web.config, corral.toml, .zoo) is refused: ``corral serve FOLDER`` serves that.
Anything else (a folder, a server TOML) is not a one-line target: ``resolve`` returns None.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass

#: The names looked for in ``corral serve app.py``, in order (Zoo's and WSGI's, then Flask's
#: and FastAPI's usual one).
FILE_NAMES = ("application", "app")
#: The files that make a folder a configured site.
CONFIG_FILES = ("web.config", "corral.toml", ".zoo")

_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class QuickServeError(ValueError):
    """Why the target cannot be served (one line for the user)."""


@dataclass(frozen=True, slots=True)
class QuickApp:
    #: The site's folder (where the module is imported from).
    folder: str
    #: The WSGI_APP of its one application (``module:name``).
    spec: str

    def env(self) -> dict[str, str]:
        return {"WSGI_APP": self.spec}


def resolve(target: str, cwd: str) -> QuickApp | None:
    """The one-line application ``target`` names, or None when it names a folder or a server
    file (or nothing: the caller says so). Raises ``QuickServeError``."""
    path = os.path.join(cwd, target)
    if os.path.isfile(path) and target.endswith(".py"):
        folder, file_name = os.path.split(os.path.abspath(path))
        module = file_name[: -len(".py")]
        if not _MODULE.fullmatch(module):
            raise QuickServeError(f"{target}: {module!r} is not a Python module name")
        return _checked(QuickApp(folder, f"{module}:{_app_name(path, target)}"))
    if os.path.exists(path):
        return None
    module, sep, name = target.partition(":")
    if not sep or not _MODULE.fullmatch(module) or not name.strip():
        return None
    folder = os.path.abspath(cwd)
    relative = module.replace(".", os.sep)
    if not (
        os.path.isfile(os.path.join(folder, relative + ".py"))
        or os.path.isfile(os.path.join(folder, relative, "__init__.py"))
    ):
        raise QuickServeError(
            f"{target}: no module {module!r} in {folder} (run corral serve where the module "
            "is, as with gunicorn)"
        )
    return _checked(QuickApp(folder, target))


def _checked(app: QuickApp) -> QuickApp:
    for name in CONFIG_FILES:
        if os.path.exists(os.path.join(app.folder, name)):
            raise QuickServeError(
                f"{app.folder} has its own {name}: serve the folder (corral serve "
                f"{app.folder}), whose configuration names its applications"
            )
    return app


def _app_name(path: str, shown: str) -> str:
    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), filename=path)
    except (OSError, SyntaxError, ValueError) as error:
        raise QuickServeError(f"{shown}: cannot read it as Python: {error}") from None
    bound = _top_level_names(tree)
    for name in FILE_NAMES:
        if name in bound:
            return name
    raise QuickServeError(
        f"{shown} defines neither `application` nor `app` at its top level; name the "
        f"application: corral serve {os.path.basename(path)[:-3]}:NAME"
    )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_target_names(target))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_target_names(node.target))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add((alias.asname or alias.name).partition(".")[0])
    return names


def _target_names(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return {name for element in target.elts for name in _target_names(element)}
    return set()
