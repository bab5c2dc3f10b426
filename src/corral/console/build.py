"""An application's console route, from its configuration: what the host calls (``app.py``).

The shell's environment and folder are the application's workers' own: the ``LaunchPlan`` the
engine built for them (``engines``; ``supervision.launch``), or, for an application whose
backend Corral does not start (a ``tcp.service`` engine), the same variables finished the same
way (``config.expand.finish_env``) in its CURRENT_DIRECTORY. (Running the shell as the
application's user: the shell enters the pool's confinement, its user, cgroup and limits.)

The admin token is the admin listener's (``ops.token.admin_token``: ``CORRAL_ADMIN_TOKEN`` or the
0600 file in the runtime folder); ``console_guard`` reads (or makes) it once per start or reload.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

from corral.config.expand import finish_env
from corral.config.model import AppConfig
from corral.console.endpoint import Console
from corral.console.page import Assets
from corral.console.shell import ShellPlan, login_shell, shell_plan
from corral.console.terminal import SessionSpec
from corral.front.routes import NO_POOL, AppRoute
from corral.front.settings import FrontSettings
from corral.ops.rundir import ensure, name_for, runtime_dir
from corral.ops.token import TokenGuard, admin_token
from corral.supervision.confine import Confiner
from corral.supervision.launch import LaunchPlan
from corral.supervision.pool import Pool
from corral.supervision.tenancy import worker_env

logger = logging.getLogger("corral.console")

#: Longest gap between the pings a console sends (the front's tunnel idle timeout halves it).
KEEPALIVE = 30.0


def console_guard(config_path: Path) -> TokenGuard | None:
    """The admin token's check (None, logged, when there is no token to be had)."""
    try:
        token = admin_token(ensure(runtime_dir()), name_for(config_path))
    except OSError as exc:
        logger.error("web console: no admin token (%s): every console answers 503", exc)
        return None
    where = "CORRAL_ADMIN_TOKEN" if token.path is None else str(token.path)
    logger.info("web console: the admin token opens it (from %s)", where)
    return TokenGuard(token.token)


def _plan(
    app: AppConfig,
    workers: LaunchPlan | None,
    confiner: Confiner | None,
    name: str,
    shell: str,
    rc_fd: int,
) -> ShellPlan:
    if workers is not None:
        env, cwd = dict(workers.env), workers.cwd
    else:
        env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0)
        cwd = app.current_directory
    # The application's user (HOME, USER, its private TMPDIR), cgroup and limits: the workers'.
    confinement = confiner.ready() if confiner is not None else None
    env = worker_env(env, confinement)
    plan = shell_plan(env, cwd, interpreter=app.interpreter, name=name, shell=shell, rc_fd=rc_fd)
    return dataclasses.replace(plan, confinement=confinement)


def console_route(
    app: AppConfig,
    label: str,
    workers: LaunchPlan | None,
    *,
    confiner: Confiner | None = None,
    guard: TokenGuard | None,
    assets: Assets,
    tunnel_idle_timeout: float,
) -> AppRoute | None:
    """The route of ``app``'s console (None: it has no CONSOLE_URL)."""
    if app.console_url is None:
        return None
    base = f"{app.script_name}/{app.console_url}".encode()
    run_as = confiner.run_as if confiner is not None else None
    shell = login_shell(run_as.uid if run_as is not None else None)
    spec = SessionSpec(
        app=label,
        plan_for=functools.partial(_plan, app, workers, confiner, app.name, shell),
        idle_timeout=app.console_idle_timeout,
        keepalive=min(KEEPALIVE, tunnel_idle_timeout / 2),
    )
    console = Console(
        base=base,
        title=f"{app.site}/{app.name}" if app.site else app.name,
        folder=workers.cwd if workers is not None else app.current_directory,
        guard=guard,
        allowed=app.console_allowed,
        spec=spec,
        assets=assets,
    )
    return AppRoute(name=f"console:{label}", pool=NO_POOL, script_name=base, console=console)


class ConsoleRoutes:
    """The console routes of a configuration's applications, built again for each router (a
    reload applies a changed CONSOLE_URL at once); the token and the page's files are read the
    first time a console is configured, then kept."""

    def __init__(self, config_path: Path) -> None:
        self._config_path = config_path
        self._guard: TokenGuard | None = None
        self._assets: Assets | None = None
        self._tried = False

    def routes(
        self, apps: list[tuple[AppConfig, AppRoute]], settings: FrontSettings
    ) -> dict[tuple[str, str, str], AppRoute]:
        """(site, virtual path, name) -> console route, for the ``apps`` (configuration and
        route) that have one."""
        found: dict[tuple[str, str, str], AppRoute] = {}
        for app, app_route in apps:
            if app.console_url is None:
                continue
            label = app_route.name
            pool = app_route.pool
            workers = pool.plan if isinstance(pool, Pool) else None
            confiner = pool.confiner if isinstance(pool, Pool) else None
            if not self._tried:
                self._tried = True
                self._guard = console_guard(self._config_path)
                self._assets = Assets()
            assert self._assets is not None
            route = console_route(
                app,
                label,
                workers,
                confiner=confiner,
                guard=self._guard,
                assets=self._assets,
                tunnel_idle_timeout=settings.tunnel_idle_timeout,
            )
            if route is not None:
                found[(app.site, app.virtual_path, app.name)] = route
        return found
