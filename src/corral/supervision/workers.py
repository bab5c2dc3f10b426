"""One application's worker processes and their states: spawn, readiness, exit, retire, drain,
stop. Mechanism; each state change goes through the table in ``lifecycle.py``.

``WorkerSet`` owns the ``Worker`` records (one per process, keyed by id) and the private runtime
directory of their sockets. It tells the pool what happened through ``WorkerEvents`` (ready,
failed to start, exited, gone); which worker serves which request is the ``Dispatcher``'s job,
and when to start or stop one is the scaling policy's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeAlias

from corral.backends import PooledUpstream
from corral.errors import ExitCode
from corral.supervision.confine import OOM_REASON, Confiner
from corral.supervision.launch import Address, LaunchPlan
from corral.supervision.lease import Probe, WorkerTraits
from corral.supervision.lifecycle import EXPECTED_EXIT_STATES, WorkerState, check_transition
from corral.supervision.probe import ListenerTaken, lost_to_another, owned
from corral.supervision.process import SpawnError, WorkerProcess, describe_returncode
from corral.supervision.settings import PoolSettings
from corral.supervision.snapshot import RECYCLE_KINDS, ExitInfo, recycle_kind

_log = logging.getLogger("corral.supervision.pool")

#: After a failed probe, how long to wait for the process to exit (its exit code and traceback
#: explain the failure better than "connection reset").
_EXIT_AFTER_PROBE_FAILURE = 1.0
#: After asking a worker for its stack, how long to let it write before it is killed.
STACK_DUMP_GRACE = 0.3
#: How many recent exits the snapshot shows.
_EXITS_KEPT = 8

_S = WorkerState


class Process(Protocol):
    """What the worker set needs of a worker process (``process.WorkerProcess``)."""

    @property
    def pid(self) -> int: ...

    @property
    def address(self) -> Address: ...

    @property
    def running(self) -> bool: ...

    def gone(self) -> bool: ...

    async def wait(self) -> int: ...

    async def finish(self) -> None: ...

    def stderr_tail(self) -> str: ...

    def dump_stack(self) -> bool: ...

    def kill(self) -> None: ...

    async def stop(self, grace: float) -> int: ...

    async def close(self) -> None: ...


#: Starts one worker process: (plan, app name, Unix socket path or None, instance id).
Spawn: TypeAlias = Callable[[LaunchPlan, str, "str | None", int], Awaitable[Process]]


class Spawner(Protocol):
    """A ``Spawn`` that keeps something across workers (an application's template,
    ``template.TemplateSpawner``): the pool tells it when the code changes and when it closes."""

    async def __call__(
        self, plan: LaunchPlan, app: str, socket_path: str | None, instance_id: int
    ) -> Process: ...

    @property
    def template_pid(self) -> int | None:
        """The process the workers are forked from, if any."""

    def renew(self) -> None:
        """The next worker runs the application's current code (a restart, a deploy)."""

    async def close(self) -> None:
        """The pool's workers are stopped: stop whatever the spawner runs."""

    def kill(self) -> None:
        """Kill whatever the spawner runs, now."""


async def spawn_process(
    plan: LaunchPlan, app: str, socket_path: str | None, instance_id: int
) -> Process:
    """The real ``Spawn``: ``WorkerProcess.spawn``."""
    return await WorkerProcess.spawn(
        plan, app=app, socket_path=socket_path, instance_id=instance_id
    )


@dataclass(eq=False)
class Worker:
    """One worker process and what the pool knows of it."""

    id: int
    #: (A factory, not a class-level default: Python 3.11 does not specialize reads of an
    #: instance attribute whose class holds an instance of a Python class, such as an enum
    #: member, and the dispatcher reads it several times per request.)
    state: WorkerState = field(default_factory=lambda: WorkerState.STARTING)
    process: Process | None = None
    #: Requests it holds (leased, or queued on its connections).
    active: int = 0
    requests_served: int = 0
    idle_since: float | None = None
    last_used: float = 0.0
    idle_conns: list[PooledUpstream] = field(default_factory=list)
    #: The dispatcher's: it serves requests queued on a connection (its probe said so), and
    #: its leased connections (the ones such requests may queue on).
    pipelining: bool = False
    busy_conns: list[PooledUpstream] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    spawned_at: float = 0.0
    #: The restart generation this worker belongs to (``Pool.restart`` starts a new one).
    generation: int = 0
    #: DRAINING or HUNG: the deadline after which it is stopped even with requests in flight.
    drain_timer: asyncio.TimerHandle | None = None
    #: When it became ready (loop clock); its request limit (0 = none), with jitter.
    ready_at: float = 0.0
    max_requests: int = 0
    #: Resident memory (bytes) and CPU time (user + system, seconds) at the last health round,
    #: and when it last answered a probe.
    rss: int | None = None
    cpu_time: float | None = None
    last_probe: float = 0.0
    #: Why it is being retired (shown in the status).
    retiring: str | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def label(self) -> str:
        """How the log names it: by pid once it has a process, else by its number."""
        pid = self.pid
        return f"worker #{self.id} (no process)" if pid is None else f"worker pid {pid}"


