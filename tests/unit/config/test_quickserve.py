"""The one-line serve's targets (``corral serve module:app``, ``corral serve app.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import load_site
from corral.config.quickserve import QuickApp, QuickServeError, resolve


def test_module_colon_name_is_imported_from_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("app = object()\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "web.py").write_text("")
    assert resolve("hello:app", str(tmp_path)) == QuickApp(str(tmp_path), "hello:app")
    assert resolve("pkg.web:create_app()", str(tmp_path)) == QuickApp(
        str(tmp_path), "pkg.web:create_app()"
    )
    assert resolve("pkg:app", str(tmp_path)) == QuickApp(str(tmp_path), "pkg:app")
    with pytest.raises(QuickServeError, match="no module 'missing'"):
        resolve("missing:app", str(tmp_path))


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("def application(environ, start_response): ...\napp = application\n", "application"),
        ("from flask import Flask\napp = Flask(__name__)\n", "app"),
        ("from somewhere import application\n", "application"),
        ("app: object = object()\n", "app"),
        ("app, other = 1, 2\n", "app"),
        ("class app: ...\n", "app"),
    ],
)
def test_a_file_serves_its_application_else_its_app(tmp_path: Path, source: str, name: str) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "main.py").write_text(source)
    quick = resolve("site/main.py", str(tmp_path))
    assert quick == QuickApp(str(tmp_path / "site"), f"main:{name}")


def test_a_file_without_either_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def helper(): ...\nif True:\n    app = 1\n")
    with pytest.raises(QuickServeError, match="corral serve main:NAME"):
        resolve("main.py", str(tmp_path))
    (tmp_path / "broken.py").write_text("def (:\n")
    with pytest.raises(QuickServeError, match="cannot read it as Python"):
        resolve("broken.py", str(tmp_path))


def test_folders_and_server_files_are_not_one_line_targets(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("")
    assert resolve(".", str(tmp_path)) is None
    assert resolve("server.toml", str(tmp_path)) is None
    assert resolve("no-such-folder", str(tmp_path)) is None  # the caller says it is missing


def test_a_configured_folder_is_served_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("app = 1\n")
    (tmp_path / "web.config").write_text("<configuration/>")
    with pytest.raises(QuickServeError, match=r"has its own web\.config"):
        resolve("app.py", str(tmp_path))


def test_the_site_has_one_application_with_that_wsgi_app(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("app = 1\n")
    quick = resolve("app.py", str(tmp_path))
    assert quick is not None
    config = load_site(quick.folder, default_engine="python", default_env=quick.env())
    (app,) = config.apps
    assert app.wsgi_app == "app:app"
    assert app.virtual_path == "/"
