"""A virtualenv that the deploy script makes: VIRTUAL_ENV may name a folder that does not exist
yet when DEPLOY_FILE is set; the script runs under the engine's Python until it exists, and the
workers use its bin/python (issue 15, "Templates")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from corral.config import ConfigErrors, load_site
from corral.runtime.controller import runtime_spec
from corral.runtime.deploy import DeployCommand
from corral.supervision.launch import python_worker_plan

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/zoo"}

SITE = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="made.by.deploy">
        <environmentVariables>
          <add name="VIRTUAL_ENV" value="%APPL_PHYSICAL_PATH%\\venv" />
          <add name="PATH" value="%APPL_PHYSICAL_PATH%\\venv\\Scripts;%PATH%" />
{deploy}
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="made.by.deploy" scriptProcessor="python.3.x.wsgi" path="*" verb="*"
           modules="HeliconZoo_x64" />
    </handlers>
  </system.webServer>
</configuration>
"""


def _site(tmp_path: Path, *, deploy: bool) -> Path:
    line = '          <add name="DEPLOY_FILE" value="deploy.py" />' if deploy else ""
    (tmp_path / "web.config").write_text(SITE.format(deploy=line))
    (tmp_path / "deploy.py").write_text("print('deploying')\n")
    return tmp_path


def test_a_virtualenv_the_deploy_script_makes_is_the_workers_interpreter(tmp_path: Path) -> None:
    root = _site(tmp_path, deploy=True)
    (app,) = load_site(str(root), environ=ENV).apps
    assert app.interpreter == f"{root}/venv/bin/python"
    assert app.argv[0] == f"{root}/venv/bin/python"
    assert app.base_interpreter == sys.executable
    # Zoo's Windows Scripts folder is the POSIX bin/ even before the virtualenv exists.
    assert app.env_dict()["PATH"].split(os.pathsep)[0] == f"{root}/venv/bin"
    assert any("has no bin/python yet" in notice for notice in app.notices)


def test_without_a_deploy_script_a_missing_virtualenv_is_still_an_error(tmp_path: Path) -> None:
    root = _site(tmp_path, deploy=False)
    with pytest.raises(ConfigErrors) as caught:
        load_site(str(root), environ=ENV)
    assert "VIRTUAL_ENV" in str(caught.value)


def test_a_windows_virtualenv_is_an_error_even_with_a_deploy_script(tmp_path: Path) -> None:
    root = _site(tmp_path, deploy=True)
    (root / "venv" / "Scripts").mkdir(parents=True)
    with pytest.raises(ConfigErrors):
        load_site(str(root), environ=ENV)


def test_the_deploy_command_picks_its_interpreter_when_it_runs(tmp_path: Path) -> None:
    root = _site(tmp_path, deploy=True)
    (app,) = load_site(str(root), environ=ENV).apps
    plan = python_worker_plan(root, python=app.interpreter, base_env=dict(app.env))
    command = runtime_spec(app, plan).deploy
    assert isinstance(command, DeployCommand)
    script = str(root / "deploy.py")
    # Before the script has made the virtualenv: the engine's Python runs it.
    assert command.argv == (sys.executable, script)
    python = root / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    # Afterwards (the next run, e.g. after the script changed): the virtualenv's.
    assert command.argv == (str(python), script)


def test_no_fallback_when_the_workers_run_the_engines_python(tmp_path: Path) -> None:
    command = DeployCommand(script="/x/deploy.py", interpreter="/no/such/python", env={}, cwd="/")
    assert command.argv == ("/no/such/python", "/x/deploy.py")
