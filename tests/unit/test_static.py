"""Static files: safe resolution (never outside the folder, never config, logs or sources) and
the pure HTTP helpers (ETag, dates, Range, conditional requests, MIME types)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.config import load_site
from corral.config.model import StaticPolicy
from corral.static import (
    ByteRange,
    Denied,
    Redirect,
    StaticFile,
    Unsatisfiable,
    content_type,
    etag,
    evaluate,
    http_date,
    parse_http_date,
    parse_range,
    plan,
    resolve,
)

SITES = Path(__file__).resolve().parents[1] / "fixtures" / "sites"


@pytest.fixture
def site(tmp_path: Path) -> StaticPolicy:
    tmp_path = Path(os.path.realpath(tmp_path))
    root = tmp_path / "site"
    (root / "static" / "img").mkdir(parents=True)
    (root / "static" / "app.js").write_text("js")
    (root / "static" / "img" / "logo.png").write_bytes(b"\x89PNG")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "empty").mkdir()
    (root / "web.config").write_text("<configuration/>")
    (root / "corral.toml").write_text("")
    (root / ".env").write_text("SECRET=1")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    (root / "sub").mkdir()
    (root / "sub" / ".zoo").write_text("")
    (root / "sub" / "web.config").write_text("<configuration/>")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (root / "app.py").write_text("print()")
    (root / "log").mkdir()
    (root / "log" / "error.log").write_text("Traceback")
    (root / "deploy.py").write_text("")
    (root / "php.ini").write_text("x=1")
    (tmp_path / "outside.txt").write_text("outside")
    (root / "escape.txt").symlink_to(tmp_path / "outside.txt")
    (root / "escape-dir").symlink_to(tmp_path)
    (root / "alias-config").symlink_to(root / "web.config")
    (root / "inside-link.js").symlink_to(root / "static" / "app.js")
    return StaticPolicy(
        root=str(root),
        hidden_dirs=("log",),
        source_suffixes=(".py", ".pyc"),
        hidden_files=("php.ini",),
    )


def test_a_file_is_found_with_its_validators(site: StaticPolicy) -> None:
    found = resolve(site, "/static/app.js")
    assert isinstance(found, StaticFile)
    assert found.path == os.path.join(site.root, "static", "app.js")
    assert found.size == 2
    assert found.content_type == "text/javascript; charset=utf-8"
    st_ = os.stat(found.path)
    assert found.etag == etag(st_.st_size, st_.st_mtime_ns)
    assert isinstance(resolve(site, b"/static/img/logo.png"), StaticFile)
    assert isinstance(resolve(site, "/inside-link.js"), StaticFile)


def test_folders_redirect_then_serve_their_index(site: StaticPolicy) -> None:
    assert resolve(site, "/docs") == Redirect("/docs/")
    found = resolve(site, "/docs/")
    assert isinstance(found, StaticFile) and found.path.endswith("docs/index.html")
    assert resolve(site, "/empty/") == Denied(403, "directory listing denied")
    assert resolve(site, "/missing.txt") == Denied(404, "not found")


@pytest.mark.parametrize(
    "path",
    [
        "/../outside.txt",  # traversal
        "/static/../../outside.txt",
        "/static/%2e%2e/%2e%2e/outside.txt",  # double-encoded: still encoded after one decode
        "/%252e%252e/outside.txt",
        "/static/%2fetc%2fpasswd",
        "/..\\outside.txt",  # backslash
        "/static\\..\\web.config",
        "/escape.txt",  # symlink leading out
        "/escape-dir/outside.txt",
        "/alias-config",  # symlink to a config file
        "/web.config",
        "/WEB.CONFIG",
        "/Web.Config.",
        "/sub/web.config",
        "/corral.toml",
        "/.env",
        "/.git/config",
        "/sub/.zoo",
        "/__pycache__/app.cpython-311.pyc",
        "/app.py",
        "/APP.PY",
        "/deploy.py",
        "/log/error.log",
        "/LOG/error.log",
        "/log/",
        "/php.ini",
        "/static/app.js\x00.png",
        "/static/\x1b.js",
    ],
)
def test_never_the_file(site: StaticPolicy, path: str) -> None:
    result = resolve(site, path)
    assert isinstance(result, Denied)
    assert result.status in (403, 404)


def test_paths_that_are_not_utf8_name_no_file(site: StaticPolicy) -> None:
    assert resolve(site, b"/static/\xff.js") == Denied(404, "path is not UTF-8")


def test_the_loaded_fixture_policy_hides_logs_sources_and_config() -> None:
    config = load_site(str(SITES / "static-subfolder"), environ={})
    (mount,) = config.sites[0].mounts
    policy = mount.static
    assert isinstance(resolve(policy, "/static/app.js"), StaticFile)
    assert isinstance(resolve(policy, "/static/img/logo.gif"), StaticFile)
    assert isinstance(resolve(policy, "/media/readme.txt"), StaticFile)
    for path in (
        "/static/helper.py",
        "/shop.py",
        "/static/.env",
        "/static/web.config",
        "/log/error.log",
        "/assets/.zoo",
    ):
        assert isinstance(resolve(policy, path), Denied), path


def test_http_dates_round_trip() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("not a date") is None
    assert parse_http_date(None) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=50-1000", ByteRange(50, 99)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=5-1", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
        ("bytes=100-", Unsatisfiable),
        ("bytes=-0", Unsatisfiable),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    result = parse_range(header, 100)
    if expected is Unsatisfiable:
        assert isinstance(result, Unsatisfiable)
    else:
        assert result == expected


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 10_000))
def test_a_satisfiable_range_stays_inside_the_file(first: int, last: int, size: int) -> None:
    result = parse_range(f"bytes={first}-{last}", size)
    if isinstance(result, ByteRange):
        assert 0 <= result.start <= result.end < size
        assert result.length == result.end - result.start + 1
        assert result.content_range(size) == f"bytes {result.start}-{result.end}/{size}"


TAG = '"abc-10"'
MTIME = 784111777.5
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sun, 06 Nov 1994 08:49:36 GMT"


def decide(method: str = "GET", **headers: str) -> tuple[int, ByteRange | None]:
    decision = evaluate(method, etag_value=TAG, mtime=MTIME, size=100, **headers)
    return decision.status, decision.range


def test_conditional_requests() -> None:
    assert decide() == (200, None)
    assert decide(if_none_match=TAG) == (304, None)
    assert decide(if_none_match=f'"x", W/{TAG}') == (304, None)  # weak comparison
    assert decide(if_none_match="*") == (304, None)
    assert decide(if_none_match='"other"', if_modified_since=DATE) == (200, None)  # INM wins
    assert decide(if_modified_since=DATE) == (304, None)
    assert decide(if_modified_since=EARLIER) == (200, None)
    assert decide("POST", if_modified_since=DATE) == (200, None)
    assert decide("POST", if_none_match=TAG) == (412, None)
    assert decide(if_match='"other"') == (412, None)
    assert decide(if_match=TAG) == (200, None)
    assert decide(if_unmodified_since=EARLIER) == (412, None)
    assert decide("HEAD", if_none_match=TAG) == (304, None)


def test_ranges_and_if_range() -> None:
    assert decide(range_header="bytes=0-9") == (206, ByteRange(0, 9))
    assert decide("HEAD", range_header="bytes=0-9") == (200, None)
    assert decide(range_header="bytes=200-") == (416, None)
    assert decide(range_header="bytes=0-9", if_range=TAG) == (206, ByteRange(0, 9))
    assert decide(range_header="bytes=0-9", if_range='"old"') == (200, None)
    assert decide(range_header="bytes=0-9", if_range=f"W/{TAG}") == (200, None)
    assert decide(range_header="bytes=0-9", if_range=DATE) == (206, ByteRange(0, 9))
    assert decide(range_header="bytes=0-9", if_range=EARLIER) == (200, None)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.html", "text/html; charset=utf-8"),
        ("a.CSS", "text/css; charset=utf-8"),
        ("a.js", "text/javascript; charset=utf-8"),
        ("a.json", "application/json; charset=utf-8"),
        ("a.svg", "image/svg+xml; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.woff2", "font/woff2"),
        ("a.wasm", "application/wasm"),
        ("a.tar", "application/x-tar"),
        ("noextension", "application/octet-stream"),
        ("a.unknownext", "application/octet-stream"),
    ],
)
def test_content_types(name: str, kind: str) -> None:
    assert content_type(name) == kind


@given(st.text(max_size=80))
def test_resolution_never_escapes_or_raises(path: str) -> None:
    policy = StaticPolicy(root=str(SITES / "static-subfolder"), hidden_dirs=("log",))
    result = resolve(policy, "/" + path)
    if isinstance(result, StaticFile):
        root = os.path.realpath(policy.root)
        assert result.path.startswith(root + os.sep)
        relative = os.path.relpath(result.path, root).split(os.sep)
        assert not any(part.startswith(".") for part in relative)
        assert relative[-1].lower() not in ("web.config", "corral.toml")
        assert relative[0] != "log"


@given(st.text(max_size=40), st.integers(0, 1000))
def test_range_parsing_never_raises(header: str, size: int) -> None:
    parse_range(header, size)


def test_plan_gives_status_headers_and_bytes(site: StaticPolicy) -> None:
    found = resolve(site, "/static/img/logo.png")
    assert isinstance(found, StaticFile)
    last_modified = http_date(found.mtime)
    full = plan(found, "GET")
    assert (full.status, full.offset, full.length) == (200, 0, 4)
    assert dict(full.headers) == {
        "Content-Type": "image/png",
        "ETag": found.etag,
        "Last-Modified": last_modified,
        "Accept-Ranges": "bytes",
        "Content-Length": "4",
    }
    head = plan(found, "HEAD")
    assert (head.status, head.length, dict(head.headers)["Content-Length"]) == (200, 0, "4")
    part = plan(found, "GET", range_header="bytes=1-")
    assert (part.status, part.offset, part.length) == (206, 1, 3)
    assert dict(part.headers)["Content-Range"] == "bytes 1-3/4"
    assert dict(part.headers)["Content-Length"] == "3"
    cached = plan(found, "GET", if_none_match=found.etag)
    assert (cached.status, cached.length) == (304, 0)
    assert dict(cached.headers) == {"ETag": found.etag, "Last-Modified": last_modified}
    beyond = plan(found, "GET", range_header="bytes=10-")
    assert beyond.status == 416 and dict(beyond.headers)["Content-Range"] == "bytes */4"
    assert plan(found, "GET", if_match='"nope"').status == 412


# -- the deny list in a site whose engine is not Python (issue 10, item 5) ----------------------


@pytest.fixture
def php_site(tmp_path: Path) -> StaticPolicy:
    root = Path(os.path.realpath(tmp_path)) / "site"
    (root / "js").mkdir(parents=True)
    for name in (
        "settings.py",
        "index.php.bak",
        "index.php~",
        "#index.php#",
        "index.php.swp",
        "index.php.orig",
        "config.php.save",
        "old.php.old",
        "app.rb",
        "config.ru",
        "lib.pm",
        "run.cgi",
        "default.aspx",
        "config.ini",
        "app.config",
        "prod.env",
        "db.sqlite3",
        "dump.sql",
        "access.log",
        "composer.json",
        "composer.lock",
        "requirements.txt",
        "Gemfile",
        "js/app.js",
        "about.html",
        "readme.txt",
        ".secret",
    ):
        (root / name).write_text("x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "CVS").mkdir()
    (root / "CVS" / "Entries").write_text("x")
    (root / "deploylogs").mkdir()
    (root / "deploylogs" / "deploy.txt").write_text("x")
    (root / "public.txt").symlink_to(root / ".secret")
    (root / "assets").symlink_to(root / ".git")
    (root / "backup.txt").symlink_to(root / "index.php.bak")
    (root / "js" / "lib.js").symlink_to(root / "js" / "app.js")
    return StaticPolicy(
        root=str(root),
        hidden_dirs=("deploylogs",),
        source_suffixes=(".php", ".phtml", ".inc"),
    )


@pytest.mark.parametrize(
    "path",
    [
        "/settings.py",  # source of another stack than the site's engine
        "/index.php.bak",
        "/index.php~",
        "/#index.php#",
        "/index.php.swp",
        "/index.php.orig",
        "/config.php.save",
        "/old.php.old",
        "/INDEX.PHP.BAK",
        "/app.rb",
        "/config.ru",
        "/lib.pm",
        "/run.cgi",
        "/default.aspx",
        "/config.ini",
        "/app.config",
        "/prod.env",
        "/db.sqlite3",
        "/dump.sql",
        "/access.log",
        "/composer.json",
        "/composer.lock",
        "/requirements.txt",
        "/Gemfile",
        "/.git/HEAD",
        "/CVS/Entries",
        "/cvs/Entries",
        "/deploylogs/deploy.txt",
        "/public.txt",  # a symlink to a hidden file
        "/assets/HEAD",  # a symlink to a VCS folder
        "/backup.txt",  # a symlink to a backup
        "/about.html/",  # a file asked for as a folder
        "/js/app.js/",
        "/readme.txt/.",
    ],
)
def test_never_a_public_asset_in_a_php_site(php_site: StaticPolicy, path: str) -> None:
    result = resolve(php_site, path)
    assert isinstance(result, Denied), path
    assert result.status == 404


@pytest.mark.parametrize("path", ["/about.html", "/readme.txt", "/js/app.js", "/js/lib.js"])
def test_public_assets_of_a_php_site_are_served(php_site: StaticPolicy, path: str) -> None:
    assert isinstance(resolve(php_site, path), StaticFile)


def test_the_deploy_logs_folder_is_hidden_by_the_loaded_policy(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    (root / "deploylogs").mkdir()
    (root / "deploylogs" / "deploy.txt").write_text("x")
    (root / "deploylogs" / "deploy-before.txt").write_text("x")
    (root / "web.config").write_text(
        (SITES / "php-site" / "web.config")
        .read_text()
        .replace(
            '<add name="PHP_FCGI_MAX_REQUESTS" value="500" />',
            '<add name="DEPLOY_LOG" value="deploylogs\\deploy.txt" />'
            '<add name="ERROR_LOG_DIR" value="errors" />',
        )
    )
    config = load_site(str(root), environ={})
    (mount,) = config.sites[0].mounts
    assert set(mount.static.hidden_dirs) == {"errors", "deploylogs"}
    assert isinstance(resolve(mount.static, "/deploylogs/deploy.txt"), Denied)
    assert resolve(mount.static, "/deploylogs/deploy-before.txt") == Denied(
        404, "log folder (ERROR_LOG_DIR or DEPLOY_LOG)"
    )
