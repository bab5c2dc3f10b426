"""`ops.tenants`: who each application runs as, the warnings and refusals about root, unknown
users, and the report of what enforces the limits."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from corral.config import load_server
from corral.config.model import FrontSettings, ServerConfig
from corral.ops import tenants as tenants_module
from corral.ops.tenants import Tenants
from corral.supervision import identity
from corral.supervision.cgroups import Hierarchy
from corral.supervision.tenancy import Mechanism, RunAs

APP_TOML = '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'


def _config(tmp_path: Path, site_lines: str) -> ServerConfig:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "corral.toml").write_text(APP_TOML)
    path = tmp_path / "server.toml"
    path.write_text(
        f'[sites.main]\nbindings = ["127.0.0.1:8080:"]\n{site_lines}\n'
        '[sites.main.apps."/"]\nphysical_path = "site"\n'
    )
    return load_server(str(path))


def _tenants(
    config: ServerConfig,
    front: FrontSettings | None = None,
    *,
    euid: int,
    monkeypatch: pytest.MonkeyPatch,
    mechanism: Mechanism = Mechanism.CGROUP_V1,
) -> Tenants:
    monkeypatch.setattr(tenants_module.os, "geteuid", lambda: euid)
    monkeypatch.setattr(tenants_module, "_can_switch_users", lambda: euid == 0)
    return Tenants(config, front or FrontSettings(), "www-1", hierarchy=Hierarchy(mechanism))


def test_root_without_a_user_is_a_warning_naming_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _tenants(_config(tmp_path, ""), euid=0, monkeypatch=monkeypatch)
    errors, warnings = found.problems()
    assert errors == []
    assert warnings == [
        "main:/:main has no user of its own and runs as root (set user in its site's or "
        "mount's table; [server] allow_root_apps = false refuses this)"
    ]


def test_allow_root_apps_false_refuses_with_the_sites_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front = replace(FrontSettings(), allow_root_apps=False)
    found = _tenants(_config(tmp_path, ""), front, euid=0, monkeypatch=monkeypatch)
    errors, warnings = found.problems()
    assert warnings == []
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'server.toml'}:1: user: main:/:main would run as root ([server] "
        "allow_root_apps = false): give its site or mount a user"
    ]


def test_not_root_no_warning_and_a_user_of_its_own_needs_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _tenants(_config(tmp_path, ""), euid=1000, monkeypatch=monkeypatch).problems() == (
        [],
        [],
    )
    other = tmp_path / "other"
    other.mkdir()
    config = _config(other, 'user = "nobody"')
    errors, _ = _tenants(config, euid=1000, monkeypatch=monkeypatch).problems()
    assert len(errors) == 1 and "Corral is not running as root" in str(errors[0])
    assert str(errors[0]).startswith(f"{other / 'server.toml'}:3: user: ")


def test_an_unknown_user_is_an_error_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, 'user = "no-such-user-here"')
    errors, _ = _tenants(config, euid=0, monkeypatch=monkeypatch).problems()
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'server.toml'}:3: user: no such user: 'no-such-user-here'"
    ]


def test_report_and_confiner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, 'user = "nobody"\nmemory_hard_limit = 64\ncpu_quota = 150')
    found = _tenants(config, euid=0, monkeypatch=monkeypatch, mechanism=Mechanism.RLIMITS)
    assert found.problems()[0] == []
    assert found.report() == [
        "limits enforced by: rlimits",
        "main:/:main: runs as nobody",
        "main:/:main: memory_hard_limit 64 MB: RLIMIT_AS, address space per process (no cgroups)",
        "main:/:main: cpu_quota 150%: NOT ENFORCED (no cgroups)",
    ]
    confiner = found.confiner_for(config.apps[0])
    assert confiner is not None and confiner.run_as is not None
    assert confiner.run_as.user == "nobody" and confiner.limits.memory_mb == 64


def test_a_group_without_a_user_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, 'group = "nogroup"')
    errors, _ = _tenants(config, euid=0, monkeypatch=monkeypatch).problems()
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'server.toml'}:1: group: main:/:main has a group but no user (set user too)"
    ]


@pytest.fixture
def open_path() -> Iterator[Path]:
    """A fresh folder every user may traverse (pytest's own are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="corral-reach-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_folder_the_user_cannot_reach_is_a_warning(
    open_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = open_path
    config = _config(tmp_path, 'user = "nobody"')
    tmp_path.chmod(0o700)  # the site's parent: closed to nobody
    try:
        _, warnings = _tenants(config, euid=0, monkeypatch=monkeypatch).problems()
    finally:
        tmp_path.chmod(0o755)
    assert f"main:/:main runs as nobody, who cannot reach {tmp_path} on the way to its folder" in (
        "\n".join(warnings)
    )
    _, warnings = _tenants(config, euid=0, monkeypatch=monkeypatch).problems()
    assert not any(f"reach {tmp_path}" in warning for warning in warnings), warnings


def test_unreachable_follows_symlinks_and_reads_mode_bits(open_path: Path) -> None:
    tmp_path = open_path
    nobody = RunAs("nobody", 65534, 65534, (65534,), "/nonexistent")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    target = closed / "python"
    target.write_text("")
    target.chmod(0o755)
    link = tmp_path / "python"
    link.symlink_to(target)
    tmp_path.chmod(0o755)
    assert identity.unreachable(str(link), nobody) == str(closed)
    closed.chmod(0o711)
    assert identity.unreachable(str(link), nobody) is None
    target.chmod(0o700)
    assert identity.unreachable(str(link), nobody) == str(target)
    assert identity.unreachable(str(tmp_path / "missing"), nobody) is None
