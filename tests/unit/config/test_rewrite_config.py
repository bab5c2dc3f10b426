"""URL Rewrite rules read from web.config and corral.toml: the model, and every refusal named
with its file and line (corral.config.rewrite, corral.config.rewriteread)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral.config.errors import ConfigErrors, Problems
from corral.config.load import load_site
from corral.config.rewrite import (
    Capture,
    Function,
    PatternError,
    RewriteRule,
    Variable,
    compile_pattern,
    parse_template,
    translate_ecmascript,
)
from corral.config.rewriteread import scopes
from corral.config.webconfig import read_webconfig

WORDPRESS = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <rewrite>
      <rules>
        <rule name="WordPress: http://example.com" patternSyntax="Wildcard">
          <match url="*"/>
          <conditions>
            <add input="{REQUEST_FILENAME}" matchType="IsFile" negate="true"/>
            <add input="{REQUEST_FILENAME}" matchType="IsDirectory" negate="true"/>
          </conditions>
          <action type="Rewrite" url="index.php"/>
        </rule>
      </rules>
    </rewrite>
  </system.webServer>
</configuration>
"""


def rules_of(text: str, file: str = "web.config") -> tuple[list[RewriteRule], Problems, list[str]]:
    problems = Problems()
    config = read_webconfig(text.encode(), file, problems)
    assert config is not None
    ops: dict[str, list] = {}
    for section in config.sections:
        if section.rewrite is not None:
            ops.setdefault(section.folder, []).extend(section.rewrite)
    notices: list[str] = []
    found = scopes(ops, problems, notices)
    root = next((scope.rules for scope in found if scope.folder == ""), ())
    return list(root), problems, notices


def rules_xml(body: str) -> str:
    return (
        "<configuration>\n  <system.webServer>\n    <rewrite>\n      <rules>\n"
        + body
        + "\n      </rules>\n    </rewrite>\n  </system.webServer>\n</configuration>\n"
    )


def errors(problems: Problems) -> list[str]:
    return [f"{error.location.line}: {error.message}" for error in problems.errors]


def test_wordpress_rules_are_read_with_their_lines() -> None:
    rules, problems, notices = rules_of(WORDPRESS)
    assert not problems.errors and not notices
    (rule,) = rules
    assert rule.name == "WordPress: http://example.com"
    assert rule.location.line == 6
    assert (rule.match.syntax, rule.match.text, rule.match.ignore_case) == ("Wildcard", "*", True)
    assert [(c.match_type, c.negate, c.location.line) for c in rule.conditions] == [
        ("IsFile", True, 9),
        ("IsDirectory", True, 10),
    ]
    assert rule.conditions[0].input.pieces == (Variable("REQUEST_FILENAME"),)
    assert (rule.action.type, rule.action.url and rule.action.url.text) == ("Rewrite", "index.php")
    assert rule.action.append_query_string and not rule.stop_processing and not rule.match_any


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            '<rule name="a"><match url="x" /><action type="Rewrite" url="{Map:{R:0}}" /></rule>',
            5,
            "rewrite maps and functions other than ToLower, UrlEncode, UrlDecode are not",
        ),
        (
            '<rule name="a"><match url="x" /><serverVariables><set name="X" value="1" />'
            '</serverVariables><action type="None" /></rule>',
            5,
            "<serverVariables> (setting variables) is not supported",
        ),
        (
            '<rule name="a"><match url="(x)" /><action type="Rewrite" url="{R:2}" /></rule>',
            5,
            "{R:2} but the pattern '(x)' has 1 group(s)",
        ),
        (
            '<rule name="a"><match url="x" /><action type="Rewrite" url="{C:1}" /></rule>',
            5,
            "{C:1} but no condition has a pattern",
        ),
        (
            '<rule name="a"><match url="x" />\n<conditions trackAllCaptures="true" />'
            '<action type="None" /></rule>',
            6,
            'trackAllCaptures="true" is not supported',
        ),
        (
            '<rule name="a"><match url="x" /><action type="Rewrite" '
            'url="http://backend:8080/{R:0}" /></rule>',
            5,
            "needs IIS's Application Request Routing",
        ),
        (
            '<rule name="a"><match url="x" /><action type="Redirect" url="/" '
            'redirectType="Moved" /></rule>',
            5,
            "redirectType must be Permanent, Found, SeeOther, Temporary",
        ),
        (
            '<rule name="a"><match url="x" /><action type="CustomResponse" statusCode="99" />'
            "</rule>",
            5,
            "statusCode must be 200..599",
        ),
        (
            '<rule name="a" stopProcesing="true"><match url="x" /><action type="None" /></rule>',
            5,
            "unknown attribute 'stopProcesing'; did you mean 'stopProcessing'?",
        ),
        (
            '<rule name="a">\n<match url="(?P&lt;x&gt;y)" /><action type="None" /></rule>',
            6,
            "group syntax ECMAScript does not have",
        ),
        (
            '<rule name="a"><match url="x" />\n<action type="Rewrite" url="{SERVER_SOFTWARE}" />'
            "</rule>",
            6,
            "{SERVER_SOFTWARE}: a server variable Corral does not provide",
        ),
        ('<rule name="a"><action type="None" /></rule>', 5, "rule 'a' has no <match url>"),
        ('<rule name="a"><match url="x" /></rule>', 5, "rule 'a' has no <action>"),
        (
            '<rule name="a"><match url="x" /><action type="None" /></rule>\n'
            '<rule name="A"><match url="y" /><action type="None" /></rule>',
            6,
            "duplicate rule name 'A' (already at web.config:5; <remove> it first)",
        ),
    ],
)
def test_what_is_not_supported_is_an_error_at_its_line(body: str, line: int, message: str) -> None:
    _, problems, _ = rules_of(rules_xml(body))
    assert any(error.startswith(f"{line}: ") and message in error for error in errors(problems)), (
        errors(problems)
    )


