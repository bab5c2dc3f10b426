"""Zoo 4 `.zoo` files: the reader (located operations, errors with file:line) and what the
loader makes of them (one application, its preset, its locations, precedence with web.config).

The shapes are those of Helicon Zoo 4's repository templates (Python, Node.js, PHP) and of a
real `.zoo` the Manager wrote (a Ruby project).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.config import ConfigErrors, load, load_site
from corral.config.check import render
from corral.config.errors import Problems
from corral.config.zoofile import read_zoofile

PYTHON_ZOO = """\
application:
  application: PythonProject
  title: Python sample project
  install_command: |
    os.cmd(r'venv\\scripts\\pip.exe install --requirement=requirements.txt')
  parameters:
    app-name: /py
    selected-engine: Python34.FCGI.Engine
    physical-path: c:\\inetpub\\py
  engines:
  - engine: Python34.FCGI.Engine
    environment_variables:
      PYTHONPATH: "%APPL_PHYSICAL_PATH%"
      ERROR_LOG_DIR: "log"
      WSGI_HANDLER: "welcome.application"
  - engine: Python34.HTTP.Engine
    environment_variables:
      HTTP_WORKER: 'tornado_worker.py'
  locations:
  - path: 'static'
    engine: none
  - path: '*'
    engine: selected-engine
"""

NODE_ZOO = """\
application:
  application: NodeJsProject
  parameters:
    selected-engine: NodejsEngine
  engines:
  - engine: NodejsEngine
    path: "*"
    environment_variables:
      APP_WORKER: "app.js"
      NODE_PATH: "%APPL_PHYSICAL_PATH%\\\\node_modules"
  locations:
    - engine: none
      path: "public/"
    - engine: selected-engine
      path: "*"
"""

PHP_ZOO = """\
application:
  application: PhpProject
  parameters:
    selected-engine: Php55Engine
  engines:
  - engine: Php55Engine
    path: ".php"
    environment_variables:
      PHP_INI: '%APPL_PHYSICAL_PATH%\\php55.local.ini'
  - engine: Php54Engine
    path: ".php"
    environment_variables:
      PHP_INI: '%APPL_PHYSICAL_PATH%\\php54.local.ini'
  locations:
  - engine: selected-engine
    path: "*.php"
"""

#: As Zoo 4's Manager wrote it (robbforce/openproject's .zoo, shortened): no locations
#: default, an explicit engine id in locations, the product record kept.
RUBY_ZOO = """\
application:
  application: ZooRubyProject
  title: Ruby Project
  version: '1.0'
  installed_version: ''
  dependencies:
  - or:
    - Ruby.2.3.FCGI.Engine
  files:
  - file: C:\\Zoo\\zoo_repository\\Templates\\Ruby\\template.zip
    filename: template.zip
  parameters:
    site-name: App Dev Solutions
    create-app: true
    app-name: /openproject
    selected-engine: Ruby.2.3.FCGI.Engine
    app-pool-name: openproject
    physical-path: c:\\inetpub\\App Dev Solutions\\openproject
  engines:
  - engine: Ruby.2.3.FCGI.Engine
    environment_variables:
      RAILS_RELATIVE_URL_ROOT: '%APPL_VIRTUAL_PATH%'
      RACK_ENV: development
      ERROR_LOG_DIR: log
  database_type: null
  start_page: null
  locations:
  - path: public
    engine: none
  - path: '*'
    engine: Ruby.2.3.FCGI.Engine
  name: ZooRubyProject
  has_upgrade: false
  is_upgradable: false
