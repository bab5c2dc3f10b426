"""One application's Zoo behaviours around its pool: deploy script, file-change restarts, error
log. Mechanism; the decisions are ``runtime.policy``'s.

The composition root builds, per application, a pool, a route for the front and an
``AppController`` (``await start()``, ``await close()``). The controller

* watches the application's files (``runtime.watch``): restart.txt and WATCH_FILE_CHANGES_MASK
  matches restart the workers rolling (``Pool.restart``); a change to the deploy script runs it
  again while the workers serve, then restarts them rolling (not if it fails: they keep
  serving); after a failed deploy, any change makes the next request run the script again;
* holds the application behind a ``DeployGate`` (the route's ``pool`` attribute points at the
  gate instead of the pool) from the start, and again after ``redeploy()``, until its deploy
  script has run: the first request stops the workers and starts the script
  (``runtime.deploy``); success puts the pool back on the route. ``deploy_now()`` runs the
  script with no request waiting (a changed configuration's application, built beside the old
  one, which serves until this one's script has run and its first worker is ready);
* opens the application's error log (``runtime.errorlog``) while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from corral.config.model import AppConfig
from corral.runtime import policy
from corral.runtime.deploy import DeployCommand, DeployResult, DeployRun
from corral.runtime.errorlog import ErrorLogs, ErrorLogSpec
from corral.runtime.gate import DeployFailed, DeployGate, DeployInProgress
from corral.runtime.policy import ChangeAction, Phase, RequestAction
from corral.runtime.watch import FileWatcher, find_virtualenvs
from corral.runtime.watchrules import Change, WatchRules
from corral.supervision.confine import Confiner
from corral.supervision.launch import LaunchPlan
from corral.supervision.lease import Lease, LeaseSource
from corral.supervision.pool import Pool

_log = logging.getLogger("corral.runtime")


class Routed(Protocol):
    """The front's route for the application: the controller points its ``pool`` at the gate
    while the application is held back, and back at the pool afterwards."""

    pool: LeaseSource


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    """What the controller needs to know about one application (from its AppConfig)."""

    root: str
    deploy: DeployCommand | None = None
    masks: tuple[str, ...] = ()
    #: Folders never watched: the error-log folder, virtualenvs (found under the root too).
    excluded_dirs: tuple[str, ...] = ()
    #: Files never watched: the deploy log.
    excluded_files: tuple[str, ...] = ()
    error_log: ErrorLogSpec | None = None


class AppController:
    """Deploy gate, watcher and error log of one application."""

    def __init__(
        self,
        spec: RuntimeSpec,
        pool: Pool,
        route: Routed,
        *,
        error_logs: ErrorLogs | None = None,
    ) -> None:
        self.spec = spec
        self.pool = pool
        self.route = route
        self.name = pool.name
        self.phase = Phase.SERVING if spec.deploy is None else Phase.DEPLOY_NEEDED
        self.last_deploy: DeployResult | None = None
        #: Deploy script runs so far, and how many failed (``/metrics``).
        self.deploy_runs = 0
        self.deploy_failures = 0
        self._error_logs = error_logs
        self._gate = DeployGate(pool.name, self._gated_acquire, pool.release)
        self._watcher: FileWatcher | None = None
        self._deploy_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[bool] | None = None
        #: The deploy script running again beside the serving workers (its file changed).
        self._script_task: asyncio.Task[bool] | None = None
        self._closed = False

    def _record(self, result: DeployResult) -> None:
        self.last_deploy = result
        self.deploy_runs += 1
        if not result.ok:
            self.deploy_failures += 1

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Open the error log, start watching, hold requests back if the script must run."""
        if self._error_logs is not None and self.spec.error_log is not None:
            self._error_logs.open(self.name, self.spec.error_log)
        if self.phase is not Phase.SERVING:
            self.route.pool = self._gate
        self._watcher = FileWatcher.for_app(self._rules(), self._on_changes, name=self.name)
        self._watcher.start()

    async def close(self) -> None:
        """Stop watching, stop a running deploy script, close the error log. (The pool is
        closed by its owner.)"""
        self._closed = True
        if self._watcher is not None:
            await self._watcher.close()
        for task in (self._deploy_task, self._restart_task, self._script_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._error_logs is not None:
            self._error_logs.close_app(self.name)

    async def restart(self, reason: str) -> bool:
        """A rolling restart of the workers (no-op while the deploy script holds the app)."""
        if self.phase is not Phase.SERVING:
            return True
        return await self.pool.restart(reason)

    def redeploy(self) -> None:
        """The configuration changed: the next request runs the deploy script again."""
        if self.spec.deploy is None or self.phase is Phase.DEPLOYING:
            return
        self._set_phase(Phase.DEPLOY_NEEDED)

    async def deploy_now(self) -> DeployResult:
        """Run the deploy script at once, with no request waiting on it, and return its result
        (the phase ends SERVING or FAILED). For a changed configuration whose old application
        keeps serving meanwhile: nobody is shown the output, which goes to DEPLOY_LOG when it is
        set and to the host's log (and ERROR_LOG_DIR) in any case."""
        command = self.spec.deploy
        assert command is not None
        self._start_deploy(command, stream=False)
        task = self._deploy_task
        assert task is not None
        await task
        result = self.last_deploy
        assert result is not None
        return result

    @property
    def restarting(self) -> bool:
        """A rolling restart started by a file change is under way."""
        return self._restart_task is not None and not self._restart_task.done()

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.running

    # ------------------------------------------------------------------ requests

    async def _gated_acquire(self, timeout: float | None) -> Lease:  # noqa: ASYNC109
        action = policy.on_request(self.phase)
        if action is RequestAction.SERVE:  # the gate was lifted while this request came in
            return await self.pool.acquire(timeout)
        command = self.spec.deploy
        assert command is not None
        if action is RequestAction.START_DEPLOY:
            output = self._start_deploy(command)
            raise DeployInProgress(self.name, output)
        if action is RequestAction.WAIT:
            raise DeployInProgress(self.name)
        result = self.last_deploy
        reason = result.describe() if result is not None else "the deploy script failed"
        raise DeployFailed(
            self.name,
            reason,
            result.tail if result is not None else "",
            public=command.log_path is None,
        )

    def _start_deploy(
        self, command: DeployCommand, *, stream: bool = True
    ) -> AsyncIterator[bytes] | None:
        self._set_phase(Phase.DEPLOYING)
        run = DeployRun(command, app=self.name)
        output = run.subscribe() if stream and command.log_path is None else None
        self._deploy_task = asyncio.get_running_loop().create_task(
            self._deploy(run), name=f"corral-deploy-{self.name}"
        )
        return output

    async def _deploy(self, run: DeployRun) -> None:
        try:
            await self.pool.stop_workers("the deploy script runs")
            result = await run.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("app %s: running the deploy script failed", self.name)
            result = DeployResult(False, None, False, repr(exc), "", 0.0, time.time())
        self._record(result)
        if self._closed:
            return
        if self.phase is not Phase.DEPLOYING:  # the configuration changed meanwhile
            return
        self._set_phase(Phase.SERVING if result.ok else Phase.FAILED)

    def _set_phase(self, phase: Phase) -> None:
        if phase is self.phase:
            return
        _log.info(
            "app %s: %s -> %s", self.name, self.phase.value, phase.value, extra={"app": self.name}
        )
        self.phase = phase
        self.route.pool = self.pool if phase is Phase.SERVING else self._gate

    # ------------------------------------------------------------------ file changes

    def _rules(self) -> WatchRules:
        spec = self.spec
        excluded = [*spec.excluded_dirs, *find_virtualenvs(spec.root)]
        excluded_files = list(spec.excluded_files)
        if spec.deploy is not None and spec.deploy.log_path is not None:
            excluded_files.append(spec.deploy.log_path)
        if spec.error_log is not None:
            excluded.append(spec.error_log.folder)
        return WatchRules(
            root=spec.root,
            masks=spec.masks,
            excluded_dirs=tuple(dict.fromkeys(excluded)),
            excluded_files=tuple(dict.fromkeys(excluded_files)),
            watch_all=spec.deploy is not None,
            deploy_script=spec.deploy.script if spec.deploy is not None else None,
        )

    def _on_changes(self, changes: list[tuple[Change, str]]) -> None:
        if self._closed:
            return
        fresh = [(kind, path) for kind, path in changes if not self._made_by_deploy(path)]
        action = policy.on_changes(self.phase, {kind for kind, _ in fresh})
        if action is ChangeAction.NOTHING:
            return
        reason = _describe(fresh, self.spec.root)
        if action is ChangeAction.REDEPLOY:
            _log.info(
                "app %s: %s; the next request runs the deploy script again",
                self.name,
                reason,
                extra={"app": self.name},
            )
            self._set_phase(Phase.DEPLOY_NEEDED)
            return
        if action is ChangeAction.DEPLOY_THEN_RESTART:
            self._script_task = asyncio.get_running_loop().create_task(
                self._deploy_then_restart(reason, self._script_task),
                name=f"corral-redeploy-{self.name}",
            )
            return
        if self._script_task is not None and not self._script_task.done():
            _log.info(
                "app %s: %s; the workers restart once the deploy script has run",
                self.name,
                reason,
                extra={"app": self.name},
            )
            return
        previous = self._restart_task
        self._restart_task = asyncio.get_running_loop().create_task(
            self._restart(reason, previous), name=f"corral-restart-{self.name}"
        )

    async def _restart(self, reason: str, previous: asyncio.Task[bool] | None) -> bool:
        # A restart supersedes the one in progress; that one returns with this one's result.
        del previous
        try:
            return await self.restart(reason)
        except Exception:
            _log.exception("app %s: rolling restart failed", self.name)
            return False

    async def _deploy_then_restart(self, reason: str, previous: asyncio.Task[bool] | None) -> bool:
        """The deploy script changed while the application serves: run it (after a run still
        under way) with the workers serving, then restart them rolling, so that no request
        waits on the script. A failing script leaves them serving the code they run."""
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await previous
        command = self.spec.deploy
        assert command is not None
        _log.info(
            "app %s: %s; running the deploy script again, the workers keep serving",
            self.name,
            reason,
            extra={"app": self.name},
        )
        try:
            result = await DeployRun(command, app=self.name).run()
        except Exception as exc:
            _log.exception("app %s: running the deploy script failed", self.name)
            result = DeployResult(False, None, False, repr(exc), "", 0.0, time.time())
        self._record(result)
        if self._closed or self.phase is not Phase.SERVING:
            return False
        if not result.ok:
            _log.error(
                "app %s: %s; the workers keep serving (saving the script runs it again)",
                self.name,
                result.describe(),
                extra={"app": self.name},
            )
            return False
        try:
            return await self.pool.restart(f"{reason}, deploy script ran")
        except Exception:
            _log.exception("app %s: rolling restart failed", self.name)
            return False

    def _made_by_deploy(self, path: str) -> bool:
        """A file the deploy script itself wrote is not a change (else a failing script that
        writes files would retry itself): it is no newer than the script's end."""
        result = self.last_deploy
        if result is None:
            return False
        try:
            return os.stat(path).st_mtime <= result.finished_at
        except OSError:
            return False  # deleted since: a change


def _describe(changes: list[tuple[Change, str]], root: str) -> str:
    names = [os.path.relpath(path, root) for _, path in changes]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if any(kind is Change.TRIGGER for kind, _ in changes):
        return f"{shown} touched" if len(names) == 1 else f"{shown} changed"
    return f"{shown} changed"


def runtime_spec(
    app: AppConfig,
    plan: LaunchPlan | None,
    *,
    deploy_timeout: float | None = None,
    error_log_max_bytes: int | None = None,
    error_log_files: int | None = None,
    confiner: Confiner | None = None,
) -> RuntimeSpec:
    """The controller's view of one application's configuration.

    The deploy script runs with the program the workers run (``plan.argv[0]``: the app's Python
    for Corral's worker, node or php for theirs) in the workers' environment and working
    directory; while that is a virtualenv's Python that does not exist yet (the script makes
    it), with the engine's own interpreter (``AppConfig.base_interpreter``). An application
    with no process of its own (tcp.service) has no deploy script.
    """
    deploy = None
    if app.deploy_file is not None and plan is not None:
        deploy = DeployCommand(
            script=app.deploy_file,
            interpreter=plan.argv[0],
            env=plan.env,
            cwd=plan.cwd,
            log_path=app.deploy_log,
            timeout=float(deploy_timeout if deploy_timeout is not None else app.deploy_timeout),
            fallback_interpreter=(
                app.base_interpreter
                if app.base_interpreter and app.base_interpreter != plan.argv[0]
                else None
            ),
            confiner=confiner,
        )
    error_log = None
    if app.error_log_dir is not None:
        error_log = ErrorLogSpec(
            app.error_log_dir,
            max_bytes=error_log_max_bytes or app.error_log_max_kb * 1024,
            backups=error_log_files if error_log_files is not None else app.error_log_files,
        )
    excluded = []
    if app.env_dict().get("VIRTUAL_ENV"):
        excluded.append(app.env_dict()["VIRTUAL_ENV"])
    return RuntimeSpec(
        root=app.physical_path,
        deploy=deploy,
        masks=app.watch_file_changes_mask,
        excluded_dirs=tuple(excluded),
        error_log=error_log,
    )
