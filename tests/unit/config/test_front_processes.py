"""``front_processes`` (issue 16): declared once, read from the server TOML, from
applicationHost.config's <heliconZooServer frontProcesses>, and from ``--front-processes``."""

from __future__ import annotations

from pathlib import Path

from tests.unit.config.test_server_settings import _server

from corral.cli import _process_options, build_parser
from corral.config import ConfigErrors, load_server

XML = """<configuration><system.webServer>
<heliconZooServer frontProcesses="2" /></system.webServer></configuration>"""


def test_the_default_is_auto(tmp_path: Path) -> None:
    assert load_server(str(_server(tmp_path, ""))).front.front_processes == 0


def test_from_the_toml_and_from_application_host_config(tmp_path: Path) -> None:
    assert load_server(str(_server(tmp_path, "front_processes = 3\n"))).front.front_processes == 3
    path = _server(tmp_path, "", application_host=XML)
    assert load_server(str(path)).front.front_processes == 2


def test_a_bad_value_names_file_line_and_setting(tmp_path: Path) -> None:
    path = _server(tmp_path, 'front_processes = "many"\n')
    try:
        load_server(str(path))
    except ConfigErrors as exc:
        assert f"{path}:2: front_processes: expected a whole number" in str(exc)
    else:
        raise AssertionError("accepted")


def test_the_command_line_holds_it() -> None:
    args = build_parser().parse_args(["serve", ".", "--front-processes", "4"])
    assert _process_options(args)["front_processes"] == 4
