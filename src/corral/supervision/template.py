"""Preloaded workers: an application's template process forks its workers. Mechanism.

``TemplateSpawner`` is the pool's ``Spawner`` for an app with preloading on. The first worker
the pool asks for starts the app's *template* (``python -m corral.worker --template-fd N``,
``corral.worker.template``; started like a worker, by ``WorkerProcess.spawn_template``): it
imports the app once, calls its app-start hook, freezes its heap and says ``ready``. Then each
worker is a ``spawn`` on the control socketpair (``corral.protocol.spawnctl``), with the fds a
directly started worker would get: its listening socket (made here, as for any worker), the
read end of its liveness pipe, and its own stdout and stderr pipes, which are logged under the
worker's pid. The template forks; the child starts its own session and serves.

Watching a worker that is not the host's child: the template is its parent, reaps it and
reports ``exit PID CODE``. The host also holds a pidfd for it (``os.pidfd_open``, Linux 5.3+):
if the template itself dies, its workers go on serving, and the pidfd still says when each
ends (its exit code is then unknown: ``UNKNOWN_EXIT``). The host signals a worker's process
group (its pid) exactly as for a direct one.

Restarts: ``renew`` (the pool's rolling restart, file changes, restart.txt, a deploy) retires
the current template; the next worker starts a new one, which imports the new code. If that
import fails, the start fails like a worker's (its traceback in the log and on the error page),
and the old workers keep serving. A retired template stays until its last worker has ended (it
reports their exits), then is stopped. A template that dies is replaced at the next spawn.

An app whose import starts threads cannot be forked safely: its template says ``nofork`` and
exits, and its workers are started directly (``spawn_process``) until the next ``renew``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import sys
from dataclasses import replace

from corral.protocol import spawnctl
from corral.supervision.launch import LaunchPlan
from corral.supervision.process import DRAIN_TIMEOUT, SpawnError, WorkerProcess, listen_socket
from corral.supervision.workers import Process, exit_reason, spawn_process

_log = logging.getLogger("corral.supervision.pool")

#: The exit code reported for a worker whose template died before it: nobody could reap it.
UNKNOWN_EXIT = 255
#: After a worker's pidfd says it ended, how long to wait for its template's report.
_REPORT_WAIT = 1.0
#: How long a fork may take before the spawn is given up.
_FORK_TIMEOUT = 10.0
#: How long a retired template gets to stop (SIGTERM, then SIGKILL).
_STOP_GRACE = 2.0


@functools.cache
def supported() -> bool:
    """Whether this host can watch forked workers (Linux with pidfds)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


def template_title(worker_title: str | None, app: str) -> str:
    """``corral template SITE/NAME (ENGINE)`` from the workers' title."""
    if worker_title and worker_title.startswith("corral worker "):
        return "corral template " + worker_title[len("corral worker ") :]
    return f"corral template {app}"


