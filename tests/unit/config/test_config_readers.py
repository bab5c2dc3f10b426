"""The readers: web.config, applicationHost.config and TOML into located raw values."""

from __future__ import annotations

import pytest

from corral.config import convert
from corral.config.errors import Problems
from corral.config.model import Location, Transport
from corral.config.servercfg import read_application_host
from corral.config.tomlfile import KeyLines, parse_binding, read_toml, site_sections
from corral.config.webconfig import read_webconfig
from corral.config.xmlfile import parse_xml

WEB_CONFIG = b"""<?xml version="1.0"?>
<configuration>
  <location path="." inheritInChildApplications="false">
    <system.webServer>
      <handlers>
        <clear />
        <add name="StaticFile" path="*" verb="*" modules="StaticFileModule" />
        <add name="app#x86" scriptProcessor="python.2.7.pipe" path="*" modules="HeliconZoo_x86"
             preCondition="bitness32" />
      </handlers>
      <staticContent />
    </system.webServer>
  </location>
  <location path="static">
    <system.webServer>
      <handlers><remove name="app#x86" /></handlers>
    </system.webServer>
  </location>
  <system.webServer>
    <heliconZoo>
      <clear />
      <application name="app">
        <environmentVariables>
          <clear />
          <add name="A" value="1" />
          <remove name="A" />
          <add name="A" value="2" />
        </environmentVariables>
      </application>
    </heliconZoo>
  </system.webServer>
</configuration>
"""


def test_web_config_operations_keep_their_lines() -> None:
    problems = Problems()
    config = read_webconfig(WEB_CONFIG, "web.config", problems)
    assert not problems
    assert config is not None
    root, static, zoo = config.sections
    assert (root.folder, static.folder, zoo.folder) == ("", "static", "")
    assert root.handlers is not None
    assert [(op.action, op.name, op.location.line) for op in root.handlers] == [
        ("clear", "", 6),
        ("add", "app#x86", 8),
    ]
    assert static.handlers is not None
    assert [(op.action, op.name) for op in static.handlers] == [("remove", "app#x86")]
    assert zoo.handlers is None
    clear, app = zoo.zoo
    assert clear.action == "clear"
    assert [(op.action, op.name, op.value, op.location.line) for op in app.env] == [
        ("clear", "", "", 24),
        ("add", "A", "1", 25),
        ("remove", "A", "", 26),
        ("add", "A", "2", 27),
    ]
    ignored = {(item.setting, item.location and item.location.line) for item in config.ignored}
    assert ignored == {("handler StaticFile", 7), ("<system.webServer><staticContent>", 11)}


def test_entity_expansion_and_external_entities_are_refused() -> None:
    for document in (
        b'<!DOCTYPE c [<!ENTITY a "aaaa">]><configuration>&a;</configuration>',
        b'<!DOCTYPE c [<!ENTITY a SYSTEM "file:///etc/passwd">]><configuration>&a;</configuration>',
    ):
        problems = Problems()
        assert parse_xml(document, "f.config", problems) is None
        (error,) = problems.errors
        assert error.setting == "xml"
        assert "entity declarations are refused" in error.message


def test_shape_errors_are_collected_not_raised() -> None:
    problems = Problems()
    read_webconfig(
        b"""<configuration>
  <system.webServer>
    <handlers>
      <add scriptProcessor="python" path="*" modules="HeliconZoo_x64" />
      <add name="a" path="*" modules="HeliconZoo_x64" />
      <add name="b" scriptProcessor="python" modules="HeliconZoo_x64" />
      <bogus />
    </handlers>
    <heliconZoo>
      <application><environmentVariables /></application>
      <application name="x">
        <environmentVariables><add name="V" /></environmentVariables></application>
    </heliconZoo>
  </system.webServer>
</configuration>""",
        "w.config",
        problems,
    )
    assert [str(e) for e in problems.errors] == [
        "w.config:4: handlers: <add> needs a name",
        "w.config:5: scriptProcessor: handler 'a' names no engine",
        "w.config:6: path: handler 'b' has no path",
        "w.config:7: handlers: unknown element <bogus>",
        "w.config:10: application: <application> needs a name",
        "w.config:12: V: <add> needs a value",
    ]


def test_application_host_switchboard_per_site() -> None:
    problems = Problems()
    server = read_application_host(
        b"""<configuration>
  <system.webServer><heliconZooServer>
    <engines>
      <add name="e1" fullPath="/bin/e1" transport="tcp" protocol="http" />
      <add name="e2" fullPath="/bin/e2" bogus="1" />
    </engines>
    <switchboard><add name="*" value="Enabled" /><add name="e1" value="maybe" /></switchboard>
  </heliconZooServer></system.webServer>
  <location path="Site A">
    <system.webServer><heliconZooServer><switchboard>
      <add name="e1" value="Disabled" />
    </switchboard></heliconZooServer></system.webServer>
  </location>
</configuration>""",
        "applicationHost.config",
        problems,
    )
    assert server is not None
    assert [str(e) for e in problems.errors] == [
        "applicationHost.config:5: bogus: unknown engine attribute on engine 'e2'",
        "applicationHost.config:7: switchboard: e1: expected true/false (or Enabled/Disabled), "
        "got 'maybe'",
    ]
    e1, _ = server.engines
    assert e1.transport is Transport.TCP and e1.location == Location("applicationHost.config", 4)
    assert [(s.name, s.enabled) for s in server.switchboard[""]] == [("*", True)]
    assert [(s.name, s.enabled) for s in server.switchboard["Site A"]] == [("e1", False)]


