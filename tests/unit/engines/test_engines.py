"""AppConfig -> pool settings and launch plans (corral.engines), and the front's adapter over
the configuration's router (corral.front.routes.ConfigRouter). Pure: nothing is started."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from corral.app import ServeOptions, build_apps
from corral.config import ConfigErrors, load, load_site
from corral.config.builtin_engines import BUILT_IN, PYTHON
from corral.config.model import EngineKind, Transport
from corral.engines import KINDS, Unsupported, backend_for, kind_for, pool_settings_for
from corral.front.routes import ConfigRouter
from corral.supervision.launch import corral_package_parent

SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"


def test_pool_settings_come_from_the_engine_and_the_command_line_wins() -> None:
    config = load(str(SITES / "apphost" / "server.toml"))
    django = next(app for app in config.apps if app.virtual_path == "/django")
    settings = pool_settings_for(django)
    assert (settings.min_instances, settings.max_instances) == (1, 2)  # TOML over userEngines
    assert settings.graceful_shutdown_timeout == 30.0  # gracefulShutdownTimeout
    assert settings.queue_size == 1000
    overridden = pool_settings_for(django, {"max_instances": 5, "queue_size": 7})
    assert (overridden.max_instances, overridden.queue_size) == (5, 7)
    # A maximum below the engine's minimum pulls the minimum down with it, and vice versa.
    assert (
        pool_settings_for(
            replace(django, engine=replace(django.engine, min_instances=3)), {"max_instances": 2}
        ).min_instances
        == 2
    )
    assert pool_settings_for(django, {"min_instances": 4}).max_instances == 4
    with pytest.raises(ValueError, match="not pool settings"):
        pool_settings_for(django, {"header_timeout": 1.0})


def test_php_fcgi_max_requests_is_the_pools_request_limit_without_jitter() -> None:
    (php,) = load_site(str(SITES / "php-site")).apps
    settings = pool_settings_for(php)
    assert (settings.max_requests, settings.max_requests_jitter) == (500, 0.0)
    # The command line may recycle sooner, never later than php-cgi quits by itself.
    assert pool_settings_for(php, {"max_requests": 100}).max_requests == 100
    assert pool_settings_for(php, {"max_requests": 10_000}).max_requests == 500
    assert pool_settings_for(php, {"max_requests": 0}).max_requests == 500
    assert pool_settings_for(php, {"max_requests_jitter": 0.5}).max_requests_jitter == 0.0
    (python,) = load_site(str(SITES / "seed-wsgi")).apps
    assert pool_settings_for(python).max_requests == 0


def test_a_python_app_runs_corrals_worker_under_its_interpreter_with_its_environment() -> None:
    config = load_site(str(SITES / "seed-wsgi"), environ={"PATH": "/usr/bin", "HOME": "/h"})
    (app,) = config.apps
    backend = backend_for(app, pool_settings_for(app, {"connections_per_worker": 4}))
    assert backend.plan is not None and backend.addresses == ()
    assert backend.plan.argv[:3] == (sys.executable, "-m", "corral.worker")
    assert backend.plan.argv[-4:-2] == ("--threads", "4")
    # What ps shows for it: its site, its name and its engine.
    title = f"corral worker {app.site}/{app.name} ({app.engine.name})"
    assert backend.plan.argv[-2:] == ("--title", title)
    assert backend.plan.cwd == app.current_directory
    env = backend.plan.env
    assert env["WSGI_APP"] == "wsgi.application"
    assert env["APPL_VIRTUAL_PATH"] == "/"
    assert env["INSTANCE_ID"] == "0"
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert entries[0] == app.physical_path
    assert entries[-1] == corral_package_parent()


def test_a_command_engine_runs_its_argv_and_a_service_starts_nothing(tmp_path: Path) -> None:
    config = load_site(str(SITES / "php-site"))
    (app,) = config.apps
    backend = backend_for(app, pool_settings_for(app))
    assert backend.plan is not None
    assert backend.plan.argv[0] == "php-cgi"
    assert backend.plan.env["PHP_FCGI_MAX_REQUESTS"] == "500"
    service = replace(
        app,
        engine=replace(
            app.engine, kind=EngineKind.SERVICE, transport=Transport.TCP_SERVICE, port_lower=9000
        ),
    )
    backend = backend_for(service, pool_settings_for(service))
    assert (backend.plan, backend.addresses) == (None, (("127.0.0.1", 9000),))


def test_a_service_with_several_servers_and_a_health_check(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        '[engines.tier]\ntransport = "tcp.service"\nprotocol = "http"\n'
        'servers = "127.0.0.1:8001, [::1]:8002 unix:/run/app.sock"\n'
        'health_check = "/readyz"\nslow_start = 4\nhealth_interval = 2\n'
        '[apps.a]\nengine = "tier"\n'
    )
    (app,) = load_site(str(tmp_path)).apps
    backend = backend_for(app, pool_settings_for(app))
    assert backend.addresses == (("127.0.0.1", 8001), ("::1", 8002), "/run/app.sock")
    assert backend.check is not None and backend.balance is not None
    assert (backend.balance.slow_start, backend.balance.retry_after) == (4.0, 2.0)
    (built,) = build_apps(load_site(str(tmp_path)), ServeOptions(path=tmp_path))
    snapshot = built.pool.snapshot()
    assert [server.address for server in snapshot.servers] == [
        "127.0.0.1:8001",
        "::1:8002",
        "unix:/run/app.sock",
    ]
    assert {server.state for server in snapshot.servers} == {"up"}


@pytest.mark.parametrize(
    ("line", "setting", "message"),
    [
        ('servers = "127.0.0.1"', "servers", "is not host:port"),
        ('servers = "a:1 b:99999"', "servers", "is not host:port"),
        ('servers = "unix:relative.sock"', "servers", "unix:/absolute/path"),
        ('health_check = "readyz"', "health_check", "an HTTP path starting with /"),
    ],
)
def test_a_bad_service_server_or_check_is_refused_with_the_engines_line(
    tmp_path: Path, line: str, setting: str, message: str
) -> None:
    (tmp_path / "corral.toml").write_text(
        f'[engines.tier]\ntransport = "tcp.service"\n{line}\n[apps.a]\nengine = "tier"\n'
    )
    with pytest.raises(Unsupported) as caught:
        build_apps(load_site(str(tmp_path)), ServeOptions(path=tmp_path))
    (error,) = caught.value.errors
    assert error.setting == setting
    assert str(error).startswith(f"{tmp_path / 'corral.toml'}:1: {setting}: ")
    assert message in str(error)


def test_what_is_not_implemented_is_refused_with_the_engines_line(tmp_path: Path) -> None:
    # Corral's Python worker takes its socket at fd 0: it cannot be given a port.
    (tmp_path / "corral.toml").write_text(
        '[engines.python]\ntransport = "tcp"\n[apps.a]\nengine = "python"\n'
    )
    config = load_site(str(tmp_path))
    with pytest.raises(Unsupported) as caught:
        build_apps(config, ServeOptions(path=tmp_path))
    (error,) = caught.value.errors
    assert error.setting == "transport"
    assert str(error).startswith(f"{tmp_path / 'corral.toml'}:1: transport: ")
    assert isinstance(caught.value, ConfigErrors)


def test_the_router_adapter_maps_sites_mounts_static_folders_and_ports() -> None:
    config = load(str(SITES / "multi" / "server.toml"))
    apps = build_apps(config, ServeOptions(path=SITES))
    routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
    router = ConfigRouter(config, routes)
    router.listening(41000, 8080)
    blog = router.match(b"www.main.test", b"/blog/x", 41000)
    assert blog is routes[("main", "/blog", "blog")]
    assert blog.script_name == b"/blog" and blog.static is None
    # The listener's actual port stands for the configured one; another port has no site.
    assert router.match(b"www.main.test", b"/blog/x", 41001) is None
    assert router.match(b"nobody.test", b"/", 41000) is None
    # Without port routing (--listen), every site answers on the one address.
    loose = ConfigRouter(config, routes, by_port=False)
    assert loose.match(b"x.other.test", b"/api", 12345) is routes[("other", "/api", "other")]


def test_file_handlers_get_a_route_per_script_and_static_files_their_folder() -> None:
    config = load_site(str(SITES / "php-site"))
    apps = build_apps(config, ServeOptions(path=SITES))
    routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
    router = ConfigRouter(config, routes)
    script = router.match(b"localhost", b"/index.php/extra")
    assert script is not None and script.script_params is not None
    params = dict(script.script_params)
    root = os.fsencode(apps[0].config.physical_path)
    assert params[b"SCRIPT_NAME"] == b"/index.php"
    assert params[b"SCRIPT_FILENAME"] == root + b"/index.php"
    assert params[b"PATH_INFO"] == b"/extra"
    assert b"SCRIPT_NAME" not in dict(script.params)  # sent once, by script_params
    static = router.match(b"localhost", b"/css/site.css")
    assert static is not None and static.static is not None
    assert static.static.root == apps[0].config.physical_path


def test_a_missing_script_is_never_sent_to_php(tmp_path: Path) -> None:
    """cgi.fix_pathinfo would run the longest existing prefix: an upload named avatar.jpg."""
    site = tmp_path / "site"
    shutil.copytree(SITES / "php-site", site)
    (site / "uploads").mkdir()
    (site / "uploads" / "avatar.jpg").write_text("<?php echo 'pwned';")
    config = load_site(str(site))
    apps = build_apps(config, ServeOptions(path=site))
    routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
    router = ConfigRouter(config, routes)
    for path in (b"/uploads/avatar.jpg/x.php", b"/nothere.php", b"/uploads/x.php/y"):
        route = router.match(b"localhost", path)
        assert route is not None and route.static is not None, path
    # Once the script exists it is PHP's (the static answer above was not remembered).
    (site / "nothere.php").write_text("<?php echo 'here';")
    created = router.match(b"localhost", b"/nothere.php")
    assert created is not None and created.static is None and created.script_params is not None


def test_a_plain_folder_is_one_python_application_at_the_root(tmp_path: Path) -> None:
    config = load_site(str(tmp_path), default_engine=PYTHON)
    (app,) = config.apps
    assert app.engine.kind is EngineKind.PYTHON_WORKER
    apps = build_apps(config, ServeOptions(path=tmp_path))
    router = ConfigRouter(config, {("default", "/", app.name): apps[0].route})
    assert router.match(None, b"/anything/at/all") is apps[0].route


def test_remembered_routes_never_hide_a_default_document_created_later(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text(
        '<configuration><system.webServer><handlers><add name="php" path="*.php" '
        'scriptProcessor="php.fastcgi" modules="HeliconZoo_x64" />'
        "</handlers></system.webServer></configuration>"
    )
    (tmp_path / "sub").mkdir()
    config = load_site(str(tmp_path))
    apps = build_apps(config, ServeOptions(path=tmp_path))
    routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
    router = ConfigRouter(config, routes)
    for _ in range(2):
        folder = router.match(b"localhost", b"/sub/")
        assert folder is not None and folder.static is not None
        assert router.match(b"localhost", b"/sub/a.css") is folder  # remembered
    (tmp_path / "sub" / "index.php").write_text("<?php echo 1;")
    found = router.match(b"localhost", b"/sub/")
    assert found is not None and found.script_params is not None
    assert dict(found.script_params)[b"SCRIPT_NAME"] == b"/sub/index.php"


def test_an_address_a_wildcard_covers_gets_no_socket_of_its_own() -> None:
    from corral.app import listen_plan

    assert listen_plan(
        [("127.0.0.1", 80), ("0.0.0.0", 80), ("127.0.0.1", 80), ("::1", 80), ("127.0.0.1", 81)]
    ) == [("0.0.0.0", 80), ("::1", 80), ("127.0.0.1", 81)]
    assert listen_plan([("::1", 8080), ("::", 8080), ("10.0.0.1", 8080)]) == [
        ("::", 8080),
        ("10.0.0.1", 8080),
    ]


def test_one_application_beside_a_static_mount_is_routed_normally(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "corral.toml").write_text('[apps.a]\nengine = "python"\n')
    (tmp_path / "server.toml").write_text(
        '[sites.s]\nbindings = ["127.0.0.1:8080:"]\n'
        '[sites.s.apps."/"]\nphysical_path = "www"\n'
        '[sites.s.apps."/app"]\nphysical_path = "app"\n'
    )
    config = load(str(tmp_path / "server.toml"))
    apps = build_apps(config, ServeOptions(path=tmp_path))
    router = ConfigRouter(config, {("s", "/app", "a"): apps[0].route}, by_port=False)
    assert router.match(b"x", b"/app/y") is apps[0].route
    static = router.match(b"x", b"/index.html")
    assert static is not None and static.static is not None


def test_health_and_scaling_settings_reach_the_pool(tmp_path: Path) -> None:
    """web.config spellings -> EngineConfig/AppConfig -> PoolSettings, once each."""
    (tmp_path / "applicationHost.config").write_text(
        """<configuration><system.webServer><heliconZooServer><engines>
        <add name="python.busy" fullPath="python" idleTimeout="45" threads="32"
             maxRequests="500" maxRequestsJitter="20" memoryReserve="128" memoryLimit="300"
             timeLimit="60" minInstances="0" maxInstances="4"/>
        </engines></heliconZooServer></system.webServer></configuration>"""
    )
    site = tmp_path / "site"
    site.mkdir()
    (site / "web.config").write_text(
        """<configuration><system.webServer>
        <heliconZoo><application name="app"><environmentVariables>
          <add name="WORKER_REQUEST_TIMEOUT" value="20"/>
          <add name="DEVELOPMENT_MODE" value="true"/>
        </environmentVariables></application></heliconZoo>
        <handlers><add name="app" scriptProcessor="python.busy" path="*" verb="*"
                  modules="HeliconZoo_x64"/></handlers>
        </system.webServer></configuration>"""
    )
    (tmp_path / "server.toml").write_text(
        f'[server]\napplication_host = "{tmp_path / "applicationHost.config"}"\n'
        f'[sites.main]\nbindings = ["127.0.0.1:8080:"]\n'
        f'[sites.main.apps."/"]\nphysical_path = "{site}"\n'
    )
    [app] = load(str(tmp_path / "server.toml")).apps
    assert app.development_mode is True
    settings = pool_settings_for(app)
    assert settings.idle_timeout == 45.0
    assert settings.connections_per_worker == 32  # threads
    assert (settings.max_requests, settings.max_requests_jitter) == (500, 0.2)
    assert settings.memory_reserve_mb == 128 and settings.memory_limit_mb == 300
    assert settings.time_limit == 3600.0  # minutes -> seconds
    assert settings.request_timeout == 20.0
    assert (settings.min_instances, settings.max_instances) == (0, 4)
    assert backend_for(app, settings).plan is not None
    assert "32" in backend_for(app, settings).plan.argv  # type: ignore[union-attr]
    # Defaults: idle 300 s, one thread, no request limit, a 64 MB reserve, no timeout.
    default = pool_settings_for(replace(app, engine=replace(app.engine, idle_timeout=0)))
    assert default.idle_timeout is None  # 0 = never stop idle workers


def test_php_max_requests_are_exact_without_jitter() -> None:
    config = load(str(SITES / "php-site"))
    [php] = [app for app in config.apps if app.max_requests]
    settings = pool_settings_for(php)
    assert settings.max_requests == php.max_requests
    assert settings.max_requests_jitter == 0.0


def test_each_built_in_engine_is_run_by_its_kind() -> None:
    expected = {
        "python": "python-worker",
        "fastcgi": "fd0-command",
        "http": "port-command",
        "nodejs.http": "port-command",
        "php.fastcgi": "fd0-command",
        "ruby.rack": "port-command",
        "ruby.puma": "port-command",
        "perl.psgi": "port-command",
        "perl.psgi.fastcgi": "fd0-command",
    }
    assert {engine.name: kind_for(engine).name for engine in BUILT_IN} == expected
    assert [kind.name for kind in KINDS] == [
        "service",
        "port-command",
        "python-worker",
        "fd0-command",
    ]
    # tcp.service runs nothing, whatever else the declaration says.
    python = next(engine for engine in BUILT_IN if engine.name == "python")
    assert kind_for(replace(python, transport=Transport.TCP_SERVICE)).name == "service"
    # Requests one worker takes at once: the Python worker's threads, 100 for HTTP backends,
    # the pool's default (None) for other FastCGI backends.
    assert kind_for(python).connections_per_worker(replace(python, threads=8)) == 8
    node = next(engine for engine in BUILT_IN if engine.name == "nodejs.http")
    assert kind_for(node).connections_per_worker(node) == 100
    php = next(engine for engine in BUILT_IN if engine.name == "php.fastcgi")
    assert kind_for(php).connections_per_worker(php) is None


def test_the_python_worker_is_refused_over_http_with_the_engines_line(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        '[engines.python]\nprotocol = "http"\n[apps.a]\nengine = "python"\n'
    )
    (app,) = load_site(str(tmp_path)).apps
    with pytest.raises(Unsupported) as caught:
        backend_for(app, pool_settings_for(app))
    (error,) = caught.value.errors
    assert str(error).startswith(f"{tmp_path / 'corral.toml'}:1: protocol: ")
    assert "speaks FastCGI, not HTTP" in str(error)
