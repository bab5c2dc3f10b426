"""Which changes to an application's files matter, and what they mean (pure: no file-system
access, no I/O machinery; ``runtime.watch`` runs the watcher, ``runtime.policy`` decides).

``WatchRules.classify(path)`` says what a changed path means to the application:

* ``Change.TRIGGER``: the trigger file, ``restart.txt`` in the application's root (touch it to
  restart the application in production, with or without WATCH_FILE_CHANGES_MASK);
* ``Change.MASKED``: a file matching WATCH_FILE_CHANGES_MASK (``*.py``, ``*.py;*.ini``...),
  anywhere under the root. A mask without ``/`` matches a file's name, one with ``/`` its path
  relative to the root; matching ignores case, as on Zoo's Windows;
* ``Change.OTHER``: any other file of the application (this matters while its deploy script has
  failed: a change to the script or to the app's files retries it);
* None: not the application's business: the error-log folder, the deploy log, virtualenvs,
  ``__pycache__``, version-control folders and editors' temporary files.
"""

from __future__ import annotations

import enum
import fnmatch
import os
import re
from dataclasses import dataclass

#: Touching this file in the application's root restarts the application.
TRIGGER_FILE = "restart.txt"

#: Folder names never watched, wherever they are.
IGNORED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".tox", "node_modules"}
)
#: File-name suffixes never watched (bytecode, editors' swap and backup files).
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".swo", "~", ".tmp")

#: The temporary files common editors write beside the file being saved, by name: Emacs's lock
#: (``.#app.py``) and auto-save (``#app.py#``) files; Vim's and nano's swap files (``.app.py.swp``
#: ... ``.swa``); Kate's ``.kate-swp``; gedit's (GIO's) ``.goutputstream-*``; JetBrains' safe
#: write (``app.py___jb_tmp___``, ``___jb_old___``, ``___jb_bak___``); LibreOffice's
#: ``.~lock.*#``; macOS Finder's ``.DS_Store``.
EDITOR_TEMPORARY = re.compile(
    r"\.#.*|#.*#|.*\.sw[a-px]|.*\.kate-swp|\.goutputstream-.*|.*___jb_(?:tmp|old|bak)___"
    r"|\.~lock\..*#|\.DS_Store"
)
#: Vim writes this file (then 5036, 5159...: 123 apart) to learn whether it may write in a folder.
VIM_PROBE, VIM_PROBE_STEP = 4913, 123


def editor_temporary(name: str) -> bool:
    """Whether the file name ``name`` is an editor's temporary file (``EDITOR_TEMPORARY``, Vim's
    write probe ``4913``), never the file the user saved."""
    if name.isdigit():
        number = int(name)
        return number >= VIM_PROBE and (number - VIM_PROBE) % VIM_PROBE_STEP == 0
    return EDITOR_TEMPORARY.fullmatch(name) is not None


class Change(enum.Enum):
    TRIGGER = "trigger"
    MASKED = "masked"
    OTHER = "other"
    #: The application's deploy script (DEPLOY_FILE) itself.
    DEPLOY_SCRIPT = "deploy script"


@dataclass(frozen=True, slots=True)
class WatchRules:
    """What the changes under one application's root mean (pure: no file-system access)."""

    root: str
    masks: tuple[str, ...] = ()
    #: Absolute folders whose contents are ignored (error logs, virtualenvs).
    excluded_dirs: tuple[str, ...] = ()
    #: Absolute files ignored (the deploy log).
    excluded_files: tuple[str, ...] = ()
    trigger: str = TRIGGER_FILE
    #: Watch every file under the root even without masks (a deploy script's retry needs it).
    watch_all: bool = False
    #: The deploy script (DEPLOY_FILE), absolute: its changes are ``Change.DEPLOY_SCRIPT``.
    deploy_script: str | None = None

    def classify(self, path: str) -> Change | None:
        """What a change to ``path`` (absolute) means; None when it does not matter."""
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return None
        if path in self.excluded_files:
            return None
        for folder in self.excluded_dirs:
            if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
                return None
        parts = rel.split(os.sep)
        if any(part in IGNORED_DIRS for part in parts[:-1]):
            return None
        name = parts[-1]
        if name in IGNORED_DIRS or name.endswith(IGNORED_SUFFIXES) or editor_temporary(name):
            return None
        if path == self.deploy_script:
            return Change.DEPLOY_SCRIPT
        if rel == self.trigger:
            return Change.TRIGGER
        if self.matches(rel):
            return Change.MASKED
        return Change.OTHER

    def matches(self, rel: str) -> bool:
        """True when the root-relative path ``rel`` matches one of the masks."""
        rel_lower = rel.replace(os.sep, "/").lower()
        name_lower = rel_lower.rsplit("/", 1)[-1]
        for mask in self.masks:
            pattern = mask.replace("\\", "/").lower().lstrip("/")
            subject = rel_lower if "/" in pattern else name_lower
            if fnmatch.fnmatchcase(subject, pattern):
                return True
        return False
