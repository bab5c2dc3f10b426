"""The front server's settings (`server.*`) and the engines' health timing: declared once, read
from the server TOML, a site's corral.toml and applicationHost.config, validated with file, line
and setting, layered (XML < TOML < command line), and mapped to FrontSettings/PoolSettings."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest

from corral.app import ServeOptions, apply_overrides, build_apps, front_settings
from corral.config import ConfigErrors, convert, load_server, load_site
from corral.config.check import render
from corral.config.settings import (
    BY_NAME,
    POOL_BY_FIELD,
    SERVER_BY_ATTRIBUTE,
    SERVER_BY_TOML,
    Kind,
    Scope,
    by_scope,
)
from corral.config.settings_engine import ENGINE_DEFAULTS
from corral.engines import pool_settings_for
from corral.front.settings import FrontSettings
from corral.supervision.settings import PoolSettings

APP_TOML = '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'


def _server(tmp_path: Path, server_lines: str, *, application_host: str | None = None) -> Path:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "wsgi.py").write_text("def application(e, s):\n    return []\n")
    (site / "corral.toml").write_text(APP_TOML)
    head = ""
    if application_host is not None:
        (tmp_path / "applicationHost.config").write_text(application_host)
        head = 'application_host = "applicationHost.config"\n'
    path = tmp_path / "server.toml"
    path.write_text(
        "[server]\n"
        + head
        + server_lines
        + '\n[sites.main]\nbindings = ["127.0.0.1:8080:"]\n[sites.main.apps."/"]\n'
        'physical_path = "site"\n'
    )
    return path


def _errors(call: object) -> list[str]:
    assert callable(call)
    with pytest.raises(ConfigErrors) as caught:
        call()
    return [str(error) for error in caught.value.errors]


# -- the declaration ----------------------------------------------------------------------


def test_every_front_setting_is_declared_with_front_settings_default() -> None:
    declared = {s.toml_key: s for s in by_scope(Scope.SERVER)}
    default = FrontSettings()
    for item in fields(FrontSettings):
        setting = declared[item.name]
        assert setting.name == f"server.{item.name}"
        assert setting.default == getattr(default, item.name), item.name
        assert setting.zoo_name in SERVER_BY_ATTRIBUTE
        if setting.kind is not Kind.ADDRESSES and setting.default is not None:
            assert setting.convert(setting.default) == setting.default, item.name
    assert set(SERVER_BY_TOML) == {item.name for item in fields(FrontSettings)}
    assert set(declared) - set(SERVER_BY_TOML) == {"application_host"}


def test_timeouts_are_numbers_above_zero_and_sizes_whole_numbers() -> None:
    for name in ("header_timeout", "keepalive_timeout", "acquire_timeout", "tunnel_idle_timeout"):
        setting = SERVER_BY_TOML[name]
        assert setting.kind is Kind.NUMBER and setting.above and setting.minimum == 0
        assert "Seconds" in setting.doc
    for name in ("max_body_size", "max_request_line", "max_header_size", "write_buffer_high"):
        assert SERVER_BY_TOML[name].kind is Kind.INT
        assert "bytes" in SERVER_BY_TOML[name].doc.lower()


def test_engine_health_timing_defaults_are_the_pools() -> None:
    pool = PoolSettings()
    for name in ("health_interval", "probe_interval", "probe_timeout"):
        setting = BY_NAME[f"engine.{name}"]
        assert setting.default == getattr(pool, name)
        assert setting.kind is Kind.NUMBER and setting.above


def test_to_number() -> None:
    assert convert.to_number("2.5") == 2.5
    assert convert.to_number(3) == 3.0
    assert convert.to_number(" .5 ") == 0.5
    with pytest.raises(ValueError, match="must be more than 0, got 0"):
        convert.to_number(0, minimum=0, above=True)
    with pytest.raises(ValueError, match=r"must be at least 1, got 0\.5"):
        convert.to_number("0.5", minimum=1)
    for bad in ("soon", True, "1e3", "nan", math.inf, None):
        with pytest.raises(ValueError):
            convert.to_number(bad)


# -- reading ------------------------------------------------------------------------------


def test_the_server_toml_sets_the_front_settings(tmp_path: Path) -> None:
    config = load_server(
        str(
            _server(
                tmp_path,
                "max_body_size = 1000\nheader_timeout = 2.5\nkeepalive_timeout = 1\n"
                'show_errors_to_loopback = false\ntrusted_proxies = ["10.0.0.0/8"]\n',
            )
        )
    )
    front = config.front
    assert front.max_body_size == 1000
    assert front.header_timeout == 2.5 and isinstance(front.header_timeout, float)
    assert front.keepalive_timeout == 1.0
    assert front.show_errors_to_loopback is False
    assert front.trusted_proxies == ("10.0.0.0/8",)
    assert front.response_timeout == FrontSettings().response_timeout  # not written: default
    text = render(config)
    assert "Server settings (others at their defaults):\n" in text
    assert "  max_body_size = 1000\n" in text and "  show_errors_to_loopback = false\n" in text
    assert "response_timeout" not in text


def test_bad_values_name_the_file_line_and_setting(tmp_path: Path) -> None:
    path = _server(
        tmp_path,
        'header_timeout = -1\nmax_body_size = "big"\nretry_after = 1.5\nbody_timeout = 0\n'
        'trusted_proxies = "nowhere"\nmax_bodysize = 1\n',
    )
    errors = _errors(lambda: load_server(str(path)))
    assert errors == [
        f"{path}:2: header_timeout: must be more than 0, got -1",
        f"{path}:3: max_body_size: expected a whole number, got 'big'",
        f"{path}:4: retry_after: expected a whole number, got 1.5",
        f"{path}:5: body_timeout: must be more than 0, got 0",
        f"{path}:6: trusted_proxies: not an address or network: 'nowhere'",
        f"{path}:7: max_bodysize: unknown server setting; did you mean 'max_body_size'? "
        "(known: application_host, " + ", ".join(sorted(SERVER_BY_TOML)) + ")",
    ]


APPLICATION_HOST = """<?xml version="1.0"?>
<configuration>
  <system.webServer>
    <heliconZooServer maxBodySize="100" headerTimeout="3" showErrorsToLoopback="Disabled"
                      trustedProxies="127.0.0.1; 10.0.0.0/8">
    </heliconZooServer>
  </system.webServer>