def test_rewrite_maps_and_outbound_rules_are_refused() -> None:
    text = (
        "<configuration><system.webServer>\n<rewrite>\n<rewriteMaps />\n<outboundRules />\n"
        "</rewrite></system.webServer></configuration>"
    )
    _, problems, _ = rules_of(text)
    assert errors(problems) == [
        "3: <rewrite><rewriteMaps>: rewrite maps are not supported",
        "4: <rewrite><outboundRules>: outbound rules (rewriting responses) are not supported",
    ]


def test_a_rule_after_one_that_takes_every_url_can_never_match() -> None:
    body = """<rule name="everything" stopProcessing="true">
  <match url=".*" />
  <action type="Rewrite" url="index.php" />
</rule>
<rule name="too late">
  <match url="^api/(.*)" />
  <action type="Rewrite" url="api.php?q={R:1}" />
</rule>
<rule name="nothing"><match url="^" negate="true" /><action type="AbortRequest" /></rule>"""
    _, problems, _ = rules_of(rules_xml(body))
    assert errors(problems) == [
        "9: rule 'too late' can never match: rule 'everything' at web.config:5 comes first, "
        "takes every URL (pattern '.*', no conditions) and ends the evaluation",
        "13: rule 'nothing' can never match: its pattern '^' matches every URL and "
        'negate="true" turns that into none',
    ]


def test_rules_that_might_still_match_are_not_flagged() -> None:
    body = """<rule name="conditional" stopProcessing="true">
  <match url=".*" />
  <conditions><add input="{HTTPS}" pattern="off" /></conditions>
  <action type="Redirect" url="https://{HTTP_HOST}/{R:0}" />
</rule>
<rule name="no stop"><match url=".*" /><action type="Rewrite" url="x/{R:0}" /></rule>
<rule name="anchored" stopProcessing="true"><match url="^(.*)$" /><action type="None" /></rule>
<rule name="later"><match url="y" /><action type="None" /></rule>"""
    rules, problems, _ = rules_of(rules_xml(body))
    assert not problems.errors, errors(problems)
    assert [rule.name for rule in rules] == ["conditional", "no stop", "anchored", "later"]


def test_a_pattern_with_a_leading_slash_is_a_notice() -> None:
    body = '<rule name="slash"><match url="^/blog/(.*)" /><action type="None" /></rule>'
    _, problems, notices = rules_of(rules_xml(body))
    assert not problems.errors
    assert notices == [
        "web.config:5: rule 'slash': its pattern '^/blog/(.*)' starts with a slash, but the "
        "URL a rule sees has none (IIS strips it): it matches only URLs that start with //"
    ]


