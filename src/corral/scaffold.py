"""``corral new TEMPLATE DIR``: a new site from a template (``corral.templates``), ready for
``corral serve DIR``.

The template's files are copied into DIR with one of its two configurations (``web.config``
files, Helicon Zoo's spelling, or ``corral.toml`` with ``toml=True``); ``gitignore`` becomes
``.gitignore``; a ``*.tmpl`` file loses its suffix and gets a fresh secret for
``{{SECRET_KEY}}`` (Django's). DIR must be empty or absent, unless ``force``: then the
template's files are written over the ones of the same name and every other file is left as it
is (nothing is ever deleted).
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.templates import BY_NAME, TEMPLATES, Template, files_root

#: File names a template stores under another name (package data keeps no dot files reliably).
RENAMED = {"gitignore": ".gitignore"}
#: Never copied from the package (bytecode of the templates' own Python files).
SKIPPED = frozenset({"__pycache__"})


class ScaffoldError(Exception):
    """Why a site cannot be created (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Created:
    template: Template
    folder: Path
    #: The files written, relative to ``folder``, sorted.
    files: tuple[str, ...]
    toml: bool


def plan(template: Template, *, toml: bool) -> dict[str, Path]:
    """Every file of ``template``: its path in the new site -> the package file it copies."""
    root = files_root()
    skipped_config = "web.config" if toml else "corral.toml"
    files: dict[str, Path] = {}
    for part in template.parts:
        base = root / part
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if path.is_dir() or SKIPPED.intersection(relative.parts) or path.suffix == ".pyc":
                continue
            if relative.name == skipped_config:
                continue
            name = RENAMED.get(relative.name, relative.name)
            name = name.removesuffix(".tmpl")
            files[str(relative.with_name(name))] = path
    return files


def create(name: str, folder: Path, *, toml: bool = False, force: bool = False) -> Created:
    """Make the site ``folder`` from the template ``name`` (see the module doc)."""
    template = BY_NAME.get(name)
    if template is None:
        known = ", ".join(t.name for t in TEMPLATES)
        raise ScaffoldError(f"no template {name!r} (templates: {known}; see corral new --list)")
    if folder.exists() and not folder.is_dir():
        raise ScaffoldError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ScaffoldError(
            f"{folder} is not empty; choose a new folder, or add --force to write the "
            "template's files into it (files of the same name are replaced, others kept)"
        )
    files = plan(template, toml=toml)
    secret = secrets.token_urlsafe(50)
    for relative, source in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".tmpl":
            text = source.read_text(encoding="utf-8").replace("{{SECRET_KEY}}", secret)
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, target)
        if target.name == "manage.py":
            os.chmod(target, 0o755)
    return Created(template, folder, tuple(sorted(files)), toml)


def list_text() -> str:
    """``corral new --list``."""
    width = max(len(t.name) for t in TEMPLATES)
    lines = [f"  {t.name:<{width}}  {t.summary}" for t in TEMPLATES]
    return "Templates (corral new TEMPLATE DIR):\n" + "\n".join(lines) + "\n"


def created_text(created: Created) -> str:
    """What the user reads once the site exists: what is there, and how to run it."""
    template = created.template
    config = "corral.toml" if created.toml else "web.config"
    folder = str(created.folder)
    needs = f"\nIt needs {', '.join(template.needs)} on PATH." if template.needs else ""
    return (
        f"Created a {template.name} site in {folder} ({len(created.files)} files, "
        f"configured by {config}).\n"
        f"Run it:  corral serve {folder}\n"
        f"then open http://127.0.0.1:8080/ : {template.first_run}.{needs}\n"
    )
