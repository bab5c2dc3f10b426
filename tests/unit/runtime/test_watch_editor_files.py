"""Editors' temporary files never count as a change to an application (issue 10, item 19): a
restart is caused, and named in the log, by the file the user saved, never by the lock, probe,
swap or atomic-save file the editor wrote beside it."""

from __future__ import annotations

import os

import pytest

from corral.runtime.watchrules import Change, WatchRules

ROOT = "/srv/site"

EDITOR_FILES = [
    ".#app.py",  # Emacs: lock file (a symlink), matches *.py
    "#app.py#",  # Emacs: auto-save
    "pkg/.#models.py",
    "4913",  # Vim: the probe it writes to test whether the folder is writable
    "pkg/4913",
    "app.py.swp",  # Vim swap files
    ".app.py.swp",
    ".app.py.swx",
    "app.py~",  # backups (Vim, Emacs, Kate, gedit)
    "app.py.kate-swp",  # Kate
    ".goutputstream-XJ3ZB2",  # gedit / GIO atomic save
    "app.py___jb_tmp___",  # JetBrains safe write
    "app.py___jb_old___",
    ".~lock.notes.odt#",  # LibreOffice
    "app.py.tmp",
    ".app.py.swa",  # Vim: swap files after .swp ... .swa
    ".DS_Store",  # macOS Finder
]


@pytest.mark.parametrize("name", EDITOR_FILES)
@pytest.mark.parametrize("masks", [("*.py",), ("*",), ()])
def test_an_editors_temporary_file_is_not_a_change(name: str, masks: tuple[str, ...]) -> None:
    rules = WatchRules(root=ROOT, masks=masks, watch_all=True)
    assert rules.classify(os.path.join(ROOT, name)) is None


@pytest.mark.parametrize(
    "name", ["app.py", "4913.py", "notes#1.py", "lock.py", "pkg/app.py", "sw1.py"]
)
def test_ordinary_files_still_count(name: str) -> None:
    rules = WatchRules(root=ROOT, masks=("*.py",))
    assert rules.classify(os.path.join(ROOT, name)) is Change.MASKED
