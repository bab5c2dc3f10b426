"""Broken configurations: every error is reported at once, each as file:line: setting: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import ConfigErrors, load
from corral.config.check import run_check

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config-errors"


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load(str(path), environ={"PATH": "/usr/bin"})
    return [str(error) for error in caught.value.errors]


def test_malformed_xml_names_file_and_line() -> None:
    folder = FIXTURES / "malformed-xml"
    assert errors_of(folder) == [
        f"{folder}/web.config:6: xml: malformed XML: mismatched tag",
    ]


def test_entity_expansion_is_refused() -> None:
    folder = FIXTURES / "entity-expansion"
    assert errors_of(folder) == [
        f"{folder}/web.config:3: xml: entity declarations are refused (EntitiesForbidden)",
    ]


def test_malformed_toml_names_file_and_line() -> None:
    folder = FIXTURES / "malformed-toml"
    assert errors_of(folder) == [
        f"{folder}/corral.toml:3: toml: malformed TOML: Illegal character '\\n'",
    ]


def test_unknown_engine() -> None:
    folder = FIXTURES / "unknown-engine"
    assert errors_of(folder) == [
        f"{folder}/web.config:7: scriptProcessor: unknown engine 'java.jetty.8' (known: "
        "fastcgi, http, nodejs.http, perl.psgi, perl.psgi.fastcgi, php.fastcgi, python, "
        "ruby.puma, ruby.rack; Zoo names python.*, php.*.pipe, nodejs.http* and ruby.*.pipe "
        "also work)",
    ]


def test_duplicate_names() -> None:
    folder = FIXTURES / "duplicate-names"
    config = folder / "web.config"
    assert errors_of(folder) == [
        f"{config}:8: WSGI_APP: duplicate variable (first set at line 7)",
        f"{config}:11: application: duplicate application 'app' (first at line 5)",
        f"{config}:17: handlers: duplicate handler name 'app#x64' (already added at "
        f"{config}:16; <remove> it first)",
    ]


def test_bad_numbers_in_every_file_are_reported_together() -> None:
    folder = FIXTURES / "bad-numbers"
    server = folder / "server.toml"
    host = folder / "applicationHost.config"
    assert errors_of(server) == [
        f"{server}:5: max_instances: must be at least 0, got -1",
        f"{server}:9: bindings: must be at most 65535, got 99999",
        f"{host}:6: maxInstances: expected a whole number, got 'four'",
        f"{host}:7: portLower: must be at most 65535, got 70000",
        f"{host}:8: portLower: portLower 60000 is above portUpper 50000",
        f"{folder}/site/web.config:7: WORKER_REQUEST_TIMEOUT: expected a whole number, got 'soon'",
    ]


def test_switchboard_disables_an_engine_for_a_site() -> None:
    folder = FIXTURES / "switchboard-disabled"
    assert errors_of(folder / "server.toml") == [
        f"{folder}/site/corral.toml:1: engine: engine 'python.3.x.wsgi' is disabled for site "
        "'hosting' by <switchboard>",
    ]


def test_two_sites_cannot_share_a_catch_all_binding() -> None:
    server = FIXTURES / "duplicate-binding" / "server.toml"
    assert errors_of(server) == [
        f"{server}:8: bindings: every host (no host name) on 127.0.0.1:8080 is already bound "
        "by site 'a'",
    ]


def test_unknown_keys_and_missing_folders() -> None:
    server = FIXTURES / "toml-typos" / "server.toml"
    assert errors_of(server) == [
        f"{server}:2: max_instance: unknown engine setting in engine 'python'; did you mean "
        "'max_instances'?",
        f"{server}:6: bindigns: unknown site setting in site 'main'; did you mean 'bindings'?",
        f"{server}:8: physical_path: no such folder: {server.parent}/missing-folder",
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_check_reports_errors_with_exit_code_1(name: str) -> None:
    folder = FIXTURES / name
    target = folder / "server.toml" if (folder / "server.toml").exists() else folder
    code, text = run_check(str(target), environ={})
    assert code == 1
    assert "configuration error" in text
    assert "Configuration OK" not in text


def test_check_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    code, text = run_check(str(tmp_path / "nowhere"))
    assert code == 2
    assert "no such file or folder" in text


def test_a_site_declared_twice() -> None:
    server = FIXTURES / "duplicate-site" / "server.toml"
    assert errors_of(server) == [
        f"{server}:3: toml: malformed TOML: Cannot declare ('sites', 'main') twice",
    ]
