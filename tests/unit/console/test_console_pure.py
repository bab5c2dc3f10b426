"""The web console's pure parts: CONSOLE_URL's forms, the console route's place in routing, the
shell's plan and start-up script, resize messages, the Origin check, the token cookie's path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.app import ServeOptions, build_apps
from corral.config.appbuild import console_path
from corral.config.load import load_site
from corral.console.build import ConsoleRoutes
from corral.console.endpoint import same_origin
from corral.console.shell import shell_plan
from corral.console.terminal import parse_resize
from corral.front.forward import ProxyView, origin
from corral.front.routes import ConfigRouter
from corral.front.settings import FrontSettings
from corral.ops.token import TokenGuard


@pytest.mark.parametrize(
    ("written", "path"),
    [("console", "console"), ("/console", "console"), ("/tools/sh/", "tools/sh"), (" x ", "x")],
)
def test_console_url_is_relative_to_the_app_and_a_leading_slash_is_tolerated(
    written: str, path: str
) -> None:
    assert console_path(written) == (path, "")


@pytest.mark.parametrize("written", ["/", "a/../b", "a//b", "./a", "a?b", "a#b", "a%2e", "a b"])
def test_console_urls_that_are_no_path_below_the_app_are_errors(written: str) -> None:
    found, why = console_path(written)
    assert found is None and why


def web_config(variables: dict[str, str]) -> str:
    adds = "".join(f'<add name="{name}" value="{value}"/>' for name, value in variables.items())
    return (
        "<configuration><system.webServer>"
        f'<heliconZoo><application name="app"><environmentVariables>{adds}'
        "</environmentVariables></application></heliconZoo>"
        '<handlers><add name="app" scriptProcessor="python" path="*" verb="*" '
        'modules="HeliconZoo_x64"/></handlers>'
        "</system.webServer></configuration>"
    )


def test_the_console_route_comes_before_the_apps_handlers_and_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_ADMIN_TOKEN", "a-token-for-the-routing-test")
    (tmp_path / "web.config").write_text(
        web_config({"WSGI_APP": "wsgi.application", "CONSOLE_URL": "/console"})
    )
    config = load_site(str(tmp_path))
    apps = build_apps(config, ServeOptions(path=tmp_path))
    routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
    consoles = ConsoleRoutes(tmp_path).routes([(a.config, a.route) for a in apps], FrontSettings())
    router = ConfigRouter(config, routes, consoles=consoles)
    app = apps[0].route
    for path in (b"/console", b"/console/", b"/console/ws", b"/console/assets/xterm.js"):
        found = router.match(b"localhost", path)
        assert found is not None and found.console is not None, path
        assert found.script_name == b"/console"
    for path in (b"/", b"/consoles", b"/x/console", b"/consolews"):
        assert router.match(b"localhost", path) is app, path


def test_the_shell_plan_puts_the_venv_first_and_runs_bash_with_its_rc_after_the_users(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    env = {"PATH": f"/usr/bin:{venv}/bin:/bin", "VIRTUAL_ENV": str(venv), "COLUMNS": "80"}
    plan = shell_plan(env, "/srv/app", interpreter="", name="blog", shell="/bin/bash", rc_fd=7)
    assert plan.argv == ("/bin/bash", "--rcfile", "/dev/fd/7", "-i")
    assert plan.env["PATH"] == f"{venv}/bin:/usr/bin:/bin"
    assert plan.env["TERM"] == "xterm-256color" and "COLUMNS" not in plan.env
    script = plan.rc_script.decode()
    assert script.index(".bashrc") < script.index(f"PATH={venv}/bin:")
    assert script.rstrip().endswith("exec 7<&-")
    # The script is valid shell, and leaves the venv first even when ~/.bashrc moved it.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text('PATH=/usr/bin:"$PATH"\n')
    check = script.replace("exec 7<&-", "") + 'echo "$PATH|$VIRTUAL_ENV|$PS1"\n'
    out = subprocess.run(
        ["/bin/sh", "-c", check.replace("/etc/bash.bashrc", "/nonexistent")],
        env={"HOME": str(home), "PATH": "/bin", "PS1": "$ "},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"{venv}/bin:/usr/bin:/bin|{venv}|(blog) $"


def test_posix_shells_get_the_script_through_env_and_others_the_environment_only() -> None:
    env = {"PATH": "/bin", "ENV": "/home/u/.shrc"}
    plan = shell_plan(
        env, "/", interpreter="/opt/py/bin/python", name="a", shell="/bin/dash", rc_fd=5
    )
    assert plan.argv == ("/bin/dash", "-i") and plan.env["ENV"] == "/dev/fd/5"
    assert b". /home/u/.shrc" in plan.rc_script and b"ENV=/home/u/.shrc" in plan.rc_script
    assert plan.env["PATH"] == "/opt/py/bin:/bin"
    assert plan.rc_script.rstrip().endswith(b"exec 5<&-")
    high = shell_plan(env, "/", interpreter="", name="a", shell="/bin/dash", rc_fd=12)
    assert b"exec 12" not in high.rc_script  # (dash would run a command named 12)
    zsh = shell_plan({"PATH": "/bin"}, "/", interpreter="", name="a", shell="/bin/zsh", rc_fd=5)
    assert zsh.argv == ("/bin/zsh", "-i") and zsh.rc_script == b"" and zsh.env["PATH"] == "/bin"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ('{"resize": [132, 40]}', (40, 132)),
        ('{"resize": [0, 40]}', None),
        ('{"resize": [132, 40, 1]}', None),
        ('{"resize": [true, 40]}', None),
        ('{"resize": "132x40"}', None),
        ("[1, 2]", None),
        ("{", None),
    ],
)
def test_resize_messages(text: str, size: tuple[int, int] | None) -> None:
    assert parse_resize(text) == size


@given(st.text(max_size=64))
def test_any_text_is_a_resize_or_nothing(text: str) -> None:
    size = parse_resize(text)
    assert size is None or all(0 < n <= 1000 for n in size)


def test_the_origin_must_be_the_consoles_own() -> None:
    assert same_origin(None, b"http://h:1")  # not a browser
    assert same_origin(b"http://H:1", b"http://h:1")
    assert not same_origin(b"http://h:1", b"https://h:1")  # the scheme counts
    assert not same_origin(b"http://evil.example", b"http://h:1")
    assert not same_origin(b"null", b"http://h:1")
    assert not same_origin(b"http://h:1", b"")  # no host: no origin to compare with


def test_the_requests_own_origin_is_a_trusted_proxys_word_else_the_connections() -> None:
    view = ProxyView(client="203.0.113.7", scheme=b"https", host=b"example.com", chain=None)
    assert origin(view, False, b"127.0.0.1:8080") == b"https://example.com"
    assert origin(None, True, b"h:8443") == b"https://h:8443"
    assert origin(None, False, b"h") == b"http://h"
    assert origin(ProxyView(None, None, None, None), False, b"h") == b"http://h"
    assert origin(None, False, None) == b""


def test_the_login_cookie_can_be_limited_to_the_consoles_path() -> None:
    guard = TokenGuard("t" * 20)
    assert b"; Path=/blog/console;" in guard.login_cookie(path="/blog/console")
    assert b"; Path=/;" in guard.login_cookie()


def test_corral_check_shows_the_console(tmp_path: Path) -> None:
    from corral.config.check import render

    (tmp_path / "web.config").write_text(
        web_config(
            {"WSGI_APP": "wsgi.application", "CONSOLE_URL": "/sh", "CONSOLE_IDLE_TIMEOUT": "60"}
        )
    )
    text = render(load_site(str(tmp_path)))
    assert "web console: /sh (admin token; idle timeout 60 s)" in text
