"""What a configuration reload changes (runtime.reload.plan_reload), on configurations loaded
from real web.config files: where a value was written is not a change; what reaches a worker is."""

from __future__ import annotations

from pathlib import Path

from corral.config import load_site
from corral.config.model import ServerConfig
from corral.runtime.reload import config_files, plan_reload
from corral.runtime.watchrules import Change

CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>{comment}
  <system.webServer>
    <heliconZoo>
      <application name="{name}">
        <environmentVariables>
          <add name="GREETING" value="{greeting}" />
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="{name}#x64" scriptProcessor="python.3.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" preCondition="bitness64" />
    </handlers>
  </system.webServer>
</configuration>
"""


def site(
    root: Path, *, name: str = "app", greeting: str = "one", comment: str = ""
) -> ServerConfig:
    root.mkdir(exist_ok=True)
    (root / "web.config").write_text(CONFIG.format(name=name, greeting=greeting, comment=comment))
    return load_site(str(root), environ={})


def test_nothing_changed_and_moved_lines_are_not_changes(tmp_path: Path) -> None:
    old = site(tmp_path / "s")
    moved = site(tmp_path / "s", comment="\n  <!-- a comment shifts every line -->\n")
    plan = plan_reload(old, moved)
    assert plan.empty and plan.unchanged == (("default", "/", "app"),)
    assert not plan.listen_changed
    assert plan.describe() == "1 unchanged"


def test_a_changed_variable_changes_the_application(tmp_path: Path) -> None:
    old = site(tmp_path / "s")
    new = site(tmp_path / "s", greeting="two")
    plan = plan_reload(old, new)
    assert plan.changed == (("default", "/", "app"),) and not plan.unchanged


def test_a_renamed_application_is_one_removed_and_one_added(tmp_path: Path) -> None:
    old = site(tmp_path / "s")
    new = site(tmp_path / "s", name="renamed")
    plan = plan_reload(old, new)
    assert plan.removed == (("default", "/", "app"),)
    assert plan.added == (("default", "/", "renamed"),)
    assert plan.describe() == "1 added, 1 removed"


def test_running_applications_are_compared_rather_than_the_last_configuration(
    tmp_path: Path,
) -> None:
    """A changed application whose new configuration could not start still runs the old one:
    the next reload compares against what runs."""
    first = site(tmp_path / "s")
    second = site(tmp_path / "s", greeting="two")
    assert plan_reload(second, second, first.apps).changed == (("default", "/", "app"),)


def test_the_configuration_files_to_watch(tmp_path: Path) -> None:
    config = site(tmp_path / "s")
    files = config_files(config)
    root = str((tmp_path / "s").resolve())
    assert files.folders == (root,)
    assert files.classify(f"{root}/web.config") is Change.OTHER
    assert files.classify(f"{root}/sub/web.config") is Change.OTHER  # a new one appears
    assert files.classify(f"{root}/corral.toml") is Change.OTHER
    assert files.classify(f"{root}/app.py") is None