def _title_of(argv: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == "--title":
            return argv[i + 1]
    return None


def _retrieve(future: asyncio.Future[Template | None]) -> None:
    if not future.cancelled():
        future.exception()


class ForkedChild:
    """A worker forked by a template, seen as ``process.ChildProcess``: its pid, its output
    pipes, and its exit (the template's report, or its pidfd when the template is gone)."""

    def __init__(
        self,
        template: Template,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self._template = template
        self._loop = asyncio.get_running_loop()
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self._transports = transports
        self.started: asyncio.Future[int] = self._loop.create_future()
        self._exit: asyncio.Future[int] = self._loop.create_future()
        self._pid = 0
        self._pidfd: int | None = None
        self._unknown_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def forked(self, pid: int) -> None:
        """The template says it forked us as ``pid``: watch its pidfd too."""
        self._pid = pid
        if not self.started.done():
            self.started.set_result(pid)
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:  # already gone (and reaped): the template's report says how
            if not self._template.alive:
                self.exited(UNKNOWN_EXIT)
            return
        self._loop.add_reader(self._pidfd, self._pidfd_ready)

    def _pidfd_ready(self) -> None:
        self._close_pidfd()
        if self._exit.done():
            return
        if self._template.alive:
            self._unknown_timer = self._loop.call_later(_REPORT_WAIT, self._unreported)
        else:
            self._unreported()

    def _unreported(self) -> None:
        if not self._exit.done():
            _log.warning(
                "app %s: worker pid %d ended after its template; its exit status is unknown",
                self._template.app,
                self._pid,
                extra={"app": self._template.app, "pid": self._pid},
            )
            self.exited(UNKNOWN_EXIT)

    def template_gone(self) -> None:
        """No report will come: a worker already seen ending ends with an unknown status."""
        if self._unknown_timer is not None and not self._exit.done():
            self._unknown_timer.cancel()
            self._unreported()

    def exited(self, code: int) -> None:
        """The worker ended with ``code`` (minus the signal number if killed)."""
        self._close_pidfd()
        if self._unknown_timer is not None:
            self._unknown_timer.cancel()
        if not self._exit.done():
            self._exit.set_result(code)
        if not self.started.done():
            self.started.set_exception(SpawnError("the template could not fork the worker"))
        # Output left by a grandchild that escaped the session must not keep the pipes open.
        self._loop.call_later(DRAIN_TIMEOUT * 2, self._close_transports)

    def _close_transports(self) -> None:
        for transport in self._transports:
            transport.close()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


class Template:
    """One running template: its process, the control socket, the workers it forked."""

    def __init__(self, app: str, process: WorkerProcess, ctrl: socket.socket) -> None:
        self.app = app
        self.process = process
        self._ctrl = ctrl
        self._loop = asyncio.get_running_loop()
        self._decoder = spawnctl.Decoder()
        #: Resolved by ``ready`` or ``nofork``; None if it ended first.
        self.hello: asyncio.Future[spawnctl.Message | None] = self._loop.create_future()
        self._next_id = 1
        self._forking: dict[int, ForkedChild] = {}
        self._children: dict[int, ForkedChild] = {}
        self._early_exits: dict[int, int] = {}
        self.alive = True
        self.retired = False
        #: It said ``ready``: its end, unless retired, is news for the log.
        self.loaded = False
        ctrl.setblocking(False)
        self._loop.add_reader(ctrl.fileno(), self._readable)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def workers(self) -> int:
        return len(self._children) + len(self._forking)

    def _readable(self) -> None:
        try:
            data = self._ctrl.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.ended()
            return
        try:
            messages = self._decoder.feed(data)
        except spawnctl.ProtocolError as exc:
            _log.error("app %s: template pid %d: %s", self.app, self.pid, exc)
            self.process.kill()
            self.ended()
            return
        for message in messages:
            self._handle(message)

    def _handle(self, message: spawnctl.Message) -> None:
        kind, numbers = message.kind, message.numbers
        if kind in ("ready", "nofork"):
            self.loaded = kind == "ready"
            if not self.hello.done():
                self.hello.set_result(message)
        elif kind == "spawned":
            child = self._forking.pop(numbers[0], None)
            if child is None:
                return
            self._children[numbers[1]] = child
            child.forked(numbers[1])
            code = self._early_exits.pop(numbers[1], None)
            if code is not None:
                self._exited(numbers[1], code)
        elif kind == "failed":
            child = self._forking.pop(numbers[0], None)
            if child is not None and not child.started.done():
                child.started.set_exception(
                    SpawnError(f"the template could not fork: {message.text}")
                )
        elif kind == "exit":
            if numbers[0] in self._children:
                self._exited(numbers[0], numbers[1])
            else:
                self._early_exits[numbers[0]] = numbers[1]

    def _exited(self, pid: int, code: int) -> None:
        child = self._children.pop(pid)
        child.exited(code)
        if self.retired and not self.workers:
            self.stop()

    def ended(self) -> None:
        """The control socket closed: the template is gone (or going)."""
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self._ctrl.fileno())
        self._ctrl.close()
        if not self.hello.done():
            self.hello.set_result(None)
        for child in self._forking.values():
            if not child.started.done():
                child.started.set_exception(SpawnError("the template ended"))
        self._forking.clear()
        for child in self._children.values():
            child.template_gone()
        self._children.clear()
        if self.loaded and not self.retired:
            _log.warning(
                "app %s: template pid %d ended; the next worker starts a new one",
                self.app,
                self.pid,
                extra={"app": self.app, "pid": self.pid},
            )

    async def fork(
        self, plan: LaunchPlan, app: str, socket_path: str | None, start_timeout: float
    ) -> WorkerProcess:
        """One worker, forked from this template, listening where a direct one would."""
        listener, address, bound_path = listen_socket(plan, socket_path)
        opened: list[int] = []
        try:
            live_r, live_w = os.pipe()
            opened += [live_r, live_w]
            out_r, out_w = os.pipe()
            opened += [out_r, out_w]
            err_r, err_w = os.pipe()
            opened += [err_r, err_w]
        except OSError as exc:
            listener.close()
            for fd in opened:
                os.close(fd)
            raise SpawnError(f"cannot create a worker's pipes: {exc}") from exc
        worker_id = self._next_id
        self._next_id += 1
        transports: list[asyncio.BaseTransport] = []
        readers: list[asyncio.StreamReader] = []
        handed = False
        try:
            for fd in (out_r, err_r):
                reader = asyncio.StreamReader()
                transport, _ = await self._loop.connect_read_pipe(
                    lambda reader=reader: asyncio.StreamReaderProtocol(reader),  # type: ignore[misc]
                    os.fdopen(fd, "rb", buffering=0),
                )
                transports.append(transport)
                readers.append(reader)
            child = ForkedChild(self, readers[0], readers[1], transports)
            # Known before the request goes: the template's answer may come at the next await.
            self._forking[worker_id] = child
            try:
                socket.send_fds(
                    self._ctrl,
                    [spawnctl.encode("spawn", worker_id)],
                    [listener.fileno(), live_r, out_w, err_w],
                )
            except OSError as exc:
                raise SpawnError(f"cannot ask the template for a worker: {exc}") from exc
            finally:
                handed = True
                listener.close()
                for fd in (live_r, out_w, err_w):
                    os.close(fd)
            try:
                await asyncio.wait_for(
                    asyncio.shield(child.started), min(start_timeout, _FORK_TIMEOUT)
                )
            except TimeoutError:
                raise SpawnError("the template did not fork the worker in time") from None
        except BaseException:
            # Without its liveness pipe's writer, a worker forked after all ends at once.
            self._forking.pop(worker_id, None)
            os.close(live_w)
            for pipe in transports:
                pipe.close()
            if not handed:
                listener.close()
                for fd in (live_r, out_w, err_w, out_r, err_r)[3 + len(transports) :]:
                    os.close(fd)
                for fd in (live_r, out_w, err_w):
                    os.close(fd)
            self._unlink(bound_path)
            raise
        return WorkerProcess(
            app=app,
            proc=child,
            address=address,
            socket_path=bound_path,
            liveness_write=live_w,
            tail_lines=200,
        )

    @staticmethod
    def _unlink(path: str | None) -> None:
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def retire(self) -> None:
        """A newer template takes over: stop this one once its last worker has ended."""
        self.retired = True
        if not self.workers:
            self.stop()

    def stop(self) -> None:
        self._loop.create_task(self._stop(), name=f"corral-template-stop-{self.pid}")

    async def _stop(self) -> None:
        await self.process.stop(_STOP_GRACE)
        self.ended()

    async def close(self) -> None:
        """Stop the template now (its workers are stopped by the pool)."""
        self.retired = True
        await self.process.stop(_STOP_GRACE)
        self.ended()


class TemplateSpawner:
    """The pool's ``Spawner`` for an app with preloaded workers (see the module's doc)."""

    def __init__(self, app: str, *, start_timeout: float) -> None:
        self.app = app
        self._start_timeout = start_timeout
        self._current: Template | None = None
        self._retired: list[Template] = []
        self._starting: asyncio.Future[Template | None] | None = None
        #: Why the current code is started directly (its template said ``nofork``).
        self._direct: str | None = None
        #: Counts ``renew``s: a template started before the latest one has the old code.
        self._epoch = 0

    @property
    def template_pid(self) -> int | None:
        current = self._current
        return current.pid if current is not None and current.alive else None

    async def __call__(
        self, plan: LaunchPlan, app: str, socket_path: str | None, instance_id: int
    ) -> Process:
        if self._direct is None:
            template = await self._template(plan)
            if template is not None:
                return await template.fork(plan, app, socket_path, self._start_timeout)
        return await spawn_process(plan, app, socket_path, instance_id)

    async def _template(self, plan: LaunchPlan) -> Template | None:
        current = self._current
        if current is not None and current.alive:
            return current
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start(plan, self._epoch))
            # Its waiters may all be gone (cancelled by a restart): its failure is logged by
            # whoever waits, or by nobody, but never as "exception never retrieved".
            self._starting.add_done_callback(_retrieve)
        starting = self._starting
        try:
            return await asyncio.shield(starting)
        finally:
            if self._starting is starting and starting.done():
                self._starting = None

    async def _start(self, plan: LaunchPlan, epoch: int) -> Template | None:
        if self._current is not None:
            self._current.retire()
            self._current = None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = (
                *plan.argv,
                "--template-fd",
                str(child.fileno()),
                "--template-title",
                template_title(_title_of(plan.argv), self.app),
                # (What it has to say ready in: a warm-up that would take longer gives up.)
                "--template-start-timeout",
                f"{self._start_timeout:g}",
            )
            process = await WorkerProcess.spawn_template(
                replace(plan, argv=argv), app=self.app, control_fd=child.fileno()
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        template = Template(self.app, process, parent)
        exited = asyncio.ensure_future(process.wait())
        waited: set[asyncio.Future[object]] = {template.hello, exited}  # type: ignore[arg-type]
        try:
            done, _ = await asyncio.wait(
                waited,
                timeout=self._start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hello = template.hello.result() if template.hello in done else None
            if hello is not None:
                if epoch != self._epoch:  # a restart came while it imported: maybe old code
                    template.retire()
                    raise SpawnError("a restart superseded this template")
                if hello.kind == "ready":
                    _log.info(
                        "app %s: template pid %d has loaded the app; workers are forked from it",
                        self.app,
                        process.pid,
                        extra={"app": self.app, "pid": process.pid},
                    )
                    self._current = template
                    return template
                self._direct = hello.text
                _log.warning(
                    "app %s: not preloading workers: %s",
                    self.app,
                    hello.text,
                    extra={"app": self.app, "pid": process.pid},
                )
                await template.close()
                return None
            if not exited.done():
                await asyncio.wait({exited}, timeout=1.0)
            if exited.done():
                await process.finish(0.5)
                reason = exit_reason(exited.result()).replace("worker", "template")
                raise SpawnError(reason, process.stderr_tail())
            if process.dump_stack():
                await asyncio.sleep(0.3)
            await template.close()
            raise SpawnError(
                f"the template did not load the app within {self._start_timeout:g} s",
                process.stderr_tail(),
            )
        except BaseException:
            template.retired = True
            await process.close()
            template.ended()
            raise
        finally:
            exited.cancel()

    def renew(self) -> None:
        """The app's code changed (or is about to): the next worker starts a new template."""
        self._direct = None
        self._epoch += 1
        self._starting = None  # one still importing may have read the old code
        if self._current is not None:
            self._current.retire()
            self._retired.append(self._current)
            self._current = None
        self._retired = [t for t in self._retired if t.alive]

    async def close(self) -> None:
        """Stop every template (after the pool has stopped the workers)."""
        templates = [t for t in (self._current, *self._retired) if t is not None and t.alive]
        self._current = None
        self._retired = []
        await asyncio.gather(*(t.close() for t in templates), return_exceptions=True)

    def kill(self) -> None:
        """Kill every template now (a close that was cancelled)."""
        for template in (self._current, *self._retired):
            if template is not None:
                template.process.kill()
