"""Applying URL Rewrite rules (corral.rewrite, pure): the stock rule sets of WordPress, Laravel
and Drupal, back-references, negation, conditions, folders, queries; hypothesis for the
properties that must hold for any URL."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.config.errors import Problems
from corral.config.rewrite import PatternError, RewriteRule, compile_pattern
from corral.config.rewriteread import scopes
from corral.config.webconfig import read_webconfig
from corral.rewrite import Aborted, Redirected, Responded, Rewritten, apply

ROOT = "/srv/site"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class FakeFacts:
    """A site on a pretend disk: `files` and `dirs` are URL paths below ROOT."""

    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=lambda: {""})
    variables: dict[str, str] = field(default_factory=dict)
    base: str = ""
    asked: list[str] = field(default_factory=list)

    def variable(self, name: str) -> str:
        return self.variables.get(name, "")

    def filename(self, path: str) -> str:
        if self.base and not (path == self.base or path.startswith(self.base + "/")):
            return ""
        return ROOT + path[len(self.base) :]

    def is_file(self, filename: str) -> bool:
        self.asked.append(filename)
        return filename[len(ROOT) :] in self.files

    def is_dir(self, filename: str) -> bool:
        self.asked.append(filename)
        return filename[len(ROOT) :].rstrip("/") in self.dirs


def rules(body: str, folder: str = "") -> list[RewriteRule]:
    text = (
        "<configuration><system.webServer><rewrite><rules>"
        + body
        + "</rules></rewrite></system.webServer></configuration>"
    )
    problems = Problems()
    config = read_webconfig(text.encode(), "web.config", problems)
    assert config is not None
    ops = [op for section in config.sections for op in section.rewrite or ()]
    found = scopes({"": ops}, problems, [])
    assert not problems.errors, problems.errors
    result = list(found[0].rules) if found else []
    if folder:
        result = [replace(rule, folder=folder) for rule in result]
    return result


def stock(path: Path) -> list[RewriteRule]:
    """The rules of a stock web.config (tests/fixtures)."""
    problems = Problems()
    config = read_webconfig(path.read_bytes(), str(path), problems)
    assert config is not None
    ops = [op for section in config.sections for op in section.rewrite or ()]
    found = scopes({"": ops}, problems, [])
    assert not problems.errors, problems.errors
    return list(found[0].rules)


WORDPRESS = stock(FIXTURES / "sites" / "rewrite-wordpress" / "web.config")
LARAVEL = stock(FIXTURES / "sites" / "rewrite-laravel" / "public" / "web.config")
DRUPAL = stock(FIXTURES / "rewrite" / "drupal.web.config")


def test_wordpress_sends_what_is_no_file_or_folder_to_index_php() -> None:
    facts = FakeFacts(files={"/wp-content/style.css", "/index.php"}, dirs={"", "/wp-admin"})
    assert apply(WORDPRESS, "", "/2024/01/hello-world/", "p=1", facts) == Rewritten(
        "/index.php", "p=1", True
    )
    assert facts.asked == [ROOT + "/2024/01/hello-world/", ROOT + "/2024/01/hello-world/"]
    assert apply(WORDPRESS, "", "/wp-content/style.css", "", facts) == Rewritten(
        "/wp-content/style.css", "", False
    )
    assert apply(WORDPRESS, "", "/wp-admin/", "", facts) == Rewritten("/wp-admin/", "", False)


def test_laravel_redirects_a_trailing_slash_and_has_a_front_controller() -> None:
    facts = FakeFacts(files={"/css/app.css", "/index.php"}, dirs={"", "/css"})
    assert apply(LARAVEL, "", "/users/", "page=2", facts) == Redirected(
        301, "/users?page=2", "Imported Rule 1"
    )
    assert apply(LARAVEL, "", "/css/", "", facts) == Rewritten("/css/", "", False)
    assert apply(LARAVEL, "", "/users/5", "x=1", facts) == Rewritten("/index.php", "x=1", True)
    assert apply(LARAVEL, "", "/css/app.css", "", facts) == Rewritten("/css/app.css", "", False)
    assert apply(LARAVEL, "", "/", "", facts) == Rewritten("/", "", False)


def test_drupal_protects_files_and_has_short_urls() -> None:
    facts = FakeFacts(files={"/index.php"})
    forbidden = apply(DRUPAL, "", "/core/lib/x.module", "", facts)
    assert forbidden == Responded(
        403, "Forbidden", "Access is forbidden.", "Protect files and directories from prying eyes"
    )
    assert apply(DRUPAL, "", "/composer.json", "", facts) == forbidden
    missing_icon = apply(DRUPAL, "", "/favicon.ico", "", facts)
    assert isinstance(missing_icon, Responded) and missing_icon.status == 404
    assert apply(DRUPAL, "", "/node/1", "", facts) == Rewritten("/index.php", "", True)


def test_back_references_whole_match_and_conditions() -> None:
    main = rules(
        '<rule name="Main Rule" stopProcessing="true"><match url=".*" />'
        '<conditions logicalGrouping="MatchAll">'
        '<add input="{REQUEST_FILENAME}" matchType="IsFile" negate="true" />'
        '<add input="{REQUEST_FILENAME}" matchType="IsDirectory" negate="true" />'
        '</conditions><action type="Rewrite" url="index.php/{R:0}" /></rule>'
    )
    assert apply(main, "", "/a/b", "", FakeFacts()) == Rewritten("/index.php/a/b", "", True)
    canonical = rules(
        '<rule name="no www" stopProcessing="true"><match url="(.*)" />'
        '<conditions><add input="{HTTP_HOST}" pattern="^www\\.(.+)$" />'
        '<add input="{HTTPS}" pattern="^(on|off)$" /></conditions>'
        '<action type="Redirect" url="https://{ToLower:{C:1}}/{R:1}" redirectType="Found" '
        'appendQueryString="false" /></rule>'
    )
    facts = FakeFacts(variables={"HTTP_HOST": "www.Example.com", "HTTPS": "off"})
    # {C:n} in the action: the last matched condition's captures ({HTTPS}'s).
    assert apply(canonical, "", "/x", "q=1", facts) == Redirected(302, "https://off/x", "no www")
    any_of = rules(
        '<rule name="any" stopProcessing="true"><match url="^(.*)$" />'
        '<conditions logicalGrouping="MatchAny">'
        '<add input="{HTTP_HOST}" pattern="^old\\.(example)\\.com$" />'
        '<add input="{HTTP_HOST}" pattern="^legacy\\.(example)\\.org$" />'
        '</conditions><action type="Redirect" url="https://new.{C:1}.com/{R:1}" /></rule>'
    )
    legacy = FakeFacts(variables={"HTTP_HOST": "legacy.example.org"})
    assert apply(any_of, "", "/p", "", legacy) == Redirected(
        301, "https://new.example.com/p", "any"
    )
    assert apply(any_of, "", "/p", "", FakeFacts(variables={"HTTP_HOST": "new.example.com"})) == (
        Rewritten("/p", "", False)
    )


def test_negate_and_back_references() -> None:
    negated = rules(
        '<rule name="not api" stopProcessing="true"><match url="^api/(.*)" negate="true" />'
        '<conditions><add input="{URL}" pattern="^/(\\w+)" /></conditions>'
        '<action type="Rewrite" url="app.php?r=[{R:1}]&amp;s={C:1}&amp;w={R:0}" /></rule>'
    )
    # A negated pattern captures nothing: {R:n} is empty; the condition's captures remain.
    assert apply(negated, "", "/shop/x", "", FakeFacts()) == Rewritten(
        "/app.php", "r=[]&s=shop&w=", True
    )
    assert apply(negated, "", "/api/x", "", FakeFacts()) == Rewritten("/api/x", "", False)
    negated_condition = rules(
        '<rule name="c"><match url="(.*)" />'
        '<conditions><add input="{QUERY_STRING}" pattern="debug=(\\d)" negate="true" />'
        "</conditions>"
        '<action type="Rewrite" url="clean/{R:1}" /></rule>'
    )
    assert apply(negated_condition, "", "/a", "debug=1", FakeFacts()) == Rewritten(
        "/a", "debug=1", False
    )
    assert apply(negated_condition, "", "/a", "x=1", FakeFacts()) == Rewritten(
        "/clean/a", "x=1", True
    )


def test_rewrites_chain_and_stop_processing_ends_them() -> None:
    chain = rules(
        '<rule name="one"><match url="^a/(.*)" /><action type="Rewrite" url="b/{R:1}" /></rule>'
        '<rule name="two" stopProcessing="true"><match url="^b/(.*)" />'
        '<action type="Rewrite" url="c/{R:1}?from=b" /></rule>'
        '<rule name="three"><match url="^c/" /><action type="AbortRequest" /></rule>'
    )
    assert apply(chain, "", "/a/x", "q=1", FakeFacts()) == Rewritten("/c/x", "from=b&q=1", True)
    assert apply(chain, "", "/c/x", "", FakeFacts()) == Aborted("three")


def test_append_query_string() -> None:
    dropped = rules(
        '<rule name="d"><match url="^old$" />'
        '<action type="Rewrite" url="new" appendQueryString="false" /></rule>'
    )
    assert apply(dropped, "", "/old", "a=1", FakeFacts()) == Rewritten("/new", "", True)
    redirect = rules(
        '<rule name="r"><match url="^old$" /><action type="Redirect" url="new?x=1" /></rule>'
    )
    assert apply(redirect, "", "/old", "a=1", FakeFacts()) == Redirected(301, "/new?x=1&a=1", "r")


def test_rules_of_a_folder_see_the_url_relative_to_it() -> None:
    blog = rules(
        '<rule name="post" stopProcessing="true"><match url="^(\\d+)$" />'
        '<action type="Rewrite" url="post.php?id={R:1}" /></rule>'
        '<rule name="moved"><match url="^old/(.*)" /><action type="Redirect" url="new/{R:1}" '
        'redirectType="307" /></rule>',
        folder="blog",
    )
    assert apply(blog, "", "/blog/42", "", FakeFacts()) == Rewritten(
        "/blog/post.php", "id=42", True
    )
    assert apply(blog, "", "/blog/old/x", "", FakeFacts()) == Redirected(
        307, "/blog/new/x", "moved"
    )
    assert apply(blog, "", "/42", "", FakeFacts()) == Rewritten("/42", "", False)
    # A mount at /app: its rules see the URL below it; "/..." in a substitution is the site's.
    at_app = rules(
        '<rule name="r"><match url="^x$" /><action type="Rewrite" url="y" /></rule>'
        '<rule name="s"><match url="^y$" /><action type="Rewrite" url="/elsewhere" /></rule>'
    )
    facts = FakeFacts(base="/app")
    assert apply(at_app, "/app", "/app/x", "", facts) == Rewritten("/elsewhere", "", True)


def test_a_rule_is_skipped_once_the_url_has_left_its_folder() -> None:
    moved = [
        *rules(
            '<rule name="out"><match url="^in/(.*)" /><action type="Rewrite" url="/{R:1}" /></rule>'
        ),
        *rules(
            '<rule name="inner"><match url=".*" /><action type="AbortRequest" /></rule>',
            folder="in",
        ),
    ]
    assert apply(moved, "", "/in/page", "", FakeFacts()) == Rewritten("/page", "", True)


def test_request_filename_follows_the_rewritten_url() -> None:
    two = rules(
        '<rule name="one"><match url="^pretty$" /><action type="Rewrite" url="real.html" /></rule>'
        '<rule name="two"><match url=".*" /><conditions>'
        '<add input="{REQUEST_FILENAME}" matchType="IsFile" /></conditions>'
        '<action type="CustomResponse" statusCode="410" statusDescription="{R:0} is gone" />'
        "</rule>"
    )
    facts = FakeFacts(files={"/real.html"})
    assert apply(two, "", "/pretty", "", facts) == Responded(410, "", "real.html is gone", "two")


# -- properties ------------------------------------------------------------------------------

segment = st.text(alphabet="abcXYZ019-_~é%+ ", min_size=1, max_size=8)
paths = st.lists(segment, max_size=5).map(lambda parts: "/" + "/".join(parts))
queries = st.text(alphabet="abc=&%+19é", max_size=12)


@given(paths, queries)
def test_rules_that_do_not_match_leave_the_request_alone(path: str, query: str) -> None:
    never = rules('<rule name="n"><match url="^\\x00$" /><action type="AbortRequest" /></rule>')
    assert apply(never, "", path, query, FakeFacts()) == Rewritten(path, query, False)


@given(paths, queries, st.booleans(), st.sampled_from(["", "x=1"]))
def test_prefixing_rewrite_and_query_rules(
    path: str, query: str, append: bool, own_query: str
) -> None:
    url = "/prefix/{R:1}" + (f"?{own_query}" if own_query else "")
    rule = rules(
        f'<rule name="p"><match url="^(.*)$" /><action type="Rewrite" url="{url}" '
        f'appendQueryString="{str(append).lower()}" /></rule>'
    )
    got = apply(rule, "", path, query, FakeFacts())
    assert isinstance(got, Rewritten) and got.changed
    assert got.path == "/prefix/" + path[1:]
    expected = [part for part in (own_query, query if append else "") if part]
    assert got.query == "&".join(expected)


@given(paths)
def test_negate_fires_exactly_when_the_pattern_does_not_match(path: str) -> None:
    plain = rules('<rule name="a"><match url="^[a-c]+/" /><action type="AbortRequest" /></rule>')
    negated = rules(
        '<rule name="a"><match url="^[a-c]+/" negate="true" /><action type="AbortRequest" /></rule>'
    )
    fired = isinstance(apply(plain, "", path, "", FakeFacts()), Aborted)
    assert fired != isinstance(apply(negated, "", path, "", FakeFacts()), Aborted)


@given(st.text(max_size=30))
def test_any_pattern_text_compiles_or_is_refused_with_a_reason(text: str) -> None:
    for syntax in ("ECMAScript", "Wildcard", "ExactMatch"):
        try:
            pattern = compile_pattern(text, syntax, True)  # type: ignore[arg-type]
        except PatternError as error:
            assert str(error)
        else:
            pattern.captures("some/url")


@pytest.mark.parametrize("path", ["/x", "/a/b/", "/é"])
def test_a_redirect_to_a_full_url_is_kept(path: str) -> None:
    rule = rules(
        '<rule name="https"><match url="(.*)" /><conditions><add input="{HTTPS}" '
        'pattern="^OFF$" /></conditions><action type="Redirect" '
        'url="https://{HTTP_HOST}/{R:1}" redirectType="Permanent" /></rule>'
    )
    facts = FakeFacts(variables={"HTTPS": "off", "HTTP_HOST": "example.com"})
    assert apply(rule, "", path, "", facts) == Redirected(
        301, "https://example.com" + path, "https"
    )
