"""One console session's shell: a PTY, the shell on it, its I/O and its end. Mechanism.

``ShellSession.start`` opens a PTY, and starts the shell (``console.shell.ShellPlan``) with the
PTY's slave as stdin, stdout and stderr, in a new session whose controlling terminal is that
PTY (``setsid`` then ``TIOCSCTTY`` in the child, before exec). The start-up script, if any, is
in a pipe whose read end the child inherits (its number is the plan's ``rc_fd``).

I/O never blocks the event loop: the master fd is non-blocking, read with ``add_reader``
(``READ_SIZE`` bytes at a time, handed to the peer's ``output``) and written with ``os.write``,
the rest queued and written by ``add_writer``. Both ways are bounded:

- output: ``pause_output`` (the client is slow) stops reading the PTY, so the shell blocks on its
  own writes, as it would on a slow terminal;
- input: past ``INPUT_HIGH`` queued bytes the peer's ``pause_input`` is called (the front stops
  reading the client), and ``resume_input`` once the queue is below ``INPUT_LOW``.

The end (``close``, the shell exiting, or ``idle_timeout`` seconds without input or output): the
master fd is closed (the terminal hangs up), every process of the shell's session gets SIGHUP
and SIGCONT, and after ``KILL_GRACE`` seconds SIGKILL. Only that session's processes are
signalled (their session id is the shell's pid; the shell's process group is the first); a
process that left the session with ``setsid`` escapes it. The peer's ``ended`` is called once,
with why.

Identity: the shell enters the application's confinement (``ShellPlan.confinement``: its user,
groups, cgroup and limits, as its workers do; ``_child_setup``), else runs as Corral's user.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from typing import Protocol

import psutil  # type: ignore[import-untyped]

from corral.console.shell import ShellPlan
from corral.supervision.process import confine_child
from corral.supervision.tenancy import Confinement

logger = logging.getLogger("corral.console")

#: Bytes read from the PTY at a time.
READ_SIZE = 65536
#: Input queued for the PTY past which the client is no longer read, and below which it is again.
INPUT_HIGH = 256 * 1024
INPUT_LOW = 64 * 1024
#: Seconds between SIGHUP and SIGKILL at the end of a session.
KILL_GRACE = 1.0


class ShellPeer(Protocol):
    """The other end of a shell session (the WebSocket side)."""

    def output(self, data: bytes) -> None:
        """Bytes the shell wrote to its terminal."""

    def pause_input(self) -> None:
        """The shell is not reading its input: stop reading the client for a while."""

    def resume_input(self) -> None:
        """The shell read what was queued."""

    def ended(self, why: str) -> None:
        """The session is over (once)."""


class ConsoleError(OSError):
    """The shell could not be started."""


def _child_setup(terminal: int, confinement: Confinement | None) -> Callable[[], None]:
    """What the child runs before exec: a session of its own, whose controlling terminal is
    the PTY's slave (fd ``terminal``: under uvloop this runs before stdin becomes a copy of
    it); then, for an application with a user, its confinement (cgroup, limits, user), as a
    worker's child enters it (``confine_child``)."""
    confine = confine_child(confinement) if confinement is not None else None

    def setup() -> None:
        if os.getsid(0) != os.getpid():
            os.setsid()
        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)
        if confine is not None:
            confine()

    return setup


