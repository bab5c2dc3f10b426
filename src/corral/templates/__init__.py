"""The site templates of ``corral new`` (the catalog: pure data; ``corral.scaffold`` copies).

Each template is a folder of ``files/`` (package data: it ships in the wheel), laid over the
folders it shares with others (``python``: the deploy script that makes the site's virtualenv).
A template holds both spellings of its configuration, ``web.config`` (Helicon Zoo's) and
``corral.toml``; ``corral new`` writes one of them (``--toml``). The files are the site as the
user will edit it: no placeholders, except in a ``*.tmpl`` file (``{{SECRET_KEY}}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    #: One line for ``corral new --list``.
    summary: str
    #: Folders of ``files/`` copied in order (a later folder's file wins).
    parts: tuple[str, ...]
    #: What the first ``corral serve`` does before the start page shows.
    first_run: str
    #: Programs it needs besides Corral (for the message after creating it).
    needs: tuple[str, ...] = ()


_PY_FIRST_RUN = (
    "the first request runs deploy.py, which makes ./venv and installs requirements.txt "
    "(its output is the page meanwhile); then the workers start under venv/bin/python"
)

TEMPLATES: tuple[Template, ...] = (
    Template(
        "wsgi",
        "Python WSGI project (Zoo's): a start page with the service information, a virtualenv",
        ("python", "wsgi"),
        _PY_FIRST_RUN,
    ),
    Template("flask", "Flask application with a page template", ("python", "flask"), _PY_FIRST_RUN),
    Template(
        "django",
        "Django project: SQLite, the admin, static files collected and served by Corral",
        ("python", "django"),
        _PY_FIRST_RUN + " (deploy.py also runs migrate and collectstatic)",
    ),
    Template(
        "fastapi",
        "FastAPI application (ASGI) with a JSON route and a WebSocket echo",
        ("python", "fastapi"),
        _PY_FIRST_RUN,
    ),
    Template(
        "node",
        "Node.js application (Express) on the nodejs.http engine",
        ("node",),
        "the first request runs deploy.js (npm install; its output is the page meanwhile), "
        "then node server.js starts",
        needs=("node", "npm"),
    ),
    Template(
        "php",
        "PHP site: *.php in php-cgi, every other file static, its own php.ini",
        ("php",),
        "php-cgi starts with the first request to a .php file",
        needs=("php-cgi",),
    ),
    Template(
        "static",
        "Static site: files served by Corral itself, no application",
        ("static",),
        "nothing to install",
    ),
)

BY_NAME: dict[str, Template] = {template.name: template for template in TEMPLATES}


def files_root() -> Path:
    """The folder holding every template's files (inside the installed package)."""
    return Path(__file__).resolve().parent / "files"