</configuration>
"""


def test_application_host_config_attributes_and_the_toml_wins(tmp_path: Path) -> None:
    path = _server(tmp_path, "max_body_size = 1000\n", application_host=APPLICATION_HOST)
    front = load_server(str(path)).front
    assert front.max_body_size == 1000  # the TOML over the XML
    assert front.header_timeout == 3.0
    assert front.show_errors_to_loopback is False
    assert front.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")


def test_application_host_errors_use_its_spelling_and_refuse_location(tmp_path: Path) -> None:
    xml = """<configuration>
  <system.webServer>
    <heliconZooServer maxBodySize="-5" headerTimeot="3" />
  </system.webServer>
  <location path="main">
    <system.webServer>
      <heliconZooServer headerTimeout="3" />
    </system.webServer>
  </location>
</configuration>
"""
    path = _server(tmp_path, "", application_host=xml)
    host = tmp_path / "applicationHost.config"
    errors = _errors(lambda: load_server(str(path)))
    assert f"{host}:3: maxBodySize: must be at least 0, got -5" in errors
    assert any(e.startswith(f"{host}:3: headerTimeot: unknown attribute") for e in errors)
    assert any(
        e.startswith(f"{host}:7: headerTimeout: a server setting applies to the whole server")
        for e in errors
    )


def test_a_site_folder_served_alone_reads_its_corral_toml_server_table(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        "[server]\nmax_body_size = 1000\n\n" + APP_TOML.replace("main", "a")
    )
    assert load_site(str(tmp_path)).front.max_body_size == 1000
    (tmp_path / "corral.toml").write_text(
        '[server]\napplication_host = "applicationHost.config"\nheader_timeout = "x"\n'
    )
    errors = _errors(lambda: load_site(str(tmp_path)))
    toml = tmp_path / "corral.toml"
    assert f"{toml}:2: application_host: only a server file names an applicationHost.config" in (
        errors
    )
    assert f"{toml}:3: header_timeout: expected a number, got 'x'" in errors


def test_a_mounted_sites_server_table_is_listed_as_not_in_effect(tmp_path: Path) -> None:
    path = _server(tmp_path, "")
    (tmp_path / "site" / "corral.toml").write_text("[server]\nmax_body_size = 1\n" + APP_TOML)
    config = load_server(str(path))
    assert config.front.max_body_size == FrontSettings().max_body_size
    assert "[server] in a site's corral.toml" in render(config)


# -- to the runtime -----------------------------------------------------------------------


def test_the_command_line_wins_and_is_checked_like_the_files(tmp_path: Path) -> None:
    config = load_server(str(_server(tmp_path, "max_body_size = 1000\nretry_after = 9\n")))
    front_overrides, pool_overrides = apply_overrides(
        {"max_body_size": "5000", "header_timeout": "0.5", "trusted_proxies": "*"}
    )
    assert pool_overrides == {}
    options = ServeOptions(path=tmp_path, front_overrides=front_overrides)
    front = front_settings(config, options)
    assert front.max_body_size == 5000  # --set over [server]
    assert front.retry_after == 9  # [server] over the default
    assert front.header_timeout == 0.5 and front.trusted_proxies == ("*",)
    with pytest.raises(ValueError, match="header_timeout: must be more than 0, got -1"):
        apply_overrides({"header_timeout": "-1"})
    with pytest.raises(ValueError, match="max_body_size: expected a whole number"):
        apply_overrides({"max_body_size": "big"})
    with pytest.raises(ValueError, match="unknown setting 'nope'"):
        apply_overrides({"nope": "1"})


def test_acquire_timeout_from_the_configuration_is_the_pools_queue_timeout(
    tmp_path: Path,
) -> None:
    config = load_server(str(_server(tmp_path, "acquire_timeout = 7\n")))
    (app,) = build_apps(config, ServeOptions(path=tmp_path))
    assert app.pool.settings.queue_timeout == 7.0
    options = ServeOptions(
        path=tmp_path, front_overrides=apply_overrides({"acquire_timeout": "3"})[0]
    )
    (app,) = build_apps(config, options)
    assert app.pool.settings.queue_timeout == 3.0


def test_engine_health_timing_reaches_the_pool_settings(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        "[engines.python]\nhealth_interval = 0.5\nprobe_interval = 2\nprobe_timeout = 1.5\n"
        + APP_TOML
    )
    (app,) = load_site(str(tmp_path)).apps
    assert (app.engine.health_interval, app.engine.probe_interval) == (0.5, 2.0)
    settings = pool_settings_for(app)
    assert (settings.health_interval, settings.probe_interval, settings.probe_timeout) == (
        0.5,
        2.0,
        1.5,
    )
    # The command line still wins.
    assert pool_settings_for(app, {"probe_timeout": 4.0}).probe_timeout == 4.0
    (tmp_path / "corral.toml").write_text("[engines.python]\nprobe_timeout = 0\n" + APP_TOML)
    errors = _errors(lambda: load_site(str(tmp_path)))
    assert errors == [f"{tmp_path / 'corral.toml'}:2: probe_timeout: must be more than 0, got 0"]


def test_engine_health_timing_from_application_host_config(tmp_path: Path) -> None:
    xml = """<configuration>
  <system.webServer>
    <heliconZooServer>
      <userEngines>
        <add name="python" probeInterval="12" healthInterval="soon" />
      </userEngines>
    </heliconZooServer>
  </system.webServer>
