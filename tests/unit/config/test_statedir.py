"""The bundled example's logs go to the state directory, never into Corral's installed package
(issue 10, item 20); a user's own site keeps its logs where its configuration says."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from corral.cli import default_site
from corral.config import load_site
from corral.config.statedir import package_site_state, state_home


def test_the_state_home_follows_xdg_then_home_then_the_temp_folder(tmp_path: Path) -> None:
    xdg, home = tmp_path / "xdg", tmp_path / "home"
    assert state_home({"XDG_STATE_HOME": str(xdg), "HOME": str(home)}) == f"{xdg}/corral"
    assert state_home({"XDG_STATE_HOME": "relative", "HOME": str(home)}) == (
        f"{home}/.local/state/corral"
    )
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    fallback = os.path.join(tempfile.gettempdir(), f"corral-{os.getuid()}", "state")
    if os.access(locked, os.W_OK):  # root writes anywhere: nothing to fall back from
        return
    assert state_home({"XDG_STATE_HOME": str(locked / "x"), "HOME": str(locked)}) == fallback


def test_the_bundled_examples_error_log_goes_under_the_state_directory(tmp_path: Path) -> None:
    environ = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    (app,) = load_site(str(default_site()), environ=environ).apps
    assert app.error_log_dir == f"{tmp_path}/state/corral/examples/hello/log"
    assert package_site_state(str(default_site()), environ) == (
        f"{tmp_path}/state/corral/examples/hello"
    )


def test_a_users_site_keeps_its_log_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(default_site(), site, ignore=shutil.ignore_patterns("__pycache__", "log"))
    environ = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    (app,) = load_site(str(site), environ=environ).apps
    assert app.error_log_dir == f"{os.path.realpath(site)}/log"
    assert package_site_state(str(site), environ) is None
