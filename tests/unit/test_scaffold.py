"""``corral new``: what a template writes, where it refuses, and that every template's
configuration (web.config and corral.toml) loads as the site it says (no network: the serving
tests are tests/integration/serve/test_templates.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import cli, scaffold
from corral.config import load_site
from corral.config.model import EngineKind
from corral.routing import Router
from corral.templates import TEMPLATES

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/zoo"}
#: Template -> (its application's engine kind, or None: static; the entry point setting).
EXPECTED = {
    "wsgi": (EngineKind.PYTHON_WORKER, "welcome"),
    "flask": (EngineKind.PYTHON_WORKER, "app:app"),
    "django": (EngineKind.PYTHON_WORKER, "mysite.wsgi"),
    "fastapi": (EngineKind.PYTHON_WORKER, "main:app"),
    "node": (EngineKind.COMMAND, "server.js"),
    "php": (EngineKind.COMMAND, "php-cgi"),
    "static": (None, ""),
}


def test_every_template_is_expected() -> None:
    assert sorted(t.name for t in TEMPLATES) == sorted(EXPECTED)


@pytest.mark.parametrize("toml", [False, True], ids=["web.config", "toml"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_template_loads_as_its_site(tmp_path: Path, name: str, toml: bool) -> None:
    folder = tmp_path / "site"
    created = scaffold.create(name, folder, toml=toml)
    config_file = "corral.toml" if toml else "web.config"
    other = "web.config" if toml else "corral.toml"
    assert config_file in created.files and other not in created.files
    assert not list(folder.rglob(other))
    assert not [p for p in folder.rglob("*") if p.name.endswith((".tmpl", ".pyc"))]
    config = load_site(str(folder), environ=ENV)
    kind, entry = EXPECTED[name]
    if kind is None:
        assert config.apps == ()
        return
    (app,) = config.apps
    assert app.engine.kind is kind
    text = " ".join([*app.argv, *(f"{k}={v}" for k, v in app.env)])
    assert entry in text, text
    if kind is EngineKind.PYTHON_WORKER:
        # The deploy script makes the site's virtualenv; the workers run its Python.
        assert app.deploy_file == str(folder / "deploy.py")
        assert app.interpreter == str(folder / "venv" / "bin" / "python")
        assert (folder / "requirements.txt").is_file() and (folder / ".gitignore").is_file()


@pytest.mark.parametrize("toml", [False, True], ids=["web.config", "toml"])
def test_djangos_static_folder_is_served_by_corral(tmp_path: Path, toml: bool) -> None:
    folder = tmp_path / "site"
    scaffold.create("django", folder, toml=toml)
    router = Router(load_site(str(folder), environ=ENV))
    assert router.match(None, "/static/admin/css/base.css").app is None  # a static file
    assert router.match(None, "/admin/login/").app is not None


def test_each_django_site_gets_its_own_secret_key(tmp_path: Path) -> None:
    keys = []
    for n in range(2):
        scaffold.create("django", tmp_path / str(n))
        text = (tmp_path / str(n) / "mysite" / "settings.py").read_text()
        assert "{{SECRET_KEY}}" not in text
        keys.append(text.split('"DJANGO_SECRET_KEY", "')[1].split('"')[0])
    assert len(keys[0]) >= 50 and keys[0] != keys[1]


def test_a_folder_that_is_not_empty_is_refused_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "app.py").write_text("old")
    with pytest.raises(scaffold.ScaffoldError, match="not empty"):
        scaffold.create("flask", folder)
    assert (folder / "app.py").read_text() == "old"
    scaffold.create("flask", folder, force=True)
    assert (folder / "notes.txt").read_text() == "mine"  # never deleted
    assert "Flask" in (folder / "app.py").read_text()  # replaced


def test_an_empty_or_missing_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    scaffold.create("static", tmp_path / "empty")
    scaffold.create("static", tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "index.html").is_file()


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["new", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in EXPECTED)
    assert cli.main(["new", "pyramid", str(tmp_path / "x")]) == 2
    assert "no template 'pyramid'" in capsys.readouterr().err
    assert cli.main(["new", "flask"]) == 2
    assert cli.main(["new", "php", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert f"corral serve {tmp_path / 'p'}" in out and "php-cgi" in out
    assert cli.main(["new", "php", str(tmp_path / "p")]) == 2
    assert "--force" in capsys.readouterr().err