</configuration>
"""
    path = _server(tmp_path, "", application_host=xml)
    errors = _errors(lambda: load_server(str(path)))
    host = tmp_path / "applicationHost.config"
    assert errors == [f"{host}:5: healthInterval: expected a number, got 'soon'"]
    (tmp_path / "applicationHost.config").write_text(xml.replace('healthInterval="soon"', ""))
    (app,) = load_server(str(path)).apps
    assert app.engine.probe_interval == 12.0
    assert pool_settings_for(app).probe_interval == 12.0


# -- declared once ------------------------------------------------------------------------


def test_every_pool_setting_field_is_bound_to_one_declaration() -> None:
    """PoolSettings' fields and the declarations' `PoolUse`s are the same set (but for the
    fields derived from the engine rather than set), and each default is the declaration's."""
    derived = {"backoff", "source_suffixes"}
    assert {f.name for f in fields(PoolSettings)} - derived == set(POOL_BY_FIELD)
    defaults = PoolSettings()
    for name, setting in POOL_BY_FIELD.items():
        assert setting.pool is not None and setting.pool.field == name
        assert getattr(defaults, name) == setting.pool.convert(setting.default), name
    # Bounds are the declaration's: PoolSettings refuses what PoolUse.check refuses.
    with pytest.raises(ValueError, match="pipeline_depth must be between 1 and 16, not 17"):
        PoolSettings(pipeline_depth=17)
    with pytest.raises(ValueError, match="idle_timeout must be >= 0 or None, not -1"):
        PoolSettings(idle_timeout=-1)
    with pytest.raises(ValueError, match="request_timeout must be > 0 or None, not 0"):
        PoolSettings(request_timeout=0)
    assert PoolSettings(idle_timeout=None, request_timeout=None).idle_timeout is None


