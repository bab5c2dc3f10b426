"""Routing: Host, then the longest virtual path on segment boundaries, then the handlers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.config import load, load_site
from corral.config.builtin_engines import built_in
from corral.config.model import (
    AppConfig,
    Binding,
    Handler,
    HandlerScope,
    Mount,
    ServerConfig,
    SiteConfig,
    StaticPolicy,
)
from corral.routing import Router, normalize_host

SITES = Path(__file__).resolve().parents[1] / "fixtures" / "sites"
PYTHON = built_in("python")
assert PYTHON is not None


def app(name: str, virtual_path: str, site: str = "s") -> AppConfig:
    return AppConfig(
        name=name,
        site=site,
        virtual_path=virtual_path,
        physical_path=f"/srv/{name}",
        engine=PYTHON,  # type: ignore[arg-type]
        handlers=(),
        env=(),
        module_vars=(),
        argv=("python",),
        current_directory=f"/srv/{name}",
    )


def mount(virtual_path: str, *scopes: HandlerScope) -> Mount:
    return Mount(
        virtual_path, f"/srv{virtual_path}", scopes, (), StaticPolicy(f"/srv{virtual_path}")
    )


def handler(app_name: str, path: str = "*") -> Handler:
    return Handler(f"{app_name}#x64", app_name, path, "python")


def site(name: str, bindings: tuple[Binding, ...], mounts_apps: list[tuple[Mount, AppConfig]]):
    return SiteConfig(
        name=name,
        bindings=bindings,
        mounts=tuple(m for m, _ in mounts_apps),
        apps=tuple(replace(a, site=name) for _, a in mounts_apps),
    )


@pytest.fixture
def router() -> Router:
    main = site(
        "main",
        (Binding("127.0.0.1", 8080, ("example.test", "www.example.test")),),
        [
            (mount("/", HandlerScope("", (handler("root"),))), app("root", "/")),
            (
                mount(
                    "/blog",
                    HandlerScope("", (handler("blog"),)),
                    HandlerScope("static", ()),
                    HandlerScope("static/dyn", (handler("blog"),)),
                ),
                app("blog", "/blog"),
            ),
            (
                mount("/blog/admin", HandlerScope("", (handler("admin"),))),
                app("admin", "/blog/admin"),
            ),
            (
                mount("/php", HandlerScope("", (handler("php", "*.php"),))),
                app("php", "/php"),
            ),
        ],
    )
    wildcard = site(
        "wild",
        (Binding("127.0.0.1", 8080, ("*.apps.test",)),),
        [(mount("/", HandlerScope("", (handler("w"),))), app("w", "/"))],
    )
    fallback = site(
        "fallback",
        (Binding("127.0.0.1", 8080, ()), Binding("127.0.0.1", 9090, ("example.test",))),
        [(mount("/", HandlerScope("", (handler("fb"),))), app("fb", "/"))],
    )
    return Router(ServerConfig(sites=(main, wildcard, fallback), engines=()))


def where(router: Router, host: str | bytes | None, path: str | bytes, **kw: int):
    route = router.match(host, path, **kw)
    if route is None:
        return None
    return (
        route.site.name,
        route.app.name if route.app else None,
        route.script_name,
        route.path_info,
    )


def test_longest_virtual_path_on_segment_boundaries(router: Router) -> None:
    assert where(router, "example.test", "/") == ("main", "root", "", "/")
    assert where(router, "example.test", "/blog") == ("main", "blog", "/blog", "")
    assert where(router, "example.test", "/blog/") == ("main", "blog", "/blog", "/")
    assert where(router, "example.test", "/blog/2024/post") == (
        "main",
        "blog",
        "/blog",
        "/2024/post",
    )
    assert where(router, "example.test", "/blogger") == ("main", "root", "", "/blogger")
    assert where(router, "example.test", "/blog/admin/users") == (
        "main",
        "admin",
        "/blog/admin",
        "/users",
    )
    assert where(router, "example.test", "/blog/administrator") == (
        "main",
        "blog",
        "/blog",
        "/administrator",
    )


def test_host_matching(router: Router) -> None:
    assert where(router, "EXAMPLE.test:8080", "/")[0] == "main"  # type: ignore[index]
    assert where(router, "www.example.test.", "/")[0] == "main"  # type: ignore[index]
    assert where(router, b"example.test", b"/")[0] == "main"  # type: ignore[index]
    assert where(router, "a.apps.test", "/")[0] == "wild"  # type: ignore[index]
    assert where(router, "b.a.apps.test", "/")[0] == "wild"  # type: ignore[index]
    assert where(router, "apps.test", "/")[0] == "fallback"  # type: ignore[index]
    assert where(router, None, "/")[0] == "fallback"  # type: ignore[index]
    assert where(router, "[::1]:8080", "/")[0] == "fallback"  # type: ignore[index]
    # With the local port: only the bindings on that port count.
    assert where(router, "example.test", "/", port=9090)[0] == "fallback"  # type: ignore[index]
    assert where(router, "nobody.test", "/", port=9090) is None
    assert where(router, "nobody.test", "/", port=7000) is None


def test_handler_scopes_and_patterns(router: Router) -> None:
    assert where(router, "example.test", "/blog/static/site.css") == (
        "main",
        None,
        "/blog",
        "/static/site.css",
    )
    assert where(router, "example.test", "/blog/static/dyn/x") == (
        "main",
        "blog",
        "/blog",
        "/static/dyn/x",
    )
    assert where(router, "example.test", "/php/index.php")[1] == "php"  # type: ignore[index]
    assert where(router, "example.test", "/php/INDEX.PHP")[1] == "php"  # type: ignore[index]
    assert where(router, "example.test", "/php/style.css")[1] is None  # type: ignore[index]
    assert where(router, "example.test", "/php/")[1] is None  # type: ignore[index]


def test_bytes_paths_keep_their_bytes(router: Router) -> None:
    route = router.match(b"example.test", "/blog/caf\u00e9".encode())
    assert route is not None
    assert route.script_name_bytes == b"/blog"
    assert route.path_info_bytes == "/caf\u00e9".encode()
    text_route = router.match("example.test", "/blog/caf\u00e9")
    assert text_route is not None and text_route.path_info_bytes == route.path_info_bytes


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com:80", "example.com"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_host(raw: str | None, host: str) -> None:
    assert normalize_host(raw) == host


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30), st.binary(max_size=30)), st.binary(max_size=60))
def test_match_never_raises_and_splits_the_path(host: str | bytes | None, path: bytes) -> None:
    config = load(str(SITES / "multi" / "server.toml"), environ={})
    route = Router(config).match(host, b"/" + path)
    if route is not None:
        assert route.script_name_bytes + route.path_info_bytes == b"/" + path


def test_a_folder_without_configuration_can_default_to_an_engine(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text("")
    static = load_site(str(tmp_path), environ={})
    assert static.apps == () and Router(static).match(None, "/").app is None  # type: ignore[union-attr]
    served = load_site(str(tmp_path), environ={}, default_engine="python")
    (app,) = served.apps
    assert (app.name, app.engine.name, app.virtual_path) == ("default", "python", "/")
    assert Router(served).match(None, "/x").app is app  # type: ignore[union-attr]


def test_patterns_with_a_slash_match_the_path_below_the_mount(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        '[apps.api]\nengine = "python"\npaths = ["api/*", "*.py"]\n'
    )
    router = Router(load_site(str(tmp_path), environ={}))
    assert router.match(None, "/api/v1/items").app.name == "api"  # type: ignore[union-attr]
    assert router.match(None, "/API/x").app.name == "api"  # type: ignore[union-attr]
    assert router.match(None, "/x/run.py").app.name == "api"  # type: ignore[union-attr]
    assert router.match(None, "/apis").app is None  # type: ignore[union-attr]
    assert router.match(None, "/index.html").app is None  # type: ignore[union-attr]


def test_a_file_handler_splits_the_script_from_its_path_info() -> None:
    router = Router(load_site(str(SITES / "php-site"), environ={}))
    plain = router.match(None, "/form.php")
    assert plain is not None and plain.app is not None
    assert (plain.script, plain.script_path_info) == ("/form.php", "")
    split = router.match(None, b"/index.php/extra/path")
    assert split is not None and split.app is not None
    assert (split.script_name, split.path_info) == ("", "/index.php/extra/path")
    assert (split.script_bytes, split.script_path_info_bytes) == (b"/index.php", b"/extra/path")
    # The first matching segment from the left ends the script; case-insensitive as IIS.
    first = router.match(None, "/a/B.PHP/c.php/d")
    assert first is not None and (first.script, first.script_path_info) == ("/a/B.PHP", "/c.php/d")
    trailing = router.match(None, "/form.php/")
    assert trailing is not None
    assert (trailing.script, trailing.script_path_info) == ("/form.php", "/")
    # Not a script: a segment that only contains the suffix, a static file.
    for path in ("/php/x", "/about.html", "/x.phpx/y", "/css/site.css"):
        route = router.match(None, path)
        assert route is not None and route.app is None and route.script == "", path


def test_a_whole_application_handler_has_no_script() -> None:
    route = Router(load_site(str(SITES / "seed-wsgi"), environ={})).match(None, "/a.php/x")
    assert route is not None and route.app is not None
    assert (route.script, route.script_path_info, route.path_info) == ("", "", "/a.php/x")


def test_default_documents_route_a_folder_url_to_its_index_php() -> None:
    router = Router(load_site(str(SITES / "php-site"), environ={}))
    root = router.match(None, "/")
    assert root is not None and root.app is not None
    assert (root.path_info, root.script, root.script_path_info) == ("/", "/index.php", "")
    # index.php comes before index.html.
    docs = router.match(None, "/docs/")
    assert docs is not None and docs.app is not None and docs.script == "/docs/index.php"
    # A folder with only index.html is static's to serve; without the slash static redirects.
    for path in ("/static-only/", "/docs", "/css/"):
        route = router.match(None, path)
        assert route is not None and route.app is None, path


def test_default_documents_look_at_the_file_system_only_for_folder_urls(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text('[apps.php]\nengine = "php.fastcgi"\npaths = ["*.php"]\n')
    seen: list[str] = []

    def is_file(path: str) -> bool:
        seen.append(path)
        return path.endswith("/sub/index.php")

    router = Router(load_site(str(tmp_path), environ={}), is_file=is_file)
    assert router.match(None, "/sub/").script == "/sub/index.php"  # type: ignore[union-attr]
    assert router.match(None, "/other/").app is None  # type: ignore[union-attr]
    assert router.match(None, "/file.txt").app is None  # type: ignore[union-attr]
    assert seen == [f"{tmp_path}/sub/index.php", f"{tmp_path}/other/index.php"]