def test_disabled_rules_clear_and_remove() -> None:
    body = """<clear />
<rule name="off" enabled="false"><match url="x" /><action type="AbortRequest" /></rule>
<rule name="a"><match url="a" /><action type="None" /></rule>
<rule name="b"><match url="b" /><action type="None" /></rule>
<remove name="A" />"""
    rules, problems, _ = rules_of(rules_xml(body))
    assert not problems.errors
    assert [rule.name for rule in rules] == ["b"]


def test_sub_folder_rules_inherit_and_see_their_folder(tmp_path: Path) -> None:
    (tmp_path / "web.config").write_text(WORDPRESS)
    blog = tmp_path / "blog"
    blog.mkdir()
    (blog / "web.config").write_text(
        rules_xml(
            '<rule name="blog" stopProcessing="true"><match url="^(\\d+)$" />'
            '<action type="Rewrite" url="post.php?id={R:1}" /></rule>'
        )
    )
    (tmp_path / "web.config").write_text(
        WORDPRESS.replace(
            "</rules>",
            '<rule name="located"><match url="x" /><action type="None" /></rule></rules>',
        ).replace(
            "</configuration>",
            '<location path="api"><system.webServer><rewrite><rules><clear />'
            '<rule name="api"><match url="(.*)" /><action type="Rewrite" url="api.php/{R:1}" />'
            "</rule></rules></rewrite></system.webServer></location></configuration>",
        )
    )
    config = load_site(str(tmp_path))
    (mount,) = config.sites[0].mounts
    by_folder = {scope.folder: scope.rules for scope in mount.rewrite}
    assert sorted(by_folder) == ["", "api", "blog"]
    assert [(r.name, r.folder) for r in by_folder[""]] == [
        ("WordPress: http://example.com", ""),
        ("located", ""),
    ]
    assert [(r.name, r.folder) for r in by_folder["blog"]] == [
        ("WordPress: http://example.com", ""),
        ("located", ""),
        ("blog", "blog"),
    ]
    assert [(r.name, r.folder) for r in by_folder["api"]] == [("api", "api")]
    # A folder that clears them has none (its parent's do not apply there either).
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "web.config").write_text(rules_xml("<clear />"))
    (mount,) = load_site(str(tmp_path)).sites[0].mounts
    assert {scope.folder: scope.rules for scope in mount.rewrite}["static"] == ()
    assert "rewrite" not in {item.setting for item in config.not_in_effect}


TOML = """
[apps.site]
engine = "php.fastcgi"
paths = ["*.php"]

[[rewrite]]
name = "Imported Rule 1"
match = "^(.*)/$"
ignore_case = false
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "IsDirectory", ignore_case = false, negate = true },
]
action = { type = "Redirect", redirect_type = "Permanent", url = "/{R:1}" }
stop_processing = true

[[rewrite]]
name = "Imported Rule 2"
match = "^"
ignore_case = false
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "IsDirectory", negate = true },
  { input = "{REQUEST_FILENAME}", match_type = "IsFile", negate = true },
]
action = { type = "Rewrite", url = "index.php" }
stop_processing = true

[[rewrite]]
name = "old docs"
folder = "docs"
match = "^v1/(.*)"
action = { type = "Redirect", url = "v2/{R:1}", redirect_type = 308, append_query_string = false }
"""