def test_engine_settings_fill_fields_of_their_type(tmp_path: Path) -> None:
    """Each engine setting fills the EngineConfig field of its name with its converted value
    (`declare.declare_engine` relies on it), and the pool gets it in the pool's units."""
    blank = ENGINE_DEFAULTS
    for setting in by_scope(Scope.ENGINE):
        if setting.attribute in ("name", "env", "transport", "protocol"):
            continue  # set apart by declare_engine (the table's name, enums, merged variables)
        value = getattr(blank, setting.attribute)
        assert setting.convert(setting.default) == value, setting.name
        assert isinstance(setting.convert(setting.default), type(value)), setting.name
    (tmp_path / "corral.toml").write_text(
        "[engines.python]\ntime_limit = 2\nmax_requests = 10\nmax_requests_jitter = 50\n"
        "idle_timeout = 0\nmemory_limit = 99\n" + APP_TOML
    )
    (app,) = load_site(str(tmp_path)).apps
    settings = pool_settings_for(app)
    assert (settings.time_limit, settings.max_requests, settings.max_requests_jitter) == (
        120.0,
        10,
        0.5,
    )
    assert (settings.idle_timeout, settings.memory_limit_mb) == (None, 99)


def test_set_converts_pool_settings_as_declared() -> None:
    front, pool = apply_overrides(
        {"queue_size": "7", "time_limit": "1.5", "idle_timeout": "0", "pipeline_depth": "4"}
    )
    assert front == {}
    assert pool == {"queue_size": 7, "time_limit": 1.5, "idle_timeout": 0.0, "pipeline_depth": 4}
    with pytest.raises(ValueError, match="queue_size: expected a whole number"):
        apply_overrides({"queue_size": "many"})
    with pytest.raises(ValueError, match="pipeline_depth must be between 1 and 16, not 0"):
        apply_overrides({"pipeline_depth": "0"})