def test_key_lines_find_tables_keys_and_quoted_names() -> None:
    lines = KeyLines(
        '# comment\n[server]\napplication_host = "x"\n\n[engines."python.3.x.wsgi"]\n'
        'max_instances = 4\ntext = """\nfake = 1\n"""\n[[things]]\na = 1\n[[things]]\na = 2\n'
        "[sites.main.apps.'/blog']\nphysical_path = 'b'\n"
    )
    assert lines.line(("server", "application_host")) == 3
    assert lines.line(("engines", "python.3.x.wsgi")) == 5
    assert lines.line(("engines", "python.3.x.wsgi", "max_instances")) == 6
    assert lines.line(("engines", "python.3.x.wsgi", "fake")) == 5  # inside a string
    assert lines.line(("things", 1, "a")) == 13
    assert lines.line(("sites", "main", "apps", "/blog", "physical_path")) == 15
    assert lines.line(("sites", "main", "apps", "/blog", "unknown")) == 14
    assert lines.line(("nothing",)) == 0


def test_corral_toml_becomes_the_same_operations_as_a_web_config() -> None:
    problems = Problems()
    source = read_toml(
        b'[apps.api]\nengine = "python"\npaths = ["*.py", "api/*"]\n'
        b'pythonpath = ["src", "lib"]\nworker_request_timeout = "x"\n'
        b'[apps.api.env]\nA = "1"\nN = 2\nB = true\n[locations]\nstatic = "none"\nx = "nope"\n',
        "corral.toml",
        problems,
    )
    assert source is not None
    sections = site_sections(source, problems)
    assert [str(e) for e in problems.errors] == [
        "corral.toml:5: worker_request_timeout: expected a whole number, got 'x'",
        "corral.toml:9: B: a variable's value is a string, got True",
        "corral.toml:12: x: no application named 'nope'",
    ]
    root, static = sections
    assert root.handlers is not None
    assert [(h.name, h.path, h.script_processor) for h in root.handlers] == [
        ("api#*.py", "*.py", "python"),
        ("api#api/*", "api/*", "python"),
    ]
    (app,) = root.zoo
    assert [(e.name, e.value) for e in app.env] == [
        ("PYTHONPATH", "src:lib"),
        ("A", "1"),
        ("N", "2"),
    ]
    assert static.folder == "static"
    assert static.handlers is not None and static.handlers[0].action == "clear"


@pytest.mark.parametrize(
    ("text", "address", "port", "hosts"),
    [
        ("*:80:example.com", "0.0.0.0", 80, ("example.com",)),
        ("127.0.0.1:8080:", "127.0.0.1", 8080, ()),
        ("[::1]:8080:Example.COM.", "::1", 8080, ("example.com",)),
        ("10.0.0.1:443:*.example.com", "10.0.0.1", 443, ("*.example.com",)),
    ],
)
def test_iis_binding_strings(text: str, address: str, port: int, hosts: tuple[str, ...]) -> None:
    binding = parse_binding(text, Location("s.toml", 3))
    assert (binding.address, binding.port, binding.hosts) == (address, port, hosts)


@pytest.mark.parametrize("bad", ["nohost", "1.2.3.4:x:host", {"port": 1, "extra": 2}, 7])
def test_bad_bindings(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_binding(bad, Location("s.toml", 3))


def test_converters() -> None:
    assert convert.to_int(" 42 ") == 42
    assert convert.to_bool("Enabled") is True and convert.to_bool("off") is False
    assert convert.to_choice("namedpipe", ("NamedPipe", "tcp")) == "NamedPipe"
    assert convert.to_mask("*.py; *.ini,web.config") == ("*.py", "*.ini", "web.config")
    assert convert.to_virtual_path("blog/") == "/blog"
    assert convert.to_virtual_path("") == "/"
    for bad_path in ("/a/../b", "/a\\b", "/a%2fb"):
        with pytest.raises(ValueError):
            convert.to_virtual_path(bad_path)
    for bad_int in (True, "1.5", "ten", None):
        with pytest.raises(ValueError):
            convert.to_int(bad_int)
    with pytest.raises(ValueError):
        convert.to_host_name("bad_host!")


def test_application_host_service_engine_with_several_servers() -> None:
    problems = Problems()
    server = read_application_host(
        b"""<configuration>
  <system.webServer><heliconZooServer>
    <engines>
      <add name="tier" transport="tcp.service" protocol="http"
           servers="10.0.0.1:8080 10.0.0.2:8080" healthCheck=":9100/readyz" slowStart="5" />
    </engines>
  </heliconZooServer></system.webServer>
</configuration>""",
        "applicationHost.config",
        problems,
    )
    assert server is not None and not problems.errors
    (tier,) = server.engines
    assert tier.service_addresses() == (("10.0.0.1", 8080), ("10.0.0.2", 8080))
    assert (tier.health_check, tier.slow_start) == (":9100/readyz", 5.0)