"""


def site(tmp_path: Path, zoo: str, **files: str) -> Path:
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / ".zoo").write_text(zoo)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def errors_of(folder: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_site(str(folder))
    return [str(error) for error in caught.value.errors]


# --- the shapes ----------------------------------------------------------------------------


def test_python_project_the_selected_engines_preset_and_a_static_location(
    tmp_path: Path,
) -> None:
    folder = site(tmp_path, PYTHON_ZOO)
    config = load_site(str(folder))
    (app,) = config.apps
    assert app.name == "PythonProject"
    assert app.engine.name == "Python34.FCGI.Engine"
    assert app.engine.origin == "built-in (python)"
    env = app.env_dict()
    assert env["WSGI_HANDLER"] == "welcome.application"
    assert "HTTP_WORKER" not in env  # another engine's preset
    assert app.error_log_dir == str(folder / "log")
    (mount,) = config.sites[0].mounts
    scopes = {scope.folder: scope for scope in mount.scopes}
    assert [h.path for h in scopes[""].handlers] == ["*"]
    assert scopes["static"].handlers == ()  # engine none: static files
    # Each handler points at the line that chose its engine: the selected-engine parameter.
    assert scopes[""].handlers[0].location is not None
    assert scopes[""].handlers[0].location.line == 8
    text = render(config)
    assert ".zoo:4: application.install_command is Zoo's installer code" in text


def test_node_project_public_folder_is_static(tmp_path: Path) -> None:
    folder = site(tmp_path, NODE_ZOO, **{"app.js": "", "public/.zoo": ""})
    config = load_site(str(folder))
    (app,) = config.apps
    assert app.engine.origin == "built-in (nodejs.http)"
    assert app.argv == ("node", "app.js")  # run in the application's folder
    assert app.current_directory == str(folder)
    scopes = {scope.folder: scope for scope in config.sites[0].mounts[0].scopes}
    assert scopes["public"].handlers == ()


def test_php_project_pattern_location(tmp_path: Path) -> None:
    folder = site(tmp_path, PHP_ZOO)
    (app,) = load_site(str(folder)).apps
    assert [h.path for h in app.handlers] == ["*.php"]
    assert app.env_dict()["PHP_INI"].endswith("php55.local.ini")


def test_an_engine_filter_narrows_the_star_location(tmp_path: Path) -> None:
    zoo = PHP_ZOO.replace('path: "*.php"', 'path: "*"')
    (app,) = load_site(str(site(tmp_path, zoo))).apps
    assert [h.path for h in app.handlers] == ["*.php"]


def test_a_real_manager_written_zoo_file_is_read_whole(tmp_path: Path) -> None:
    folder = site(tmp_path, RUBY_ZOO, **{"config.ru": ""})
    config = load_site(str(folder))
    (app,) = config.apps
    assert app.engine.origin == "built-in (ruby.rack)"
    assert app.env_dict()["RACK_ENV"] == "development"
    assert not config.not_in_effect  # every key is a known one


def test_without_locations_everything_goes_to_the_selected_engine(tmp_path: Path) -> None:
    zoo = PYTHON_ZOO.split("  locations:")[0]
    (app,) = load_site(str(site(tmp_path, zoo))).apps
    assert [h.path for h in app.handlers] == ["*"]


def test_a_check_of_the_zoo_file_itself_reads_its_folder(tmp_path: Path) -> None:
    folder = site(tmp_path, PYTHON_ZOO)
    assert load(str(folder / ".zoo")).apps[0].name == "PythonProject"


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    zoo = PYTHON_ZOO.replace("  title:", "  colour: blue\n  title:").replace(
        "    app-name:", "    app-colour: red\n    app-name:"
    )
    config = load_site(str(site(tmp_path, zoo)))
    named = {
        (item.setting, item.location.line if item.location else 0) for item in config.not_in_effect
    }
    assert ("application.colour (unknown key)", 3) in named
    assert ("application.parameters.app-colour (unknown key)", 8) in named
    assert "application.colour (unknown key)" in render(config)


def test_a_password_in_the_file_is_pointed_out(tmp_path: Path) -> None:
    zoo = PYTHON_ZOO.replace("    app-name:", "    db-password: s3cret\n    app-name:")
    config = load_site(str(site(tmp_path, zoo)))
    assert any("db-password is a password kept in the web root" in n for n in config.notices)
    assert "s3cret" not in render(config)


def test_the_python_http_engines_worker_script_is_named_as_not_run(tmp_path: Path) -> None:
    zoo = PYTHON_ZOO.replace(
        "selected-engine: Python34.FCGI.Engine", "selected-engine: Python34.HTTP.Engine"
    )
    config = load_site(str(site(tmp_path, zoo)))
    assert any("HTTP_WORKER (tornado_worker.py) is not run" in n for n in config.notices)


# --- precedence and sub-folders ----------------------------------------------------------------

WEB_CONFIG = """<?xml version="1.0"?>
<configuration><system.webServer><handlers>
  <add name="web" path="*" scriptProcessor="python" modules="HeliconZoo_x64" />
