"""Any bytes in a config file give a model or located errors, never an exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.config import ConfigErrors, load_site
from corral.config.errors import Problems
from corral.config.servercfg import read_application_host
from corral.config.tomlfile import KeyLines, read_server, read_toml, site_sections
from corral.config.webconfig import read_webconfig

XML_BITS = st.sampled_from(
    [
        "<configuration>",
        "</configuration>",
        "<system.webServer>",
        "</system.webServer>",
        "<handlers>",
        "</handlers>",
        "<heliconZoo>",
        "</heliconZoo>",
        "<heliconZooServer>",
        "</heliconZooServer>",
        "<engines>",
        "</engines>",
        '<add name="a#x64" scriptProcessor="python" path="*" modules="HeliconZoo_x64"/>',
        '<add name="e" maxInstances="x" portLower="9" portUpper="1" transport="tcp"/>',
        '<application name="a">',
        "</application>",
        "<environmentVariables>",
        "</environmentVariables>",
        '<add name="V" value="%V%;%APPL_PHYSICAL_PATH%\\x"/>',
        "<clear/>",
        '<remove name="a#x64"/>',
        '<location path="static">',
        "</location>",
        "<switchboard>",
        "</switchboard>",
        "&amp;",
        "<!-- c -->",
    ]
)
TOML_BITS = st.sampled_from(
    [
        "[apps.a]\n",
        'engine = "python"\n',
        'paths = ["*", 3]\n',
        "[apps.a.env]\n",
        'X = "1"\n',
        "[locations]\n",
        'static = "none"\n',
        "[sites.s]\n",
        'bindings = ["127.0.0.1:8080:a.test", {port = "x"}]\n',
        '[sites.s.apps."/"]\n',
        'physical_path = "."\n',
        "[engines.e]\n",
        "max_instances = -3\n",
        'text = """\n',
        "apps = 3\n",
        "a.b.c = 1\n",
        '"quoted" = 2\n',
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(XML_BITS, max_size=25))
def test_xml_readers_collect_problems(parts: list[str]) -> None:
    data = "".join(parts).encode()
    read_webconfig(data, "web.config", Problems())
    read_application_host(data, "applicationHost.config", Problems())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_xml_readers_survive_any_bytes(data: bytes) -> None:
    read_webconfig(data, "web.config", Problems())
    read_application_host(data, "applicationHost.config", Problems())


@settings(max_examples=300, deadline=None)
@given(st.lists(TOML_BITS, max_size=20))
def test_toml_readers_collect_problems(parts: list[str]) -> None:
    problems = Problems()
    source = read_toml("".join(parts).encode(), "x.toml", problems)
    if source is not None:
        site_sections(source, problems)
        read_server(source, problems)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.text(alphabet="\"'\\uU0123abx =[].\n", max_size=80))
def test_key_lines_survive_any_text(text: str) -> None:
    KeyLines(text).line(("a", "b"))


def test_quoted_keys_with_escapes_find_their_line() -> None:
    lines = KeyLines('a = 1\n"caf\\u00e9" = 2\n"\\"q\\"" = 3\n')
    assert lines.line(("caf\u00e9",)) == 2
    assert lines.line(('"q"',)) == 3


def test_a_byte_order_mark_is_accepted() -> None:
    problems = Problems()
    source = read_toml(b"\xef\xbb\xbf[apps.a]\nengine = 'python'\n", "x.toml", problems)
    assert not problems and source is not None
    assert source.at("apps", "a", "engine").line == 2
    config = read_webconfig(
        b"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?><configuration/>", "w", problems
    )
    assert not problems and config is not None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(XML_BITS, max_size=25))
def test_load_gives_a_model_or_located_errors(tmp_path: Path, parts: list[str]) -> None:
    (tmp_path / "web.config").write_text("".join(parts))
    try:
        load_site(str(tmp_path), environ={})
    except ConfigErrors as errors:
        assert errors.errors
        for error in errors.errors:
            assert str(error).startswith(str(tmp_path))
