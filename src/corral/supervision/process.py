"""One backend worker process: spawn it, watch it, log its output, stop it. Mechanism.

How a worker is started (the same under asyncio's default loop and uvloop):

* The host creates, binds and listens on a fresh socket (a Unix socket in the pool's private
  0700 runtime directory, or loopback TCP on an ephemeral port) and passes it as the worker's
  fd 0, the FastCGI convention. The host closes its own copy once the child has it, so that a
  dead worker's socket refuses connections instead of queueing them.
* Or (``WorkerSocket.PORT``) the command listens itself: the host picks a port that is free now
  from the plan's range (``ports.PORTS``: a random start, skipping ports its own live workers
  hold and ports lately found taken by other programs, checking each by binding it), and passes
  it as PORT/HOST and ``%PORT%``/``%HOST%``/``%INSTANCE_ID%`` in argv and environment values;
  fd 0 is /dev/null. Another program may still take the port between the check and the
  command's own bind: the readiness check (``probe.owned``) then finds that program's listener,
  the start fails naming it, and the port is not offered again for a while.
* Or (``WorkerSocket.UNIX_PATH``) the command listens itself on a Unix socket at the path the host
  gives it in the pool's private 0700 runtime directory (SOCKET, ``%SOCKET%``); the file is
  removed when the worker exits. No TCP port is opened for it.
* The read end of a *liveness pipe* is placed at fd 3. The host keeps the write end (close-on-
  exec, so no other child inherits it). When the host dies, even by SIGKILL, the kernel closes
  the write end and the worker reads EOF and exits. On Linux the child also asks the kernel for
  ``PR_SET_PDEATHSIG = SIGKILL`` before exec, a second line of defence for commands that
  ignore fd 3.
* The worker gets its own session and process group (``start_new_session``): stopping it
  signals the whole group, so whatever the app spawned goes too.
* With a ``Confinement`` in the plan (an application with a user or limits, docs/tenants.md),
  the child moves itself into its application's cgroups, takes its rlimits and switches to its
  user's groups, gid and uid, with ``PR_SET_NO_NEW_PRIVS``, before exec (``confine_child``);
  its environment gets the user's HOME and a private TMPDIR (``tenancy.worker_env``). This is
  done in the child rather than with ``subprocess``'s ``user=``/``group=``, because the cgroup
  must be entered before the uid changes (cgroup v1 lets a non-root writer move only its own
  user's processes), and ``subprocess`` applies ``user=`` before ``preexec_fn``.
* stdout and stderr are pipes; a task per stream logs each line to ``corral.app.<name>`` tagged
  with the app and pid (``extra={"app", "pid", "stream"}``), without ever blocking the loop. The
  last ``tail_lines`` stderr lines are kept for error pages ("cannot start: <traceback>").

Stopping: SIGTERM to the group, ``timeout`` seconds' grace, SIGKILL to the group, reap, remove
the socket file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Protocol

import psutil  # type: ignore[import-untyped]

from corral.config.expand import finish
from corral.errors import (
    STACK_DUMP_SIGNAL,
    WORKER_LINE_START,
    WORKER_NOTICE_TAG,
    CorralError,
    ExitCode,
)
from corral.supervision.launch import LIVENESS_FD, Address, LaunchPlan, WorkerSocket
from corral.supervision.ports import PORTS, NoFreePort
from corral.supervision.tenancy import Confinement, rlimits, worker_env

#: Longest line logged as one record; the rest of an overlong line is logged as more records.
MAX_LINE = 16 * 1024
#: How long to wait for a dead worker's stdout/stderr to drain before giving up on them.
DRAIN_TIMEOUT = 2.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_log = logging.getLogger("corral.supervision")


class SpawnError(CorralError):
    """The worker could not be started at all (no such program, bad cwd, socket failure...)."""

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        super().__init__(message)
        #: What the process wrote to stderr before it failed (a template's traceback), if any.
        self.stderr_tail = stderr_tail


class ChildProcess(Protocol):
    """What ``WorkerProcess`` watches: ``asyncio.subprocess.Process``, or a worker forked by an
    application's template (``supervision.template``)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    async def wait(self) -> int: ...


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, resolved once in the parent (the child must not load libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None
    return prctl


_prctl = _load_prctl()
_low_fds_reserved = False


def _reserve_low_fds() -> None:
    """Make sure fds 0..3 are open in the host.

    The child receives its liveness pipe by ``dup2(read_end, 3)`` before exec. Under uvloop that
    happens before the stdio descriptors are put in place, so no descriptor the child needs may
    itself be fd 3. Keeping 0..3 always occupied (by /dev/null if the host had them closed)
    guarantees that every descriptor created later has a higher number.
    """
    global _low_fds_reserved
    if _low_fds_reserved:
        return
    while True:
        try:
            os.fstat(LIVENESS_FD)
            break
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            if fd >= LIVENESS_FD:
                break
    _low_fds_reserved = True


def confine_child(confinement: Confinement | None) -> Callable[[], None]:
    """What a child runs between fork and exec to enter its ``confinement`` (docs/tenants.md),
    in this order: move itself into its application's cgroups (writing "0", itself, to each
    ``cgroup.procs``: no code of the application ever runs outside them, and the write is made
    with the front's credentials, which cgroup v1 requires), set its rlimits (before the uid
    change, which could not raise them any more), then the user's supplementary groups, gid and
    uid (real, effective and saved), and ``PR_SET_NO_NEW_PRIVS`` (no setuid program or file
    capability can raise it again). A failure is written to the child's stderr (the pool logs
    it) and aborts the spawn."""
    prctl = _prctl
    procs: tuple[str, ...] = ()
    limits: tuple[tuple[int, int], ...] = ()
    run_as = None
    if confinement is not None:
        procs = tuple(os.path.join(d, "cgroup.procs") for d in confinement.cgroup_dirs)
        limits = rlimits(confinement.limits, confinement.mechanism)
        run_as = confinement.run_as

    def confine() -> None:
        try:
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            for which, value in limits:
                resource.setrlimit(which, (value, value))
            if run_as is not None:
                os.setgroups(list(run_as.groups))
                os.setresgid(run_as.gid, run_as.gid, run_as.gid)
                os.setresuid(run_as.uid, run_as.uid, run_as.uid)
                if prctl is not None:
                    prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        except OSError as exc:
            os.write(2, f"corral: cannot confine the process: {exc}\n".encode())
            raise

    return confine


def _child_setup(
    liveness_read: int, host_pid: int, confinement: Confinement | None = None
) -> Callable[[], None]:
    """The function the child runs between fork and exec (async-signal-light: no imports)."""
    prctl = _prctl
    confine = confine_child(confinement)

    def setup() -> None:
        os.dup2(liveness_read, LIVENESS_FD, inheritable=True)
        confine()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            # The host may have died between fork and prctl: then nobody will signal us.
            if os.getppid() != host_pid:
                os._exit(ExitCode.ORPHANED)

    return setup


def describe_returncode(returncode: int) -> str:
    """'exited with code 4' or 'killed by signal SIGKILL' (asyncio's negative return codes)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"killed by signal {name}"
    return f"exited with code {returncode}"


class WorkerProcess:
    """A spawned worker. Create with ``await WorkerProcess.spawn(...)``."""

    def __init__(
        self,
        *,
        app: str,
        proc: ChildProcess,
        address: Address,
        socket_path: str | None,
        liveness_write: int,
        tail_lines: int,
        port: int | None = None,
    ) -> None:
        self.app = app
        self.pid: int = proc.pid
        self.address = address
        self._port = port
        self._proc = proc
        self._socket_path = socket_path
        self._liveness_write: int | None = liveness_write
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._logger = logging.getLogger(f"corral.app.{app}")
        self._pumps = [
            asyncio.ensure_future(self._pump(proc.stdout, "stdout", logging.INFO)),
            asyncio.ensure_future(self._pump(proc.stderr, "stderr", logging.WARNING)),
        ]
        self._exit = asyncio.ensure_future(self._watch_exit())

    # ---------------------------------------------------------------- spawning

    @classmethod
    async def spawn(
        cls,
        plan: LaunchPlan,
        *,
        app: str,
        socket_path: str | None = None,
        tail_lines: int = 200,
        instance_id: int = 0,
    ) -> WorkerProcess:
        """Start one worker from ``plan``.

        Args:
            plan: the command, environment, working directory and transport.
            app: the application's name (for log records).
            socket_path: where to bind the Unix socket (``WorkerSocket.UNIX``), or where the
                command binds it (``WorkerSocket.UNIX_PATH``); its directory should be private
                (0700). Ignored for TCP.
            tail_lines: how many stderr lines to keep for error pages.
            instance_id: the worker's number in its pool (``%INSTANCE_ID%``).

        Raises:
            SpawnError: the socket could not be made or the program could not be executed.
        """
        _reserve_low_fds()
        if plan.transport.command_listens:
            return await cls._spawn_listening(plan, app, tail_lines, instance_id, socket_path)
        listener, address, bound_path = listen_socket(plan, socket_path)
        try:
            liveness_read, liveness_write = os.pipe()
        except OSError as exc:
            listener.close()
            if bound_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(bound_path)
            raise SpawnError(f"cannot create the liveness pipe: {exc}") from exc
        try:
            proc = await asyncio.create_subprocess_exec(
                *plan.argv,
                stdin=listener.fileno(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=worker_env(plan.env, plan.confinement),
                cwd=plan.cwd,
                start_new_session=True,
                preexec_fn=_child_setup(liveness_read, os.getpid(), plan.confinement),
                # The child dup2()s the liveness pipe onto fd 3 in preexec_fn; listing fd 3 here
                # keeps it across the stdlib's close_fds sweep, which runs after preexec_fn.
                # (The host's own fd 3 is always open, see _reserve_low_fds.)
                pass_fds=(LIVENESS_FD,),
            )
        except BaseException as exc:
            os.close(liveness_write)
            if bound_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(bound_path)
            if isinstance(exc, OSError | ValueError | subprocess.SubprocessError):
                raise SpawnError(f"cannot start {plan.argv[0]!r} in {plan.cwd!r}: {exc}") from exc
            raise
        finally:
            os.close(liveness_read)
            listener.close()
        return cls(
            app=app,
            proc=proc,
            address=address,
            socket_path=bound_path,
            liveness_write=liveness_write,
            tail_lines=tail_lines,
        )

    @classmethod
    async def spawn_template(
        cls, plan: LaunchPlan, *, app: str, control_fd: int, tail_lines: int = 200
    ) -> WorkerProcess:
        """Start an application's template (``supervision.template``): ``plan``'s command with
        fd 0 on /dev/null, the liveness pipe at fd 3 and ``control_fd`` kept open (it says its
        number on its command line), in a session of its own, as a worker is started. The
        workers it forks inherit its user, limits and groups: whatever a worker's start sets up
        here (``_child_setup``) is set up for them too.

        Raises:
            SpawnError: the program could not be executed.
        """
        _reserve_low_fds()
        try:
            liveness_read, liveness_write = os.pipe()
        except OSError as exc:
            raise SpawnError(f"cannot create the liveness pipe: {exc}") from exc
        try:
            proc = await asyncio.create_subprocess_exec(
                *plan.argv,
                stdin=subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=worker_env(plan.env, plan.confinement),
                cwd=plan.cwd,
                start_new_session=True,
                preexec_fn=_child_setup(liveness_read, os.getpid(), plan.confinement),
                pass_fds=(LIVENESS_FD, control_fd),
            )
        except BaseException as exc:
            os.close(liveness_write)
            if isinstance(exc, OSError | ValueError | subprocess.SubprocessError):
                raise SpawnError(f"cannot start {plan.argv[0]!r} in {plan.cwd!r}: {exc}") from exc
            raise
        finally:
            os.close(liveness_read)
        return cls(
            app=app,
            proc=proc,
            address="(template)",
            socket_path=None,
            liveness_write=liveness_write,
            tail_lines=tail_lines,
        )

    @classmethod
    async def _spawn_listening(
        cls,
        plan: LaunchPlan,
        app: str,
        tail_lines: int,
        instance_id: int,
        socket_path: str | None,
    ) -> WorkerProcess:
        """A command that opens its listening socket itself: on a port picked from the plan's
        range (``WorkerSocket.PORT``: PORT/HOST, %PORT%/%HOST%), or at ``socket_path``
        (``WorkerSocket.UNIX_PATH``: SOCKET, %SOCKET%)."""
        address: Address
        port: int | None = None
        host: str | None = None
        if plan.transport is WorkerSocket.UNIX_PATH:
            if socket_path is None:
                raise SpawnError("a command on a Unix socket needs a socket path")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)  # a dead worker's, in our private directory
            address, given = socket_path, {"SOCKET": socket_path}
        else:
            host = plan.tcp_host
            try:
                port = PORTS.pick(host, *plan.port_range)
            except NoFreePort as exc:
                raise SpawnError(str(exc)) from None
            address, given = (host, port), {"PORT": str(port), "HOST": host}
            socket_path = None

        def fill_in(value: str) -> str:
            return finish(value, port=port, host=host, instance_id=instance_id, socket=socket_path)

        argv = [fill_in(arg) for arg in plan.argv]
        env = {name: fill_in(value) for name, value in plan.env.items()}
        env.update(given)
        env = worker_env(env, plan.confinement)
        try:
            liveness_read, liveness_write = os.pipe()
        except OSError as exc:
            if port is not None:
                PORTS.release(port)
            raise SpawnError(f"cannot create the liveness pipe: {exc}") from exc
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=plan.cwd,
                start_new_session=True,
                preexec_fn=_child_setup(liveness_read, os.getpid(), plan.confinement),
                pass_fds=(LIVENESS_FD,),
            )
        except BaseException as exc:
            os.close(liveness_write)
            if port is not None:
                PORTS.release(port)
            if isinstance(exc, OSError | ValueError | subprocess.SubprocessError):
                raise SpawnError(f"cannot start {argv[0]!r} in {plan.cwd!r}: {exc}") from exc
            raise
        finally:
            os.close(liveness_read)
        return cls(
            app=app,
            proc=proc,
            address=address,
            socket_path=socket_path,
            liveness_write=liveness_write,
            tail_lines=tail_lines,
            port=port,
        )

    # ---------------------------------------------------------------- observing

    @property
    def returncode(self) -> int | None:
        """None while running; the exit code, or minus the signal number, once reaped."""
        return self._proc.returncode if self._exit.done() else None

    @property
    def running(self) -> bool:
        return not self._exit.done()

    def gone(self) -> bool:
        """Whether the process has died even though it is not reaped yet (a zombie, or no such
        process): what a connection it closed may mean, before ``wait()`` says so."""
        if self._exit.done():
            return True
        try:
            return bool(psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True
        except (psutil.Error, OSError):
            return False

    async def wait(self) -> int:
        """Wait for the process to end (cancelling the caller does not disturb the watch)."""
        return await asyncio.shield(self._exit)

    async def wait_output(self, within: float = DRAIN_TIMEOUT) -> None:
        """Wait until stdout and stderr reach EOF (after exit), at most ``within`` seconds."""
        pending = [pump for pump in self._pumps if not pump.done()]
        if pending:
            await asyncio.wait(pending, timeout=within)

    async def finish(self, within: float = DRAIN_TIMEOUT) -> None:
        """After exit: log what is left of stdout/stderr (up to ``within`` s), then stop reading
        (a grandchild that escaped the process group may hold the pipes open forever)."""
        await self.wait_output(within)
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    def stderr_tail(self) -> str:
        """The last stderr lines (up to ``tail_lines``), joined by newlines."""
        return "\n".join(self._stderr_tail)

    def describe_exit(self) -> str:
        code = self.returncode
        return "is running" if code is None else describe_returncode(code)

    # ---------------------------------------------------------------- stopping

    def signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the worker's process group; False if the group is gone."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - the group leader's pid was reused
            return False
        return True

    def dump_stack(self) -> bool:
        """Ask the worker to write every thread's Python stack to its stderr (Corral's worker
        registers ``faulthandler`` on ``STACK_DUMP_SIGNAL``); False if it is gone. Only the
        worker itself is signalled: other programs may end on the signal, and are about to be
        replaced anyway."""
        if not self.running:
            return False
        try:
            os.kill(self.pid, STACK_DUMP_SIGNAL)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the whole group now (the exit watch reaps it)."""
        if self.running:
            self.signal_group(signal.SIGKILL)

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, wait up to ``grace`` s, then SIGKILL it; return the exit code."""
        if self.running:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), grace)
            except TimeoutError:
                _log.warning(
                    "app %s: worker pid %d did not stop within %.1f s of SIGTERM; killing it",
                    self.app,
                    self.pid,
                    grace,
                )
                self.signal_group(signal.SIGKILL)
        code = await self.wait()
        await self.finish()
        return code

    async def close(self) -> None:
        """Kill if still running, reap, and release everything (for error paths and teardown)."""
        self.kill()
        await self.wait()
        await self.finish(0.5)

    # ---------------------------------------------------------------- internals

    async def _watch_exit(self) -> int:
        try:
            code = await self._proc.wait()
        finally:
            # Whatever the app left in its process group goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            if self._liveness_write is not None:
                os.close(self._liveness_write)
                self._liveness_write = None
            if self._socket_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._socket_path)
            if self._port is not None:
                PORTS.release(self._port)
        return code

    async def _pump(self, reader: asyncio.StreamReader | None, stream: str, level: int) -> None:
        if reader is None:
            return
        pending = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                for start in range(0, max(len(line), 1), MAX_LINE):
                    self._emit(line[start : start + MAX_LINE], stream, level)
            while len(pending) > MAX_LINE:
                self._emit(pending[:MAX_LINE], stream, level)
                pending = pending[MAX_LINE:]
        if pending:
            self._emit(pending, stream, level)

    def _emit(self, raw: bytes, stream: str, level: int) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        if stream == "stderr":
            self._stderr_tail.append(text)
            if text.startswith(WORKER_LINE_START) and WORKER_NOTICE_TAG in text[:40]:
                level = logging.INFO  # Corral's worker saying what it serves: not a problem
        self._logger.log(
            level,
            "%s[%d] %s",
            self.app,
            self.pid,
            text,
            extra={"app": self.app, "pid": self.pid, "stream": stream},
        )


def listen_socket(
    plan: LaunchPlan, socket_path: str | None
) -> tuple[socket.socket, Address, str | None]:
    """Create the worker's listening socket; return it, its address and the file to remove."""
    try:
        if plan.transport is WorkerSocket.UNIX:
            if socket_path is None:
                raise ValueError("a Unix transport needs a socket path")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(socket_path)
                sock.listen(socket.SOMAXCONN)
                run_as = plan.confinement.run_as if plan.confinement is not None else None
                if run_as is not None:  # the app's user and the front's group; nobody else
                    os.chmod(socket_path, 0o660)
                    os.chown(socket_path, run_as.uid, os.getegid())
            except BaseException:
                sock.close()
                raise
            return sock, socket_path, socket_path
        sock = socket.socket(socket.AF_INET6 if ":" in plan.tcp_host else socket.AF_INET)
        try:
            sock.bind((plan.tcp_host, 0))
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        return sock, (host, port), None
    except OSError as exc:
        raise SpawnError(f"cannot create the worker's listening socket: {exc}") from exc