def test_the_same_rules_in_toml(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(TOML)
    config = load_site(str(tmp_path))
    (mount,) = config.sites[0].mounts
    by_folder = {scope.folder: scope.rules for scope in mount.rewrite}
    first, second = by_folder[""]
    assert (first.name, first.location.line, first.match.text, first.match.ignore_case) == (
        "Imported Rule 1",
        6,
        "^(.*)/$",
        False,
    )
    assert (first.action.type, first.action.status, first.stop_processing) == (
        "Redirect",
        301,
        True,
    )
    assert [(c.match_type, c.negate, c.location.line) for c in second.conditions] == [
        ("IsDirectory", True, 20),
        ("IsFile", True, 20),
    ]
    docs = by_folder["docs"][-1]
    assert (docs.folder, docs.action.status, docs.action.append_query_string) == (
        "docs",
        308,
        False,
    )


@pytest.mark.parametrize(
    ("entry", "line", "message"),
    [
        ('name = "a"\nmatch = "x"\naction = { type = "None" }\nstop = true', 5, "unknown rewrite "),
        ('name = "a"\nmatch = "["\naction = { type = "None" }', 3, "a character class is not"),
        ('name = "a"\nmatch = "x"\naction = { kind = "None" }', 4, "unknown action key 'kind'"),
        ('match = "x"\naction = { type = "None" }', 1, "a rewrite rule needs a name"),
        ('name = "a"\nmatch = "x"', 1, "rule 'a' has no action"),
        ('name = "a"\nmatch = "x"\nfolder = "../up"\naction = { type = "None" }', 4, "leave"),
    ],
)
def test_toml_rule_errors_name_their_line(
    tmp_path: Path, entry: str, line: int, message: str
) -> None:
    (tmp_path / "corral.toml").write_text("[[rewrite]]\n" + entry + "\n")
    with pytest.raises(ConfigErrors) as raised:
        load_site(str(tmp_path))
    found = [str(error) for error in raised.value.errors]
    assert any(f"corral.toml:{line}: rewrite: " in error and message in error for error in found), (
        found
    )


# -- patterns and templates -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("^(.*)$", "a/b", ("a/b", "a/b")),
        ("^(.*)$", "a\nb", None),  # ECMAScript: `.` stops at line terminators
        ("a$", "xa\n", None),  # ... and `$` is the end of the input only
        ("a$", "xa", ("a",)),
        ("^(?<year>\\d{4})/\\k<year>$", "2024/2024", ("2024/2024", "2024")),
        ("\\cJ", "\n", ("\n",)),
        ("[[a]+", "[a[", ("[a[",)),
        ("[\\]a]+", "x]a]", ("]a]",)),
        ("\\d+", "٣3", ("3",)),  # ASCII digits only
        ("\\/x", "a/x", ("/x",)),
        ("(a)|(b)", "b", ("b", "", "b")),
        ("BLOG", "blog", ("blog",)),  # ignoreCase (the default)
    ],
)
def test_ecmascript_patterns(pattern: str, text: str, expected: tuple[str, ...] | None) -> None:
    assert compile_pattern(pattern, "ECMAScript", True).captures(text) == expected


@pytest.mark.parametrize(
    "pattern",
    ["\\A", "\\Z", "\\z", "(?i)x", "(?#c)", "(?>x)", "[]", "[^]", "[a", "\\p{L}", "\\u{41}", "x\\"],
)
def test_untranslatable_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern, "ECMAScript", True)


def test_a_lookbehind_of_variable_width_is_refused() -> None:
    with pytest.raises(PatternError, match="invalid regular expression"):
        compile_pattern("(?<=a+)b", "ECMAScript", False)


def test_wildcard_and_exact_match() -> None:
    wildcard = compile_pattern("blog/*/p?ge", "Wildcard", True)
    assert wildcard.captures("Blog/2024/01/page") == ("Blog/2024/01/page", "2024/01")
    assert wildcard.captures("blog/x/page/more") is None
    assert compile_pattern("*", "Wildcard", True).matches_everything()
    exact = compile_pattern("Index.php", "ExactMatch", True)
    assert exact.captures("index.PHP") == ("index.PHP",)
    assert exact.captures("index.php/x") is None


def test_templates() -> None:
    template = parse_template("https://{HTTP_HOST}/{ToLower:{R:1}}?q={c:2}&h={http_x_thing}")
    assert template.pieces == (
        "https://",
        Variable("HTTP_HOST"),
        "/",
        Function("ToLower", parse_template("{R:1}")),
        "?q=",
        Capture(False, 2),
        "&h=",
        Variable("HTTP_X_THING"),
    )
    for bad in ("{R:1", "{}", "{NOPE}", "{Map:x}", "{ToLower:{R:1}"):
        with pytest.raises(PatternError):
            parse_template(bad)


def test_translation_spells_dots_and_dollars_the_ecmascript_way() -> None:
    translated = translate_ecmascript("^a.b$|[.$]")
    assert re.fullmatch(r"\^a\[\^\\n\\r\\u2028\\u2029\]b\\Z\|\[\.\$\]", translated), translated


def test_corral_check_lists_the_rules(tmp_path: Path) -> None:
    from corral.config.check import run_check

    (tmp_path / "web.config").write_text(WORDPRESS)
    code, text = run_check(str(tmp_path))
    assert code == 0, text
    assert (
        "      URL Rewrite rules (before the routes, in order):\n"
        "        /  'WordPress: http://example.com': Wildcard '*' + 2 condition(s) -> Rewrite "
        f"index.php  ({tmp_path}/web.config:6)\n"
    ) in text
    assert "<rewrite>" not in text  # no longer "accepted but not in effect"
