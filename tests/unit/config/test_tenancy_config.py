"""Users and limits (`tenant.*`, issue 13): read from the server TOML's site and mount tables
and from applicationHost.config's application pools, layered, validated with file, line and
setting; never from an application's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import ConfigErrors, load_server
from corral.config.model import Tenancy
from corral.config.settings import TENANT_BY_ATTRIBUTE, TENANT_BY_TOML, Scope, by_scope

APP_TOML = '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'


def _server(
    tmp_path: Path, site_lines: str, mount_lines: str = "", *, host_config: str | None = None
) -> Path:
    for name in ("site", "blog"):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "corral.toml").write_text(APP_TOML)
    head = ""
    if host_config is not None:
        (tmp_path / "applicationHost.config").write_text(host_config)
        head = '[server]\napplication_host = "applicationHost.config"\n'
    path = tmp_path / "server.toml"
    path.write_text(
        head + '[sites.main]\nbindings = ["127.0.0.1:8080:"]\n'
        f"{site_lines}\n"
        '[sites.main.apps."/"]\nphysical_path = "site"\n'
        '[sites.main.apps."/blog"]\nphysical_path = "blog"\n'
        f"{mount_lines}\n"
    )
    return path


def _tenancy(path: Path) -> dict[str, Tenancy]:
    return {app.virtual_path: app.tenancy for app in load_server(str(path)).apps}


def test_every_tenant_setting_has_a_toml_key_and_a_camel_case_spelling() -> None:
    declared = by_scope(Scope.TENANT)
    assert {s.toml_key for s in declared} == {
        "user",
        "group",
        "memory_hard_limit",
        "cpu_quota",
        "max_processes",
        "max_open_files",
    }
    assert set(TENANT_BY_TOML) == {s.toml_key for s in declared}
    assert {"memoryHardLimit", "cpuQuota", "maxProcesses", "maxOpenFiles"} <= set(
        TENANT_BY_ATTRIBUTE
    )
    assert set(Tenancy.__dataclass_fields__) >= {s.attribute for s in declared}


def test_the_site_table_applies_to_every_mount_and_a_mount_table_wins(tmp_path: Path) -> None:
    path = _server(
        tmp_path,
        'user = "alice"\nmemory_hard_limit = 256\ncpu_quota = 50',
        'user = "bob"\ngroup = "staff"\nmax_processes = 20\nmax_open_files = 1024',
    )
    found = _tenancy(path)
    assert found["/"].user == "alice" and found["/"].memory_hard_limit == 256
    assert found["/"].cpu_quota == 50 and found["/"].max_processes == 0
    blog = found["/blog"]
    assert (blog.user, blog.group, blog.memory_hard_limit, blog.cpu_quota) == (
        "bob",
        "staff",
        256,
        50,
    )
    assert (blog.max_processes, blog.max_open_files) == (20, 1024)
    assert blog.location is not None and blog.location.line == 10  # where bob was set


def test_no_user_and_no_limit_by_default(tmp_path: Path) -> None:
    assert set(_tenancy(_server(tmp_path, "")).values()) == {Tenancy()}


def test_a_bad_value_names_file_line_and_key(tmp_path: Path) -> None:
    path = _server(tmp_path, "memory_hard_limit = -5", 'max_processes = "many"')
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(path))
    errors = [str(error) for error in caught.value.errors]
    assert any(e.startswith(f"{path}:3: memory_hard_limit: ") for e in errors), errors
    assert any(e.startswith(f"{path}:8: max_processes: ") for e in errors), errors


def test_an_unknown_key_in_a_mount_table_suggests_the_tenant_keys(tmp_path: Path) -> None:
    path = _server(tmp_path, "", "max_process = 3")
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(path))
    assert "did you mean 'max_processes'" in str(caught.value)


def test_an_application_cannot_set_its_own_user_or_limits(tmp_path: Path) -> None:
    path = _server(tmp_path, "")
    (tmp_path / "site" / "corral.toml").write_text(APP_TOML + 'user = "root"\n')
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(path))
    assert "unknown application setting" in str(caught.value)


HOST_CONFIG = """<?xml version="1.0"?>
<configuration>
  <system.applicationHost>
    <applicationPools>
      <add name="alicePool" managedRuntimeVersion="" memoryHardLimit="128" cpuQuota="25">
        <processModel identityType="SpecificUser" userName="alice" />
      </add>
      <add name="blogPool" maxProcesses="30" maxOpenFiles="256">
        <processModel userName="bob" groupName="www" />
      </add>
    </applicationPools>
    <sites>
      <site name="main" id="1">
        <application path="/" applicationPool="alicePool" />
        <application path="/blog" applicationPool="blogPool" />
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def test_application_pools_map_to_users_and_limits(tmp_path: Path) -> None:
    found = _tenancy(_server(tmp_path, "", host_config=HOST_CONFIG))
    root, blog = found["/"], found["/blog"]
    assert (root.user, root.group, root.memory_hard_limit, root.cpu_quota) == (
        "alice",
        None,
        128,
        25,
    )
    # The mount's pool over the site's: bob and his limits, alice's memory and CPU.
    assert (blog.user, blog.group, blog.max_processes, blog.max_open_files) == (
        "bob",
        "www",
        30,
        256,
    )
    assert (blog.memory_hard_limit, blog.cpu_quota) == (128, 25)


def test_the_server_toml_wins_over_the_application_pool(tmp_path: Path) -> None:
    found = _tenancy(_server(tmp_path, 'user = "carol"', host_config=HOST_CONFIG))
    assert found["/"].user == "carol" and found["/"].memory_hard_limit == 128
    assert found["/blog"].user == "carol"  # the TOML site table is above every pool


def test_an_unknown_application_pool_is_an_error(tmp_path: Path) -> None:
    broken = HOST_CONFIG.replace('applicationPool="blogPool"', 'applicationPool="blogPol"')
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(_server(tmp_path, "", host_config=broken)))
    assert (
        "config:15: applicationPool: no application pool named 'blogPol'; did you mean 'blogPool'?"
        in str(caught.value)
    )


def test_a_bad_pool_attribute_names_its_spelling(tmp_path: Path) -> None:
    broken = HOST_CONFIG.replace('cpuQuota="25"', 'cpuQuota="lots"')
    with pytest.raises(ConfigErrors) as caught:
        load_server(str(_server(tmp_path, "", host_config=broken)))
    assert "applicationHost.config:5: cpuQuota:" in str(caught.value)