class WorkerEvents(Protocol):
    """What the worker set tells its pool."""

    def worker_ready(self, worker: Worker, traits: WorkerTraits, took: float) -> None:
        """``worker`` answered its readiness probe ``took`` s after it was spawned (IDLE)."""

    def start_failed(self, worker: Worker, reason: str, stderr_tail: str) -> None:
        """``worker`` did not become ready (FAILED_TO_START, forgotten)."""

    def worker_exited(self, worker: Worker) -> None:
        """``worker`` exited after it was ready (EXITED, forgotten, logged)."""

    def worker_gone(self, worker: Worker, cancelled: bool) -> None:
        """``worker`` was forgotten otherwise: its start cancelled (restart, close), or an
        internal error in its supervision."""


def format_address(address: Address) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


_EXIT_MEANINGS: dict[int, str] = {
    ExitCode.APP_LOAD_FAILED: "the application could not be loaded",
    ExitCode.BIND_FAILED: "the worker could not use its listening socket",
    ExitCode.USAGE: "the worker rejected its command line",
}


def exit_reason(code: int) -> str:
    """Why a worker that exited before it was ready did not start."""
    meaning = _EXIT_MEANINGS.get(code)
    if meaning is not None:
        return f"{meaning} (worker exited with code {code})"
    return f"the worker {describe_returncode(code)} before it was ready"


