"""The admin listener's settings: `[server] admin` / `metrics_token`, the `admin` and
`metricsToken` attributes of applicationHost.config's <heliconZooServer>, `--admin`; a bad
address is an error naming the file, the line and the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.config.test_server_settings import APPLICATION_HOST, _server

from corral.config import ConfigErrors, convert, load_server
from corral.config.check import render
from corral.ops.admin import is_loopback


def test_admin_is_off_by_default(tmp_path: Path) -> None:
    front = load_server(str(_server(tmp_path, ""))).front
    assert front.admin is None and front.metrics_token is None


def test_toml_admin_and_metrics_token(tmp_path: Path) -> None:
    path = _server(tmp_path, 'admin = "9100"\nmetrics_token = "s3cret"\n')
    front = load_server(str(path)).front
    assert front.admin == "127.0.0.1:9100"  # a port alone: loopback
    assert front.metrics_token == "s3cret"
    shown = render(load_server(str(path)))  # corral check
    assert "admin = 127.0.0.1:9100" in shown and "metrics_token = (set, not shown)" in shown
    assert "s3cret" not in shown
    path = _server(tmp_path, "admin = 9101\n")
    assert load_server(str(path)).front.admin == "127.0.0.1:9101"
    path = _server(tmp_path, 'admin = "[::1]:9102"\n')
    assert load_server(str(path)).front.admin == "[::1]:9102"


def test_a_bad_admin_address_names_file_line_and_setting(tmp_path: Path) -> None:
    path = _server(tmp_path, 'admin = "localhost:http"\n')
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(path))
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:2: admin: not HOST:PORT or PORT: 'localhost:http'"
    ]


def test_application_host_attributes(tmp_path: Path) -> None:
    xml = APPLICATION_HOST.replace(
        'maxBodySize="100"', 'admin="0.0.0.0:9100" metricsToken="from-xml" maxBodySize="100"'
    )
    path = _server(tmp_path, "", application_host=xml)
    front = load_server(str(path)).front
    assert front.admin == "0.0.0.0:9100"
    assert front.metrics_token == "from-xml"
    bad = APPLICATION_HOST.replace('maxBodySize="100"', 'admin="99999"')
    path = _server(tmp_path, "", application_host=bad)
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(path))
    host = tmp_path / "applicationHost.config"
    assert f"{host}:4: admin: not HOST:PORT or PORT: '99999'" in [
        str(e) for e in caught.value.errors
    ]


@given(st.integers(0, 65535), st.sampled_from(["127.0.0.1", "::1", "10.1.2.3", "localhost", ""]))
def test_to_listen_round_trips(port: int, host: str) -> None:
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}" if host else str(port)
    canonical = convert.to_listen(text)
    assert convert.to_listen(canonical) == canonical
    assert convert.split_listen(canonical) == (host or "127.0.0.1", port)


@pytest.mark.parametrize("text", ["", "x", "host:", ":-1", "1.2.3.4:70000", "[::1:80", "a b:1"])
def test_to_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        convert.to_listen(text)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
