"""Engines with transport "unix" (issue 10, item 1): the command listens itself on a Unix
socket at a path Corral gives each worker (``launch.WorkerSocket.UNIX_PATH``); %SOCKET% stays in
the plan for the process layer to fill in; Corral's Python worker cannot be run that way."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.app import ServeOptions, build_apps
from corral.config import load_site
from corral.config.expand import finish
from corral.config.model import Transport
from corral.engines import Unsupported, backend_for, kind_for, pool_settings_for
from corral.supervision.launch import WorkerSocket


def test_a_command_engine_on_a_unix_socket(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        '[engines."ruby.puma"]\ntransport = "unix"\n'
        'arguments = "-b unix://%SOCKET% --tag app-%INSTANCE_ID%"\n'
        '[apps.a]\nengine = "ruby.puma"\n'
    )
    (app,) = load_site(str(tmp_path)).apps
    assert app.engine.transport is Transport.UNIX
    assert kind_for(app.engine).name == "port-command"
    backend = backend_for(app, pool_settings_for(app))
    assert backend.plan is not None
    assert backend.plan.transport is WorkerSocket.UNIX_PATH
    assert backend.plan.transport.command_listens and backend.plan.transport.socket_file
    assert backend.plan.argv[-4:] == ("-b", "unix://%SOCKET%", "--tag", "app-%INSTANCE_ID%")
    assert backend.http and backend.upgrade
    filled = finish("unix://%socket%", port=None, host=None, instance_id=2, socket="/r/2.sock")
    assert filled == "unix:///r/2.sock"


def test_the_python_worker_is_refused_on_a_unix_path(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(
        '[engines.python]\ntransport = "unix"\n[apps.a]\nengine = "python"\n'
    )
    config = load_site(str(tmp_path))
    with pytest.raises(Unsupported) as caught:
        build_apps(config, ServeOptions(path=tmp_path))
    (error,) = caught.value.errors
    assert error.setting == "transport"
    assert "takes its socket at fd 0" in str(error)