class WorkerSet:
    """The workers of one application, keyed by id, and the moves of each through its life."""

    def __init__(
        self,
        app: str,
        plan: LaunchPlan,
        settings: PoolSettings,
        probe: Probe,
        events: WorkerEvents,
        *,
        clock: Callable[[], float],
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle],
        create_task: Callable[[Coroutine[object, object, None], str | None], asyncio.Task[None]],
        spawn: Spawn = spawn_process,
        runtime_root: str | None = None,
        confiner: Confiner | None = None,
    ) -> None:
        self.app = app
        self.plan = plan
        self.settings = settings
        self._probe = probe
        self._events = events
        self._clock = clock
        self._call_later = call_later
        self._create_task = create_task
        self._spawn = spawn
        self._runtime_root = runtime_root
        #: The application's user, cgroup and limits (None: Corral's own user, no limits).
        self.confiner = confiner
        self.runtime_dir: str | None = None
        self.workers: dict[int, Worker] = {}
        self._next_id = 1
        #: The current restart generation (``restart`` starts a new one).
        self.generation = 0
        #: Stop and kill tasks in flight (``close`` waits for them).
        self.stopping: set[asyncio.Task[None]] = set()
        #: Set when the last worker is gone (``stop_workers`` waits for it).
        self._emptied: asyncio.Event | None = None
        #: The last exits, newest last, and how many were unexpected.
        self.exits: collections.deque[ExitInfo] = collections.deque(maxlen=_EXITS_KEPT)
        self.crashes = 0
        #: Workers retired for a limit or killed for failing a health probe, in all and by
        #: ``snapshot.recycle_kind``.
        self.recycled = 0
        self.recycled_for: dict[str, int] = dict.fromkeys(RECYCLE_KINDS, 0)

    def count_recycled(self, why: str) -> None:
        self.recycled += 1
        kind = recycle_kind(why)
        self.recycled_for[kind] = self.recycled_for.get(kind, 0) + 1

    # ------------------------------------------------------------------------------- states

    def set_state(self, worker: Worker, state: WorkerState) -> None:
        """Move ``worker`` to ``state`` (raises ``IllegalTransition`` off the table)."""
        worker.state = check_transition(worker.state, state)

    def counts(self) -> tuple[int, int]:
        """(workers starting, workers ready)."""
        starting = ready = 0
        for worker in self.workers.values():
            if worker.state is _S.STARTING:
                starting += 1
            elif worker.state.is_ready:
                ready += 1
        return starting, ready

    def alive(self) -> bool:
        """Whether any worker is starting or ready."""
        starting, ready = self.counts()
        return bool(starting or ready)

    # ------------------------------------------------------------------------------- spawn

    def _socket_path(self, worker_id: int) -> str | None:
        if not self.plan.transport.socket_file:
            return None
        if self.runtime_dir is None or not os.path.isdir(self.runtime_dir):
            # (Re)created on demand: a tmp cleaner may have removed it while the app was idle.
            root = self._runtime_root or os.environ.get("XDG_RUNTIME_DIR") or None
            if self.confiner is not None:
                root = self.confiner.socket_parent() or root
            if root is not None and not os.path.isdir(root):
                root = None
            self.runtime_dir = tempfile.mkdtemp(prefix="corral-", dir=root)  # mode 0700
            if self.confiner is not None:
                self.confiner.hand_over(self.runtime_dir)  # its user's, group ours, 0770
        return os.path.join(self.runtime_dir, f"{worker_id}.sock")

    def start(self) -> Worker:
        """Spawn one worker of the current generation (STARTING)."""
        worker = Worker(id=self._next_id, generation=self.generation)
        self._next_id += 1
        self.workers[worker.id] = worker
        worker.task = self._create_task(self._run(worker), f"corral-worker-{self.app}-{worker.id}")
        return worker

    async def _run(self, worker: Worker) -> None:
        """The whole life of one worker: spawn, readiness, serve until exit."""
        try:
            try:
                plan = self.plan
                if self.confiner is not None:
                    plan = replace(plan, confinement=self.confiner.ready())
                process = await self._spawn(plan, self.app, self._socket_path(worker.id), worker.id)
            except (SpawnError, OSError) as exc:
                tail = exc.stderr_tail if isinstance(exc, SpawnError) else ""
                self._start_failed(worker, str(exc), tail)
                return
            worker.process = process
            worker.spawned_at = self._clock()
            _log.info(
                "app %s: started worker pid %d on %s",
                self.app,
                process.pid,
                format_address(process.address),
                extra={"app": self.app, "pid": process.pid},
            )
            result = await self._await_ready(process)
            if isinstance(result, str):
                await process.close()
                self._start_failed(worker, result, process.stderr_tail())
                return
            self._ready(worker, result)
            code = await process.wait()
            self._exited(worker, code)
            await process.finish()
        except asyncio.CancelledError:
            # The pool is closing (or restarting) while this worker starts: take it down.
            if worker.process is not None:
                await worker.process.close()
            self.forget(worker)
            self._events.worker_gone(worker, cancelled=True)
            raise
        except Exception as exc:
            # A bug here must not leave a worker STARTING forever and the pool wedged.
            _log.exception(
                "app %s: internal error supervising %s",
                self.app,
                worker.label,
                extra={"app": self.app, "pid": worker.pid},
            )
            if worker.process is not None:
                await worker.process.close()
            if worker.state is _S.STARTING:
                self._start_failed(worker, f"internal error: {exc!r}", "")
            else:
                self.forget(worker)
                self._events.worker_gone(worker, cancelled=False)

    async def _await_ready(self, process: Process) -> WorkerTraits | str:
        """The worker's traits when it answered the probe in time; else why it did not."""
        timeout = self.settings.start_timeout
        check = owned(self._probe, process.pid) if self.plan.transport.command_listens else None
        probe = asyncio.ensure_future((check or self._probe)(process.address, timeout))
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait(
                {probe, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if probe in done and probe.exception() is None and process.running:
                return probe.result()
            taken = probe.exception() if probe in done else None
            if isinstance(taken, ListenerTaken):
                return str(taken)  # clearer than the exit its lost port is about to cause
            if probe in done and not exited.done():
                # Prefer the exit status (and its traceback) to "connection reset".
                await asyncio.wait({exited}, timeout=_EXIT_AFTER_PROBE_FAILURE)
            if exited.done():
                reason = self._exit_reason(exited.result())
                if check is not None:  # it may have died of a port another program took
                    taken = await lost_to_another(process.address, process.pid)
                    if taken is not None:
                        return f"{taken} ({reason})"
                return reason
            if probe in done:
                return f"the readiness probe failed: {probe.exception()}"
            # Where is it stuck? Corral's worker writes its stack to stderr (the error page's
            # tail and the app's log).
            if process.dump_stack():
                await asyncio.sleep(STACK_DUMP_GRACE)
            return f"it did not answer the readiness probe within {timeout:g} s"
        finally:
            for task in (probe, exited):
                task.cancel()
            await asyncio.gather(probe, exited, return_exceptions=True)

    def _ready(self, worker: Worker, traits: WorkerTraits) -> None:
        if worker.state is _S.STOPPING:  # the pool closed meanwhile
            return
        now = self._clock()
        worker.idle_since = now
        worker.last_used = now
        worker.ready_at = now
        worker.last_probe = now
        settings = self.settings
        if settings.max_requests:
            jitter = int(settings.max_requests * settings.max_requests_jitter)
            worker.max_requests = settings.max_requests + random.randint(0, jitter)
        self.set_state(worker, _S.IDLE)
        took = now - worker.spawned_at
        _log.info(
            "app %s: worker pid %s is ready (%.2f s after spawn)",
            self.app,
            worker.pid,
            took,
            extra={"app": self.app, "pid": worker.pid},
        )
        self._events.worker_ready(worker, traits, took)

    def _start_failed(self, worker: Worker, reason: str, stderr_tail: str) -> None:
        if worker.state is _S.STOPPING:  # the pool closed meanwhile
            self.forget(worker)
            return
        self.set_state(worker, _S.FAILED_TO_START)
        self.forget(worker)
        _log.error(
            "app %s: %s cannot start: %s%s",
            self.app,
            worker.label,
            reason,
            f"\n{stderr_tail}" if stderr_tail else "",
            extra={"app": self.app, "pid": worker.pid},
        )
        self._events.start_failed(worker, reason, stderr_tail)

    def _exited(self, worker: Worker, code: int) -> None:
        expected = worker.state in EXPECTED_EXIT_STATES
        self.set_state(worker, _S.EXITED)
        self.forget(worker)
        described = describe_returncode(code)
        if self.confiner is not None and self.confiner.killed_by_limit(code):
            described = OOM_REASON
        self.exits.append(
            ExitInfo(worker.id, worker.pid, described, expected, self._clock(), worker.retiring)
        )
        if expected:
            _log.info(
                "app %s: worker pid %s stopped (%s)",
                self.app,
                worker.pid,
                described,
                extra={"app": self.app, "pid": worker.pid},
            )
        else:
            self.crashes += 1
            _log.warning(
                "app %s: worker pid %s %s%s",
                self.app,
                worker.pid,
                described,
                f" ({worker.active} request(s) in flight on it fail)" if worker.active else "",
                extra={"app": self.app, "pid": worker.pid},
            )
        self._events.worker_exited(worker)

    def forget(self, worker: Worker) -> None:
        self.close_idle_connections(worker)
        if worker.drain_timer is not None:
            worker.drain_timer.cancel()
            worker.drain_timer = None
        self.workers.pop(worker.id, None)
        if not self.workers and self._emptied is not None:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no worker is left."""
        while self.workers:
            self._emptied = asyncio.Event()
            await self._emptied.wait()

    # ------------------------------------------------------------------------------- stop

    def cancel_start(self, worker: Worker) -> None:
        """A STARTING worker is not wanted any more (restart, stop, close)."""
        self.set_state(worker, _S.STOPPING)
        if worker.task is not None:
            worker.task.cancel()

    def retire(self, worker: Worker, why: str, *, hung: bool = False) -> None:
        """Take a ready worker out of rotation now; stop it once its requests are done.

        It gets SIGTERM (``hung``: SIGKILL, as a request hung in it) when its last lease is
        released, or after ``graceful_shutdown_timeout`` if requests are still in flight then
        (Corral's worker still finishes them on SIGTERM, within a second grace period, before
        SIGKILL)."""
        _log.info(
            "app %s: retiring worker pid %s (%s)%s",
            self.app,
            worker.pid,
            why,
            f"; it finishes its {worker.active} request(s) first" if worker.active else "",
            extra={"app": self.app, "pid": worker.pid},
        )
        if worker.active <= 0:
            self.stop(worker)
            return
        self.set_state(worker, _S.HUNG if hung else _S.DRAINING)
        self.close_idle_connections(worker)
        worker.drain_timer = self._call_later(
            self.settings.graceful_shutdown_timeout, lambda: self.end_drain(worker)
        )

    def end_drain(self, worker: Worker) -> None:
        """A draining worker's requests are done (or its time is up): SIGTERM it (a HUNG one:
        its stack dump gets a moment, then SIGKILL)."""
        if not worker.state.is_draining:
            return
        hung = worker.state is _S.HUNG
        if worker.drain_timer is not None:
            worker.drain_timer.cancel()
            worker.drain_timer = None
        self.set_state(worker, _S.STOPPING)
        if worker.active > 0:
            _log.warning(
                "app %s: retiring worker pid %s still has %d request(s) in flight after %g s; "
                "stopping it anyway",
                self.app,
                worker.pid,
                worker.active,
                self.settings.graceful_shutdown_timeout,
                extra={"app": self.app, "pid": worker.pid},
            )
        if worker.process is not None and worker.id in self.workers:
            process = worker.process
            self._track(self._kill_process(process) if hung else self._stop_process(process))

    def stop(self, worker: Worker) -> None:
        """STOPPING: close its idle connections, SIGTERM, grace, SIGKILL. ``_run`` sees the
        exit and forgets it."""
        self.set_state(worker, _S.STOPPING)
        self.close_idle_connections(worker)
        if worker.process is not None:
            self._track(self._stop_process(worker.process))

    def kill(self, worker: Worker, why: str | None = None) -> None:
        """Out of rotation at once and SIGKILL (it is broken); its exit is reaped and logged
        by ``_run``."""
        if why is not None:
            worker.retiring = why
            self.count_recycled(why)
        self.set_state(worker, _S.STOPPING)
        self.close_idle_connections(worker)
        if worker.process is not None:
            worker.process.kill()

    def lose(self, worker: Worker) -> None:
        """A ready worker was seen dead before its exit was reaped: no more requests for it."""
        self.set_state(worker, _S.LOST)
        self.close_idle_connections(worker)

    def kill_all(self) -> None:
        """Whatever happened: no worker outlives its pool."""
        for worker in self.workers.values():
            if worker.process is not None:
                worker.process.kill()

    def _exit_reason(self, code: int) -> str:
        if self.confiner is not None and self.confiner.killed_by_limit(code):
            return f"the worker was {OOM_REASON} before it was ready"
        return exit_reason(code)

    def remove_runtime_dir(self) -> None:
        """Remove the socket folder, and the confinement's TMPDIR and cgroup."""
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None
        if self.confiner is not None:
            self.confiner.close()

    def _track(self, stop: Coroutine[object, object, None]) -> None:
        task = self._create_task(stop, None)
        self.stopping.add(task)
        task.add_done_callback(self.stopping.discard)

    async def _stop_process(self, process: Process) -> None:
        await process.stop(self.settings.graceful_shutdown_timeout)

    async def _kill_process(self, process: Process) -> None:
        """A worker with a hung request: give its stack dump a moment, then SIGKILL (SIGTERM
        would wait for the hung request)."""
        await asyncio.sleep(STACK_DUMP_GRACE)
        process.kill()
        await process.wait()
        await process.finish()

    def close_idle_connections(self, worker: Worker) -> None:
        for conn in worker.idle_conns:
            conn.close()
        worker.idle_conns.clear()

    # ------------------------------------------------------------------------- restarts

    def retire_one_old(self) -> None:
        """A worker of the current generation is ready: retire one older one, idle first."""
        old = [
            w for w in self.workers.values() if w.generation < self.generation and w.state.is_ready
        ]
        if old:
            self.retire(min(old, key=lambda w: (w.active, w.id)), "rolling restart")

    def restart_outcome(self) -> bool | None:
        """A rolling restart's outcome: True when no older worker is left, False when none of
        the new generation is starting or ready while old ones are, None while it goes on."""
        current = self.generation
        old_left = any(w.generation < current for w in self.workers.values())
        if not old_left:
            return True
        new_alive = any(
            w.generation == current and (w.state is _S.STARTING or w.state.is_ready)
            for w in self.workers.values()
        )
        return None if new_alive else False
