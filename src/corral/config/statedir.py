"""Where Corral writes what belongs to no site folder: the state directory.

The bundled example (``corral/examples/hello``, package data) lives wherever Corral is installed:
from a wheel, inside a ``site-packages`` that is no place for logs (often not even writable).
Its ERROR_LOG_DIR and DEPLOY_LOG, and those of any site whose folder is inside Corral's package,
are written under ``state_home()/corral/<the site's path in the package>`` instead
(``~/.local/state/corral/examples/hello/log`` for the example). A user's own site keeps its logs
where its configuration says, writable or not: moving them silently would hide them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import corral

#: The folder holding Corral's package (``.../site-packages/corral`` or a checkout's src/corral).
PACKAGE_DIR = os.path.dirname(os.path.realpath(corral.__file__))


def _writable(path: str) -> bool:
    """Whether ``path`` could be made and written: its nearest existing ancestor is writable."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def state_home(environ: Mapping[str, str]) -> str:
    """Corral's state directory: ``$XDG_STATE_HOME/corral``, else ``~/.local/state/corral``,
    else (neither can be written) ``corral-<uid>/state`` in the system's temporary folder."""
    xdg = environ.get("XDG_STATE_HOME", "").strip()
    home = environ.get("HOME", "").strip() or os.path.expanduser("~")
    candidates = []
    if os.path.isabs(xdg):
        candidates.append(os.path.join(xdg, "corral"))
    if os.path.isabs(home):
        candidates.append(os.path.join(home, ".local", "state", "corral"))
    for candidate in candidates:
        if _writable(candidate):
            return candidate
    return os.path.join(tempfile.gettempdir(), f"corral-{os.getuid()}", "state")


def package_site_state(root: str, environ: Mapping[str, str]) -> str | None:
    """For a site folder inside Corral's package (the bundled example): the folder under the
    state directory its log paths move to; None for any other site."""
    real = os.path.realpath(root)
    if real != PACKAGE_DIR and not real.startswith(PACKAGE_DIR + os.sep):
        return None
    return os.path.join(state_home(environ), os.path.relpath(real, PACKAGE_DIR))


def relocate(path: str, root: str, state: str) -> str:
    """``path`` (absolute) moved from under ``root`` to under ``state``; unchanged when it is
    not inside ``root``."""
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith(".." + os.sep):
        return path
    return os.path.normpath(os.path.join(state, rel))