</handlers></system.webServer></configuration>
"""


def test_a_web_config_mapping_handlers_wins_over_the_zoo_file(tmp_path: Path) -> None:
    folder = site(tmp_path, PYTHON_ZOO, **{"web.config": WEB_CONFIG})
    config = load_site(str(folder))
    assert [app.name for app in config.apps] == ["web"]
    assert any(".zoo is not read" in notice and "web.config" in notice for notice in config.notices)


def test_a_web_config_without_handlers_leaves_the_zoo_file_in_charge(tmp_path: Path) -> None:
    rules = (
        '<?xml version="1.0"?><configuration><system.webServer><defaultDocument>'
        '<files><add value="start.html" /></files></defaultDocument></system.webServer>'
        "</configuration>"
    )
    config = load_site(str(site(tmp_path, PYTHON_ZOO, **{"web.config": rules})))
    assert [app.name for app in config.apps] == ["PythonProject"]
    assert "start.html" in config.sites[0].mounts[0].static.default_documents


def test_a_zoo_application_in_a_sub_folder_is_named_not_in_effect(tmp_path: Path) -> None:
    folder = site(tmp_path, PYTHON_ZOO, **{"sub/.zoo": NODE_ZOO})
    config = load_site(str(folder))
    assert [app.name for app in config.apps] == ["PythonProject"]
    assert any("sub-folder" in item.setting for item in config.not_in_effect)


# --- errors, each with file:line and setting ---------------------------------------------------


def test_bad_yaml_names_its_line(tmp_path: Path) -> None:
    folder = site(tmp_path, "application:\n  parameters:\n    selected-engine: [x\n  engines: 1\n")
    (error,) = errors_of(folder)
    assert error.startswith(f"{folder / '.zoo'}:4: YAML: ")


def test_an_unknown_engine_names_the_selected_engine_line(tmp_path: Path) -> None:
    zoo = PYTHON_ZOO.replace(
        "selected-engine: Python34.FCGI.Engine", "selected-engine: Cobol.Engine"
    )
    (error,) = errors_of(site(tmp_path, zoo))
    assert error.startswith(
        f"{tmp_path / 'site' / '.zoo'}:8: selected-engine: unknown engine 'Cobol.Engine'"
    )


@pytest.mark.parametrize(
    ("change", "line", "setting", "message"),
    [
        (
            ('ERROR_LOG_DIR: "log"', "WORKER_REQUEST_TIMEOUT: soon"),
            14,
            "WORKER_REQUEST_TIMEOUT",
            "",
        ),
        (
            (
                PYTHON_ZOO.partition("  locations:")[1] + PYTHON_ZOO.partition("  locations:")[2],
                "  locations: static\n",
            ),
            19,
            "application.locations",
            "must be a list",
        ),
        (
            ("engine: none", "engine: Python27.FCGI.Engine"),
            21,
            "application.locations.engine",
            "is not the selected engine",
        ),
        (("path: 'static'", "path: '../up'"), 20, "application.locations.path", "neither a folder"),
        (
            ("path: 'static'", "path: '*.html'"),
            20,
            "application.locations.engine",
            "engine none is for folders",
        ),
        (
            (
                "    environment_variables:\n      PYTHONPATH",
                "    colour: 1\n    environment_variables:\n      PYTHONPATH",
            ),
            12,
            "application.engines.colour",
            "unknown key",
        ),
        (
            ('WSGI_HANDLER: "welcome.application"', "WSGI_HANDLER: [a, b]"),
            15,
            "WSGI_HANDLER",
            "must be a value",
        ),
        (
            ('ERROR_LOG_DIR: "log"', 'ERROR_LOG_DIR: "log"\n      ERROR_LOG_DIR: x'),
            15,
            "application.engines.environment_variables.ERROR_LOG_DIR",
            "duplicate key",
        ),
        (
            ("    selected-engine: Python34.FCGI.Engine\n", ""),
            7,
            "application.parameters.selected-engine",
            "missing",
        ),
        (
            ("- engine: Python34.HTTP.Engine", "- engine: Python34.FCGI.Engine"),
            16,
            "application.engines.engine",
            "a second preset",
        ),
        (
            ("application: PythonProject", "application: Python Project/1"),
            2,
            "application.application",
            "no application id",
        ),
        (
            ('ERROR_LOG_DIR: "log"', "ERROR_LOG_LEVEL: loud"),
            14,
            "ERROR_LOG_LEVEL",
            "expected one of",
        ),
    ],
)
def test_a_bad_value_names_file_line_and_setting(
    tmp_path: Path, change: tuple[str, str], line: int, setting: str, message: str
) -> None:
    assert change[0] in PYTHON_ZOO
    folder = site(tmp_path, PYTHON_ZOO.replace(change[0], change[1], 1))
    errors = errors_of(folder)
    prefix = f"{folder / '.zoo'}:{line}: {setting}: "
    assert any(e.startswith(prefix) and message in e for e in errors), errors


def test_a_zoo_file_that_is_no_mapping_is_an_error(tmp_path: Path) -> None:
    (error,) = errors_of(site(tmp_path, "- application: x\n"))
    assert ":1: .zoo: must be a mapping" in error


def test_yaml_tags_are_never_constructed(tmp_path: Path) -> None:
    # Zoo itself used yaml.load: a tag could run code. The node tree is walked, never built.
    mark = tmp_path / "constructed"
    zoo = PYTHON_ZOO.replace(
        '"welcome.application"', f"!!python/object/apply:os.system ['touch {mark}']"
    )
    errors = errors_of(site(tmp_path, zoo))
    assert any(":15: WSGI_HANDLER: must be a value" in error for error in errors), errors
    assert not mark.exists()


# --- properties ---------------------------------------------------------------------------------

_NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True)
_VALUES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=st.dictionaries(_NAMES, _VALUES, max_size=6))
def test_any_preset_round_trips_with_its_lines(env: dict[str, str]) -> None:
    document = {
        "application": {
            "parameters": {"selected-engine": "Python34.FCGI.Engine"},
            "engines": [{"engine": "Python34.FCGI.Engine", "environment_variables": env}],
        }
    }
    text = yaml.safe_dump(document, default_flow_style=False, allow_unicode=True)
    problems = Problems()
    zoo = read_zoofile(text.encode(), ".zoo", problems)
    assert not problems.errors
    assert zoo is not None
    (app_op,) = zoo.sections[0].zoo
    assert {op.name: op.value for op in app_op.env} == env
    lines = text.splitlines()
    for op in app_op.env:
        assert (
            lines[op.location.line - 1].lstrip().startswith(yaml.safe_dump(op.name).split("\n")[0])
        )


_KEYS = st.sampled_from(
    [
        "application",
        "parameters",
        "selected-engine",
        "engines",
        "locations",
        "engine",
        "path",
        "environment_variables",
        "X",
    ]
)
#: Documents of .zoo's own keys nested any which way: every branch of the walker.
_DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
).map(lambda document: yaml.safe_dump(document).encode())


@settings(max_examples=300)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode) | _DOCUMENTS)
def test_any_bytes_give_a_file_or_located_problems(data: bytes) -> None:
    problems = Problems()
    zoo = read_zoofile(data, ".zoo", problems)
    if zoo is None:
        assert problems.errors
    for error in problems.errors:
        assert error.location.file == ".zoo" and error.location.line >= 1


def test_the_reference_shapes_have_no_problems() -> None:
    for text in (PYTHON_ZOO, NODE_ZOO, PHP_ZOO, RUBY_ZOO, textwrap.dedent("")):
        problems = Problems()
        assert read_zoofile(text.encode(), ".zoo", problems) is not None
        assert not problems.errors
