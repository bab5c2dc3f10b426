"""The one declaration of settings, the generated reference, and `corral check`'s report."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from corral.config import docgen, load_site
from corral.config.check import MASK, mask_value, render, run_check
from corral.config.model import EngineConfig
from corral.config.settings import (
    APP_BY_TOML,
    APP_BY_VARIABLE,
    ENGINE_BY_ATTRIBUTE,
    ENGINE_BY_TOML,
    SETTINGS,
    Kind,
    Scope,
)

REPO = Path(__file__).resolve().parents[3]
SITES = REPO / "tests" / "fixtures" / "sites"


def test_the_configuration_reference_is_generated_from_settings() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == docgen.render(), (
        "docs/configuration.md is stale: run "
        "`.venv/bin/python -m corral.config.docgen > docs/configuration.md`"
    )


def test_every_setting_is_declared_once_under_each_spelling() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for scope in Scope:
        keys = [s.toml_key for s in SETTINGS if s.scope is scope and s.toml_key]
        assert len(keys) == len(set(keys)), scope
        zoo = [s.zoo_name for s in SETTINGS if s.scope is scope and s.zoo_name]
        assert len(zoo) == len(set(zoo)), scope
    # Only a pool setting that no file spells (set by `--set` alone) has no Zoo spelling, and
    # the server file's include patterns (sites as files), which Helicon Zoo never had.
    toml_only = {"server.include", "server.include_bindings"}
    assert all(s.zoo_name or s.scope is Scope.POOL or s.name in toml_only for s in SETTINGS)
    set_names = [s.pool.field for s in SETTINGS if s.pool is not None]
    assert len(set_names) == len(set(set_names))
    for setting in SETTINGS:
        assert setting.doc and setting.doc[0].isupper(), setting.name
        # Defaults of scalar settings convert to themselves.
        if setting.default is not None and setting.kind in (Kind.INT, Kind.BOOL, Kind.CHOICE):
            assert setting.convert(setting.default) == setting.default, setting.name


def test_engine_defaults_match_the_model() -> None:
    blank = EngineConfig(name="x", kind=None, transport=None, protocol=None)  # type: ignore[arg-type]
    for attribute, setting in ENGINE_BY_ATTRIBUTE.items():
        field = setting.name.removeprefix("engine.")
        if attribute in ("name", "transport", "protocol"):
            continue
        assert getattr(blank, field) == setting.default or (
            setting.default == "" and getattr(blank, field) in ("", "127.0.0.1")
        ), field
    assert set(ENGINE_BY_TOML) >= {"full_path", "max_instances", "env"}
    assert {"PYTHONPATH", "WSGI_APP", "CURRENT_DIRECTORY", "DEPLOY_FILE"} <= set(APP_BY_VARIABLE)
    assert {"engine", "paths", "env", "wsgi_app"} <= set(APP_BY_TOML)


def test_secret_looking_values_are_masked() -> None:
    assert mask_value("SECRET_KEY", "abc") == MASK
    assert mask_value("DB_PASSWORD", "abc") == MASK
    assert mask_value("GITHUB_TOKEN", "abc") == MASK
    assert mask_value("API_KEY", "abc") == MASK
    assert mask_value("DATABASE_URL", "postgres://u:p4ss@db/x") == f"postgres://u:{MASK}@db/x"
    assert mask_value("PATH", "/usr/bin") == "/usr/bin"
    assert mask_value("SECRET_KEY", "") == ""


def test_check_renders_the_resolved_model() -> None:
    code, text = run_check(
        str(SITES / "apphost" / "server.toml"), environ={"PATH": "/usr/bin", "HOME": "/h"}
    )
    assert code == 0
    assert text.startswith("Configuration OK.\n")
    assert "site 'Default Web Site'" in text and "site 'Restricted Site'" in text
    assert "127.0.0.1:8080 (www.example.test)" in text
    assert "/django/*  -> django.project.x64 [python.2.7.pipe]" in text
    assert "/django/static/*  -> static files" in text
    assert "/*.php  -> php.project [php.5.4.pipe]" in text
    assert "/(anything else)  -> static files" in text
    assert f"command: {sys.executable} -m corral.worker" in text
    assert "        DJANGO_SETTINGS_MODULE=mysite.settings" in text
    assert f"        SECRET_KEY={MASK}" in text
    assert "not-for-production-1234" not in text
    assert "hunter2" not in text
    # DEPLOY_FILE, WORKER_REQUEST_TIMEOUT and timeLimit are in effect: not listed (and since the
    # switchboard's console took effect, this fixture has nothing left that is not).
    not_in_effect = text.partition("Accepted but not in effect yet:")[2].partition("Engines used:")[
        0
    ]
    assert "DEPLOY_FILE" not in not_in_effect
    assert "WORKER_REQUEST_TIMEOUT" not in not_in_effect
    assert "time_limit" not in not_in_effect
    assert "Engines used:" in text
    assert "python.2.7.pipe: Corral Python worker; NamedPipe/fastcgi; instances 1..2" in text


def test_check_on_a_site_folder(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path)) / "site"
    shutil.copytree(SITES / "seed-wsgi", root)
    code, text = run_check(str(root), environ={})
    assert code == 0
    assert f"/ -> {root}" in text
    assert "notice: engine 'python.2.7.wsgi' runs Corral's Python worker" in text
    assert "not in effect" not in text  # ERROR_LOG_DIR = log is in effect
    assert render(load_site(str(root), environ={})) == text
