"""The last Zoo variables: ZOO_SUBSTITUTE_HOST (the Host an HTTP backend gets), ERROR_LOG_LEVEL
(read by Corral's Python worker) and django.root (what Corral's SCRIPT_NAME already does): each
in effect where it can be, and named by `corral check` where it cannot. Pure: nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.app import ServeOptions, build_apps
from corral.backends import BODY_NONE
from corral.config import ConfigErrors, load_site
from corral.config.check import render
from corral.front.forward import request_head
from corral.protocol.http1.events import Request


def toml_site(tmp_path: Path, engine: str, **env: str) -> Path:
    if engine == "http":
        env = {"APP_COMMAND": "backend %PORT%", **env}
    lines = [f'[apps.a]\nengine = "{engine}"\n[apps.a.env]\n']
    lines += [f'"{name}" = "{value}"\n' for name, value in env.items()]
    (tmp_path / "corral.toml").write_text("".join(lines))
    (tmp_path / "server.js").write_text("")
    return tmp_path


def test_zoo_substitute_host_fills_instance_id_and_reaches_the_http_route(tmp_path: Path) -> None:
    site = toml_site(tmp_path, "http", ZOO_SUBSTITUTE_HOST="zoo%INSTANCE_ID%%APPL_ID%.local:8080")
    config = load_site(str(site))
    (app,) = config.apps
    assert app.zoo_substitute_host == "zoo0.local:8080"
    (built,) = build_apps(config, ServeOptions(path=site))
    assert built.route.backend_host == b"zoo0.local:8080"


@pytest.mark.parametrize("value", ["two words", "evil\r\nX-Injected: 1", "a/b"])
def test_zoo_substitute_host_that_is_no_host_is_an_error_at_its_line(
    tmp_path: Path, value: str
) -> None:
    site = toml_site(tmp_path, "http", ZOO_SUBSTITUTE_HOST=value.replace("\r\n", "\\r\\n"))
    with pytest.raises(ConfigErrors) as caught:
        load_site(str(site))
    (error,) = caught.value.errors
    assert (error.location.line, error.setting) == (5, "ZOO_SUBSTITUTE_HOST")


def test_zoo_substitute_host_on_fastcgi_is_listed_not_in_effect(tmp_path: Path) -> None:
    config = load_site(str(toml_site(tmp_path, "python", ZOO_SUBSTITUTE_HOST="tomcat")))
    assert config.apps[0].zoo_substitute_host is None
    assert "a: ZOO_SUBSTITUTE_HOST (a FastCGI backend gets the client's HTTP_HOST" in render(config)


def test_the_backend_host_replaces_host_and_the_clients_goes_in_x_forwarded_host() -> None:
    request = Request(
        method=b"GET",
        target=b"/x",
        path=b"/x",
        query=b"",
        http_version="1.1",
        headers=[(b"Host", b"www.example.com")],
        keep_alive=True,
        expect_continue=False,
        content_length=None,
        chunked=False,
        upgrade=None,
    )
    head = request_head(
        request,
        host=b"www.example.com",
        client=b"127.0.0.1",
        trusted=False,
        body=BODY_NONE,
        backend_host=b"zoo0",
    )
    assert head.startswith(b"GET /x HTTP/1.1\r\nHost: zoo0\r\n")
    assert b"X-Forwarded-Host: www.example.com\r\n" in head
    assert head.count(b"Host: ") == 2  # Host and X-Forwarded-Host, no second Host


def test_error_log_level_is_checked_and_listed_for_engines_that_do_not_read_it(
    tmp_path: Path,
) -> None:
    python = tmp_path / "py"
    python.mkdir()
    config = load_site(str(toml_site(python, "python", ERROR_LOG_LEVEL="Info")))
    assert config.apps[0].env_dict()["ERROR_LOG_LEVEL"] == "Info"
    assert "Accepted but not in effect" not in render(config)
    node = tmp_path / "node"
    node.mkdir()
    config = load_site(str(toml_site(node, "nodejs.http", ERROR_LOG_LEVEL="info")))
    assert "a: ERROR_LOG_LEVEL (read by Corral's Python worker" in render(config)
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ConfigErrors) as caught:
        load_site(str(toml_site(bad, "python", ERROR_LOG_LEVEL="loud")))
    assert [e.setting for e in caught.value.errors] == ["ERROR_LOG_LEVEL"]


def test_django_root_of_the_virtual_path_is_a_notice_another_is_not_in_effect(
    tmp_path: Path,
) -> None:
    same = tmp_path / "same"
    same.mkdir()
    config = load_site(str(toml_site(same, "python", **{"django.root": "%APPL_VIRTUAL_PATH%"})))
    (app,) = config.apps
    assert any("django.root = /: Corral already serves" in notice for notice in app.notices)
    assert not app.not_in_effect
    other = tmp_path / "other"
    other.mkdir()
    config = load_site(str(toml_site(other, "python", **{"django.root": "/blog"})))
    (item,) = config.apps[0].not_in_effect
    assert item.setting.startswith("a: django.root (only the virtual path / is stripped")
    assert item.value == "/blog"


def test_warm_up_is_listed_where_no_template_sends_it(tmp_path: Path) -> None:
    for name, engine, env, listed in (
        ("py", "python", {"WARM_UP": "/w"}, False),
        ("off", "python", {"WARM_UP": "/w", "PRELOAD": "off"}, True),
        ("node", "nodejs.http", {"WARM_UP": "/w"}, True),
    ):
        folder = tmp_path / name
        folder.mkdir()
        config = load_site(str(toml_site(folder, engine, **env)))
        shown = "a: WARM_UP (sent by the template of Corral's Python worker" in render(config)
        assert shown == listed, name