class ShellSession:
    """One shell on one PTY (see the module doc)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        master: int,
        peer: ShellPeer,
        idle_timeout: float,
        plan: ShellPlan,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.shell = plan.argv[0]
        self.cwd = plan.cwd
        self.started = time.monotonic()
        self._master = master
        self._peer = peer
        self._loop = asyncio.get_running_loop()
        self._idle_timeout = idle_timeout
        self._last = self._loop.time()
        self._pending = bytearray()
        self._input_paused = False
        self._reading = False
        self._ended = False
        self._idle = self._loop.call_later(idle_timeout, self._check_idle)
        self._reaper = self._loop.create_task(proc.wait())
        self._reaper.add_done_callback(self._exited)
        self._read_on()

    @classmethod
    async def start(
        cls,
        plan_for: Callable[[int], ShellPlan],
        peer: ShellPeer,
        idle_timeout: float,
        size: tuple[int, int] = (24, 80),
    ) -> ShellSession:
        """Start a shell (``plan_for(rc_fd)`` gives its plan once the start-up script's fd is
        known) on a new PTY of ``size`` (rows, columns). ``ConsoleError`` when it cannot."""
        master, slave = os.openpty()
        rc_read, rc_write = os.pipe()
        try:
            plan = plan_for(rc_read)
            run_as = plan.confinement.run_as if plan.confinement is not None else None
            if run_as is not None:  # its terminal is its own (/dev/tty, a password prompt)
                os.fchown(slave, run_as.uid, -1)
            if plan.rc_script:
                os.set_blocking(rc_write, False)
                if os.write(rc_write, plan.rc_script) != len(plan.rc_script):
                    raise ConsoleError("the shell's start-up script does not fit in a pipe")
            os.close(rc_write)
            rc_write = -1
            resize(master, *size)
            os.set_blocking(master, False)
            proc = await asyncio.create_subprocess_exec(
                *plan.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(plan.env),
                cwd=plan.cwd,
                preexec_fn=_child_setup(slave, plan.confinement),
                pass_fds=(rc_read,) if plan.rc_script else (),
            )
        except BaseException as exc:
            os.close(master)
            failed = OSError | ValueError | subprocess.SubprocessError
            if isinstance(exc, failed) and not isinstance(exc, ConsoleError):
                raise ConsoleError(f"cannot start a shell: {exc}") from exc
            raise
        finally:
            os.close(slave)
            os.close(rc_read)
            if rc_write >= 0:
                os.close(rc_write)
        return cls(proc, master, peer, idle_timeout, plan)

    # -- input ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Terminal input from the client."""
        if self._ended or not data:
            return
        self._last = self._loop.time()
        if not self._pending:
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            except OSError:
                return  # the terminal hung up: the shell's exit ends the session
            data = data[written:]
            if not data:
                return
            self._loop.add_writer(self._master, self._writable)
        self._pending += data
        if len(self._pending) > INPUT_HIGH and not self._input_paused:
            self._input_paused = True
            self._peer.pause_input()

    def _writable(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending)
        del self._pending[:written]
        if not self._pending:
            self._loop.remove_writer(self._master)
        if self._input_paused and len(self._pending) < INPUT_LOW:
            self._input_paused = False
            self._peer.resume_input()

    def resize(self, rows: int, columns: int) -> None:
        """The client's terminal has ``rows`` x ``columns`` cells (the shell gets SIGWINCH)."""
        if not self._ended:
            with contextlib.suppress(OSError):
                resize(self._master, rows, columns)

    # -- output --------------------------------------------------------------------------------

    def pause_output(self) -> None:
        self._read_off()

    def resume_output(self) -> None:
        if not self._ended:
            self._read_on()

    def _read_on(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._master, self._readable)

    def _read_off(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._master)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process has the terminal open any more
            data = b""
        if not data:
            self._read_off()  # the shell's exit ends the session (_exited)
            return
        self._last = self._loop.time()
        self._peer.output(data)

    # -- the end -------------------------------------------------------------------------------

    def _check_idle(self) -> None:
        left = self._last + self._idle_timeout - self._loop.time()
        if left > 0:
            self._idle = self._loop.call_later(left, self._check_idle)
            return
        self.close(f"idle for {self._idle_timeout:g} s")

    def _exited(self, task: asyncio.Task[int]) -> None:
        if self._ended:
            return
        code = task.result() if not task.cancelled() else None
        if self._reading:
            # What the shell wrote last, before its exit was seen.
            with contextlib.suppress(OSError):
                while data := os.read(self._master, READ_SIZE):
                    self._peer.output(data)
        if code is not None and code < 0:
            self.close(f"the shell was killed by signal {-code}")
        else:
            self.close(f"the shell exited with status {code}")

    def close(self, why: str = "closed") -> None:
        """End the session (see the module doc); the peer hears ``ended(why)`` once."""
        if self._ended:
            return
        self._ended = True
        self._idle.cancel()
        self._read_off()
        if self._pending:
            self._loop.remove_writer(self._master)
            self._pending.clear()
        os.close(self._master)
        if signal_session(self.pid, (signal.SIGHUP, signal.SIGCONT)):
            self._loop.call_later(KILL_GRACE, signal_session, self.pid, (signal.SIGKILL,))
        self._peer.ended(why)

    @property
    def ended(self) -> bool:
        return self._ended


def resize(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def session_members(sid: int) -> list[int]:
    """The pids of the processes in session ``sid`` (its leader's process group first)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) == sid:
                members.append(pid)
    return sorted(members, key=lambda pid: pid != sid)


def signal_session(sid: int, signals: tuple[signal.Signals, ...]) -> bool:
    """Send ``signals`` to the process group ``sid`` and to every process of session ``sid``;
    whether any was there."""
    found = False
    for signum in signals:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signum)
            found = True
    for pid in session_members(sid):
        for signum in signals:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
                found = True
    return found
