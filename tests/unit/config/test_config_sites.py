"""Real-world web.config shapes (tests/fixtures/sites) load into the model Corral runs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from corral.config import ConfigErrors, load, load_server, load_site
from corral.config.expand import finish_argv, finish_env
from corral.config.model import DEFAULT_DOCUMENTS, EngineKind, Transport, WireProtocol
from corral.routing import Router

SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/zoo"}


def test_the_seed_example() -> None:
    root = SITES / "seed-wsgi"
    config = load_site(str(root), environ=ENV)
    (site,) = config.sites
    (app,) = site.apps
    assert app.name == "WSGI.project"  # the handler names minus their #suffix
    assert app.virtual_path == "/"
    assert app.engine.name == "python.2.7.wsgi"
    assert app.engine.kind is EngineKind.PYTHON_WORKER
    assert app.argv == (sys.executable, "-m", "corral.worker")
    assert app.interpreter == sys.executable
    assert app.wsgi_app == "wsgi.application"
    # %APPL_PHYSICAL_PATH%\python_modules\Lib\site-packages becomes a POSIX path inside the site;
    # %PYTHONPATH% (unset in the OS) adds nothing.
    assert app.pythonpath == (str(root), f"{root}/python_modules/Lib/site-packages")
    assert app.env_dict()["PYTHONPATH"] == os.pathsep.join(app.pythonpath)
    assert app.deploy_file is None  # DEPLOY_FILE="" means no deploy script
    assert app.error_log_dir == f"{root}/log"
    assert app.current_directory == str(root)
    # One handler: the #x64 of the #x86/#x64 pair; its line is the one in the file.
    (handler,) = app.handlers
    assert (handler.name, handler.path, handler.location and handler.location.line) == (
        "WSGI.project#x64",
        "*",
        17,
    )
    assert app.location is not None and app.location.line == 5
    assert any("python.2.7.wsgi" in n and sys.executable in n for n in app.notices)
    (mount,) = site.mounts
    assert mount.static.hidden_dirs == ("log",)
    assert ".py" in mount.static.source_suffixes
    assert app.not_in_effect == ()  # ERROR_LOG_DIR is in effect


def test_an_os_pythonpath_is_kept_after_the_apps_entries() -> None:
    root = SITES / "seed-wsgi"
    config = load_site(str(root), environ={**ENV, "PYTHONPATH": "/opt/lib"})
    (app,) = config.apps
    assert app.pythonpath == (str(root), f"{root}/python_modules/Lib/site-packages", "/opt/lib")


def test_django_project_early_style_and_static_folder() -> None:
    root = SITES / "django-project"
    config = load_site(str(root), environ=ENV)
    (site,) = config.sites
    # django.project.x86/x64 are two applications; the 64-bit handler is the one used.
    (app,) = site.apps
    assert app.name == "django.project.x64"
    assert app.engine.name == "python.2.7.pipe"
    env = app.env_dict()
    assert env["DJANGO_SETTINGS_MODULE"] == "mysite.settings"
    assert env["django.root"] == "/"
    assert app.worker_request_timeout == 1000
    assert app.deploy_file == f"{root}/deploy.py"
    assert app.deploy_log == f"{root}/log/zoo-deploy.log"
    assert any("django.project.x86" in n and "no handler" in n for n in config.notices)
    router = Router(config)
    assert router.match("any.host", "/").app is app  # type: ignore[union-attr]
    static = router.match("any.host", "/static/css/site.css")
    assert static is not None and static.app is None
    (mount,) = site.mounts
    assert mount.static.hidden_files == ("deploy.py", "log/zoo-deploy.log")


def test_flask_in_a_virtualenv(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path)) / "flask"
    shutil.copytree(SITES / "flask-venv", root)
    (root / "venv" / "bin").mkdir()
    (root / "venv" / "bin" / "python").symlink_to(sys.executable)
    config = load_site(str(root), environ=ENV)
    (app,) = config.apps
    env = app.env_dict()
    assert env["VIRTUAL_ENV"] == f"{root}/venv"
    # PATH=%APPL_PHYSICAL_PATH%\venv\Scripts;%PATH% prepends to the OS PATH, and a POSIX
    # virtualenv's Scripts folder is bin/.
    assert env["PATH"] == f"{root}/venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert app.pythonpath == (
        f"{root}/venv/lib/site-packages",
        f"{root}/venv/lib",
        f"{root}/app",
    )
    # The worker runs under the virtualenv's own interpreter.
    assert app.interpreter == f"{root}/venv/bin/python"
    assert app.argv[0] == f"{root}/venv/bin/python"
    assert app.wsgi_app == "hello.app"
    assert app.watch_file_changes_mask == ("*.py",)
    assert app.console_url == "console"
    assert app.error_log_dir == f"{root}/logs"
    # WATCH_FILE_CHANGES_MASK, ERROR_LOG_DIR and the web console are in effect.
    assert app.not_in_effect == ()
    assert app.console_allowed and app.console_idle_timeout == 900.0


def test_a_virtualenv_without_bin_python_is_an_error() -> None:
    """Issue 10, item 18: an error naming the variable's line, no longer a notice and a silent
    fall-back to Corral's interpreter (which ran the app without its virtualenv's packages)."""
    folder = SITES / "flask-venv"
    with pytest.raises(ConfigErrors) as caught:
        load_site(str(folder), environ=ENV)
    assert [str(error) for error in caught.value.errors] == [
        f"{folder}/web.config:9: VIRTUAL_ENV: {folder}/venv has no bin/python (a virtualenv "
        "made on Windows has Scripts\\python.exe instead: make one here with python3 -m venv)"
    ]


def test_static_subfolders_remove_clear_or_disable_the_handlers() -> None:
    root = SITES / "static-subfolder"
    config = load_site(str(root), environ=ENV)
    router = Router(config)
    (app,) = config.apps
    assert app.engine.name == "python.3.4.wsgi"
    assert app.wsgi_app == "shop:application"

    def target(path: str) -> str | None:
        route = router.match("shop.test", path)
        assert route is not None
        return None if route.app is None else route.app.name

    assert target("/") == "shop"
    assert target("/cart/checkout") == "shop"
    assert target("/static/app.js") is None  # <remove name="shop#x86"/>, <remove name="shop#x64"/>
    assert target("/static") is None
    assert target("/media/readme.txt") is None  # <clear/>
    assert target("/assets/site.css") is None  # Zoo 4: an empty .zoo in a sub-folder
    assert target("/staticky") == "shop"  # segment boundary


def test_php_site_maps_only_php_files() -> None:
    root = SITES / "php-site"
    config = load_site(str(root), environ=ENV)
    (app,) = config.apps
    assert app.engine.name == "php.5.4.pipe"
    assert app.engine.protocol is WireProtocol.FASTCGI_PHP
    # PHP_INI: php-cgi runs with -c the application's php.ini.
    assert app.argv == ("php-cgi", "-c", f"{root}/php.ini")
    assert app.max_requests == 500  # PHP_FCGI_MAX_REQUESTS: the pool retires workers after
    env = app.env_dict()
    assert env["PHP_INI"] == f"{root}/php.ini"
    assert env["PHP_FCGI_MAX_REQUESTS"] == "500"  # the application overrides the engine
    assert env["PHP_FCGI_CHILDREN"] == "0"
    router = Router(config)
    assert router.match(None, "/index.php").app is app  # type: ignore[union-attr]
    assert router.match(None, "/INDEX.PHP").app is app  # type: ignore[union-attr]
    assert router.match(None, "/css/site.css").app is None  # type: ignore[union-attr]
    assert router.match(None, "/about.html").app is None  # type: ignore[union-attr]
    (mount,) = config.sites[0].mounts
    assert ".php" in mount.static.source_suffixes
    assert mount.static.hidden_files == ("php.ini",)
    # <defaultDocument><files><add value="index.php"/>: already the first default document.
    assert mount.static.default_documents == DEFAULT_DOCUMENTS
    assert not any("defaultDocument" in item.setting for item in config.not_in_effect)


def test_application_host_engines_user_engines_and_switchboard() -> None:
    folder = SITES / "apphost"
    config = load_server(str(folder / "server.toml"), environ=ENV)
    names = {site.name for site in config.sites}
    assert names == {"Default Web Site", "Restricted Site"}
    python = config.engine("python.2.7.pipe")
    # <engines> < <userEngines> (replaces) < TOML [engines] (amends).
    assert python.origin == "toml"
    assert python.display_name == "Python via Corral (TOML)"
    assert (python.min_instances, python.max_instances) == (1, 2)
    assert (python.time_limit, python.memory_limit, python.graceful_shutdown_timeout) == (
        60,
        512,
        30,
    )
    assert dict((v.name, v.value) for v in python.env)["ENGINE_MARK"] == "from-userEngines"
    assert python.kind is EngineKind.PYTHON_WORKER
    node = config.engine("nodejs.http")
    assert node.origin == "engines"
    assert (node.transport, node.protocol) == (Transport.TCP, WireProtocol.HTTP)
    assert (node.port_lower, node.port_upper) == (49152, 65535)
    php52 = config.engine("php.5.2.pipe")
    assert php52.origin == "userEngines"
    assert php52.arguments == '-c "%PHP_INI%"'
    restricted = next(s for s in config.sites if s.name == "Restricted Site")
    assert dict(restricted.switchboard) == {
        "*": False,
        "console": False,  # (from the server-wide <switchboard>)
        "python.2.7.pipe": True,
        "python.2.7.wsgi": True,
    }
    django = next(a for a in config.apps if a.virtual_path == "/django")
    assert django.engine.name == "python.2.7.pipe"
    assert django.env_dict()["ENGINE_MARK"] == "from-userEngines"
    assert django.env_dict()["django.root"] == "/django"
    assert django.module_vars == (
        ("APPL_PHYSICAL_PATH", str(SITES / "django-project")),
        ("APPL_PHYSICAL_SHORT_PATH", str(SITES / "django-project")),
        ("APPL_VIRTUAL_PATH", "/django"),
        ("APPL_ID", "django"),
    )
    php = next(a for a in config.apps if a.name == "php.project")
    # c:\php54\php-cgi.exe runs as php-cgi from PATH, with the site's PHP_INI.
    assert php.argv == ("php-cgi", "-c", str(SITES / "php-site" / "php.ini"))
    assert any("php-cgi" in n for n in php.notices)
    not_in_effect = {item.setting for item in config.not_in_effect}
    assert "engine python.2.7.pipe: time_limit" not in not_in_effect  # in effect now
    # The switchboard's console entry is in effect: every app of these sites is refused one.
    assert "switchboard console (web console)" not in not_in_effect
    assert not any(app.console_allowed for app in config.apps)


def test_a_command_engine_from_application_host_expands_its_arguments(tmp_path: Path) -> None:
    site = Path(os.path.realpath(tmp_path)) / "site"
    site.mkdir()
    (site / "web.config").write_text(
        "<configuration><system.webServer><handlers>"
        '<add name="old#x64" scriptProcessor="php.5.2.pipe" path="*.php" modules="HeliconZoo_x64"/>'
        "</handlers></system.webServer></configuration>"
    )
    shutil.copy(SITES / "apphost" / "applicationHost.config", tmp_path)
    (tmp_path / "server.toml").write_text(
        '[server]\napplication_host = "applicationHost.config"\n'
        '[sites.s]\nbindings = ["127.0.0.1:8080:"]\n[sites.s.apps."/"]\nphysical_path = "site"\n'
    )
    config = load_server(str(tmp_path / "server.toml"), environ=ENV)
    (app,) = config.apps
    # -c "%PHP_INI%" with PHP_INI=%APPL_PHYSICAL_PATH%\php.ini from the engine's variables
    # (given once: Corral adds -c only when the arguments do not).
    assert app.argv == ("php-cgi", "-c", f"{site}/php.ini")
    assert app.max_requests == 100000
    assert app.error_log_dir is None  # ERROR_LOG_DIR=NULL


def test_two_sites_by_host_and_three_apps_at_virtual_paths_without_leaks() -> None:
    config = load(str(SITES / "multi" / "server.toml"), environ={**ENV, "SHARED": "from-os"})
    router = Router(config)
    seen = {}
    for host, path in (
        ("main.test", "/x"),
        ("www.main.test:8080", "/blog/post/1"),
        ("api.other.test", "/api/v1"),
    ):
        route = router.match(host, path)
        assert route is not None and route.app is not None
        env = finish_env(
            route.app.env,
            route.app.module_vars,
            port=None,
            host=None,
            instance_id=0,
            base={**ENV, "SHARED": "from-os"},
        )
        seen[route.app.name] = (route.script_name, route.path_info, env)
    assert seen["main"][:2] == ("", "/x")
    assert seen["blog"][:2] == ("/blog", "/post/1")
    assert seen["other"][:2] == ("/api", "/v1")
    marks = {"main": "ONLY_MAIN", "blog": "ONLY_BLOG", "other": "ONLY_OTHER"}
    for name, (_, _, env) in seen.items():
        assert env["APP_MARK"] == name
        assert env[marks[name]] == "1"
        for other_name, other_mark in marks.items():
            if other_name != name:
                assert other_mark not in env, f"{other_mark} leaked into {name}"
        virtual = {"main": "/", "blog": "/blog", "other": "/api"}[name]
        assert env["SHARED"] == f"{name}:{virtual}"
        assert env["APPL_VIRTUAL_PATH"] == virtual
    assert router.match("other.test", "/") is None  # no application at / on that site
    assert router.match("unknown.test", "/") is None  # no site answers that host
    assert config.listen_addresses() == (("127.0.0.1", 8080),)


@pytest.mark.parametrize(
    "name", ["seed-wsgi", "django-project", "flask-venv", "static-subfolder", "php-site"]
)
def test_every_site_fixture_loads_through_load(name: str, tmp_path: Path) -> None:
    folder = SITES / name
    if name == "flask-venv":  # its virtualenv needs an interpreter (none is committed)
        folder = Path(os.path.realpath(tmp_path)) / name
        shutil.copytree(SITES / name, folder)
        (folder / "venv" / "bin").mkdir()
        (folder / "venv" / "bin" / "python").symlink_to(sys.executable)
    config = load(str(folder))
    assert len(config.apps) == 1
    assert config.sources[0] == str(folder / "web.config")


def test_an_application_nested_in_anothers_folder_owns_its_web_config(tmp_path: Path) -> None:
    root = tmp_path / "www"
    shutil.copytree(SITES / "seed-wsgi", root)
    shutil.copytree(SITES / "static-subfolder", root / "shop")
    (tmp_path / "server.toml").write_text(
        '[sites.s]\nbindings = ["127.0.0.1:8080:"]\n'
        '[sites.s.apps."/"]\nphysical_path = "www"\n'
        '[sites.s.apps."/shop"]\nphysical_path = "www/shop"\n'
    )
    config = load_server(str(tmp_path / "server.toml"), environ=ENV)
    assert sorted((a.virtual_path, a.name) for a in config.apps) == [
        ("/", "WSGI.project"),
        ("/shop", "shop"),
    ]
    root_mount = next(m for m in config.sites[0].mounts if m.virtual_path == "/")
    assert [scope.folder for scope in root_mount.scopes] == [""]
    router = Router(config)
    assert router.match(None, "/shop/static/app.js").app is None  # type: ignore[union-attr]
    assert router.match(None, "/shop/cart").app.name == "shop"  # type: ignore[union-attr]


def test_an_application_host_file_alone_points_to_the_server_toml() -> None:
    path = SITES / "apphost" / "applicationHost.config"
    with pytest.raises(ConfigErrors) as caught:
        load(str(path))
    assert str(caught.value) == (
        f"{path}: file: an applicationHost.config is read through a server TOML: "
        '[server] application_host = "applicationHost.config"'
    )


def test_module_variables_cannot_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text(
        "<configuration><system.webServer><heliconZoo><application name='a'>"
        "<environmentVariables><add name='APPL_PHYSICAL_PATH' value='/elsewhere'/>"
        "<add name='X' value='%APPL_PHYSICAL_PATH%'/></environmentVariables></application>"
        "</heliconZoo><handlers><add name='a' scriptProcessor='python' path='*' "
        "modules='HeliconZoo_x64'/></handlers></system.webServer></configuration>"
    )
    config = load_site(str(tmp_path), environ={})
    (app,) = config.apps
    assert app.env_dict() == {"X": os.path.realpath(tmp_path)}
    assert any("APPL_PHYSICAL_PATH is set by Corral" in notice for notice in config.notices)


def test_inherited_handlers_are_listed_once_per_application(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "web.config").write_text(
        "<configuration><system.webServer><handlers>"
        "<add name='app#x64' scriptProcessor='python' path='*' modules='HeliconZoo_x64'/>"
        "</handlers></system.webServer></configuration>"
    )
    (tmp_path / "a" / "web.config").write_text(
        "<configuration><system.webServer><handlers>"
        "<add name='app#php' scriptProcessor='python' path='*.php' modules='HeliconZoo_x64'/>"
        "</handlers></system.webServer></configuration>"
    )
    (tmp_path / "a" / "b" / "web.config").write_text(
        "<configuration><system.webServer><handlers><remove name='app#x64'/>"
        "</handlers></system.webServer></configuration>"
    )
    config = load_site(str(tmp_path), environ={})
    (app,) = config.apps
    assert [(h.name, h.path) for h in app.handlers] == [("app#x64", "*"), ("app#php", "*.php")]
    router = Router(config)
    assert router.match(None, "/a/b/x.txt").app is None  # type: ignore[union-attr]
    assert router.match(None, "/a/b/x.php").handler.path == "*.php"  # type: ignore[union-attr]
    assert router.match(None, "/a/x.txt").handler.path == "*"  # type: ignore[union-attr]


def test_an_unreadable_config_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "web.config").symlink_to(tmp_path / "gone")  # a dangling link
    with pytest.raises(ConfigErrors) as caught:
        load_site(str(tmp_path), environ={})
    path = Path(os.path.realpath(tmp_path)) / "web.config"
    assert str(caught.value) == f"{path}: file: cannot read: No such file or directory"


def test_a_missing_server_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(tmp_path / "server.toml"), environ={})
    assert str(caught.value) == (
        f"{tmp_path / 'server.toml'}: file: cannot read: No such file or directory"
    )


@pytest.mark.parametrize(
    ("engine", "argv"),
    [
        (
            "ruby.rack",
            [
                "rackup",
                "{root}/config.ru",
                "--host",
                "127.0.0.1",
                "--port",
                "50001",
                "--env",
                "production",
            ],
        ),
        (
            "ruby.1.9.pipe",
            [
                "rackup",
                "{root}/config.ru",
                "--host",
                "127.0.0.1",
                "--port",
                "50001",
                "--env",
                "production",
            ],
        ),
        (
            "ruby.puma",
            [
                "puma",
                "--bind",
                "tcp://127.0.0.1:50001",
                "--environment",
                "production",
                "{root}/config.ru",
            ],
        ),
        (
            "perl.psgi",
            [
                "plackup",
                "--host",
                "127.0.0.1",
                "--port",
                "50001",
                "--env",
                "deployment",
                "{root}/app.psgi",
            ],
        ),
        (
            "perl.psgi.fastcgi",
            ["plackup", "-s", "FCGI", "--manager=", "--env", "deployment", "{root}/app.psgi"],
        ),
    ],
)
def test_ruby_and_perl_engines_run_their_servers(
    tmp_path: Path, engine: str, argv: list[str]
) -> None:
    root = Path(os.path.realpath(tmp_path))
    (root / "corral.toml").write_text(f'[apps.app]\nengine = "{engine}"\n')
    (app,) = load_site(str(root), environ=ENV).apps
    assert app.max_requests == 0
    command = finish_argv(app.argv, port=50001, host="127.0.0.1", instance_id=0)
    assert command == [arg.format(root=root) for arg in argv]


def test_a_php_fpm_service_keeps_php_sources_from_being_served(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        '[engines.php-fpm]\ntransport = "tcp.service"\nprotocol = "fastcgi-php"\n'
        "port_lower = 9000\n"
        '[apps.php]\nengine = "php-fpm"\npaths = ["*.php"]\n'
    )
    config = load_site(str(tmp_path), environ=ENV)
    (app,) = config.apps
    assert app.engine.kind is EngineKind.SERVICE and app.argv == ()
    assert app.max_requests == 0  # php-fpm recycles its own children
    (mount,) = config.sites[0].mounts
    assert mount.static.source_suffixes == (".php", ".phtml", ".inc")


def test_default_documents_from_the_mounts_web_config(tmp_path: Path) -> None:
    site = Path(os.path.realpath(tmp_path))
    (site / "web.config").write_text(
        "<configuration><system.webServer>"
        '<handlers><add name="php#x64" scriptProcessor="php.fastcgi" path="*.php" '
        'modules="HeliconZoo_x64"/></handlers>'
        "<defaultDocument><files><clear/>"
        '<add value="home.php"/><add value="start.html"/><add value="HOME.php"/>'
        "</files></defaultDocument>"
        "</system.webServer>"
        '<location path="sub"><system.webServer><defaultDocument enabled="false"/>'
        "</system.webServer></location></configuration>"
    )
    for name in ("home.php", "start.html", "index.php"):
        (site / name).write_text("x")
    config = load_site(str(site), environ=ENV)
    (mount,) = config.sites[0].mounts
    assert mount.static.default_documents == ("home.php", "start.html")
    route = Router(config).match(None, "/")
    assert route is not None and route.script == "/home.php"  # not index.php: cleared
    assert any("sub-folder 'sub'" in item.setting for item in config.not_in_effect)
    (site / "home.php").unlink()
    route = Router(config).match(None, "/")
    assert route is not None and route.app is None  # start.html is the static folder's
    from corral import static

    found = static.resolve(mount.static, "/")
    assert isinstance(found, static.StaticFile) and found.path == f"{site}/start.html"


def test_default_documents_disabled_and_bad_values(tmp_path: Path) -> None:
    site = Path(os.path.realpath(tmp_path))
    (site / "web.config").write_text(
        '<configuration><system.webServer><defaultDocument enabled="false">'
        '<files><add value="index.html"/></files></defaultDocument>'
        "</system.webServer></configuration>"
    )
    (site / "index.html").write_text("x")
    config = load_site(str(site), environ=ENV)
    (mount,) = config.sites[0].mounts
    assert mount.static.default_documents == ()
    from corral import static

    assert static.resolve(mount.static, "/") == static.Denied(403, "directory listing denied")
    (site / "web.config").write_text(
        "<configuration><system.webServer><defaultDocument>"
        '<files><add value="../etc/passwd"/></files></defaultDocument>'
        "</system.webServer></configuration>"
    )
    with pytest.raises(ConfigErrors, match="needs a file name"):
        load_site(str(site), environ=ENV)
