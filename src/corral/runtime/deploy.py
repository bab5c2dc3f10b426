"""Running an application's deploy script (DEPLOY_FILE / DEPLOY_LOG). Mechanism.

``DeployRun(command)`` runs the script once: ``run()`` spawns it in its own process group with
the engine's interpreter, the application's environment and working directory (and the host's
identity, or the application's user, groups, cgroup and limits when it has them: the workers'
``Confinement``), reads its output (stdout and stderr merged, in order)
asynchronously, and returns a ``DeployResult``. The output goes

* to DEPLOY_LOG when it is set (appended; written by the default executor's threads, so the
  event loop never waits on the disk);
* to every ``subscribe()``-r: the front streams it to the browser whose request triggered the
  run when DEPLOY_LOG is unset, as Helicon Zoo did. A subscriber first gets what was written
  before it subscribed;
* to the host's log, line by line, tagged with the application (and so to its ERROR_LOG_DIR);
* into a tail kept for the error page of a failed run.

A run that outlives ``timeout`` is killed (the whole group: SIGTERM, then SIGKILL after
``KILL_GRACE`` s) and has failed.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import IO

from corral.supervision.confine import Confiner
from corral.supervision.process import confine_child, describe_returncode
from corral.supervision.tenancy import worker_env

_log = logging.getLogger("corral.runtime.deploy")

#: Seconds between SIGTERM and SIGKILL when a timed-out script is stopped.
KILL_GRACE = 5.0
#: Characters of output kept for the error page.
TAIL_CHARS = 8192
#: Output kept in memory to replay to a late subscriber (beyond it, the start is dropped).
HISTORY_BYTES = 1024 * 1024
#: A subscriber that falls this far behind (a browser that stopped reading) is cut off.
SUBSCRIBER_BACKLOG = 1024 * 1024
#: A subscriber receives an empty chunk after this many seconds without output (keep-alive).
HEARTBEAT = 10.0


@dataclass(frozen=True, slots=True)
class DeployCommand:
    """Everything needed to run one application's deploy script."""

    #: The script, absolute.
    script: str
    #: The engine's interpreter (the program the workers run: python, node...).
    interpreter: str
    env: Mapping[str, str]
    cwd: str
    #: DEPLOY_LOG, absolute; None: the output is streamed to the triggering browser.
    log_path: str | None = None
    #: Seconds the script may run.
    timeout: float = 600.0
    #: Runs the script while ``interpreter`` does not exist yet: the engine's own Python, when
    #: the workers' is a virtualenv's that the script itself makes (None: no fallback).
    fallback_interpreter: str | None = None
    #: The application's user, cgroup and limits (the workers'); None: the host's identity.
    confiner: Confiner | None = None

    @property
    def argv(self) -> tuple[str, str]:
        """The command, resolved now (not when the configuration was loaded): a virtualenv
        the previous run made is used as soon as it exists."""
        interpreter = self.interpreter
        if self.fallback_interpreter and not os.access(interpreter, os.X_OK):
            interpreter = self.fallback_interpreter
        return (interpreter, self.script)


@dataclass(frozen=True, slots=True)
class DeployResult:
    ok: bool
    #: The exit code (minus the signal number when killed); None when it could not start.
    returncode: int | None
    timed_out: bool
    #: Why it could not start, if it could not.
    error: str | None
    #: The last ``TAIL_CHARS`` characters of output.
    tail: str
    duration: float
    #: time.time() when it ended (files it wrote are older than this).
    finished_at: float
    #: The interpreter the workers run, which the script exited 0 without making (the
    #: virtualenv VIRTUAL_ENV names): the run has failed.
    missing: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"the deploy script could not run: {self.error}"
        if self.timed_out:
            return f"the deploy script did not finish within its time limit ({self.duration:.0f} s)"
        if self.missing is not None:
            return (
                f"the deploy script exited 0 without making {self.missing}, which the workers "
                "run (the virtualenv VIRTUAL_ENV names: make it in the script)"
            )
        assert self.returncode is not None
        if self.ok:
            return f"the deploy script succeeded in {self.duration:.1f} s"
        return f"the deploy script failed: it {describe_returncode(self.returncode)}"


class DeployRun:
    """One run of a deploy script: create, ``subscribe()`` if wanted, ``await run()``."""

    def __init__(self, command: DeployCommand, *, app: str) -> None:
        self.command = command
        self.app = app
        self.result: DeployResult | None = None
        self._history: collections.deque[bytes] = collections.deque()
        self._history_size = 0
        self._tail = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._line = ""
        self._subscribers: list[_Subscriber] = []
        self._logger = logging.getLogger(f"corral.app.{app}")
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ observing

    def subscribe(self) -> AsyncIterator[bytes]:
        """The output from the start, live, until the script ends (b"" now and then while it
        is silent: a keep-alive for whoever streams it). Nothing is held for an iterator that
        is never started (a HEAD request that started the run)."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        # History and registration in one step: no chunk can fall between them.
        subscriber = _Subscriber(list(self._history))
        if self.result is not None:
            subscriber.queue.put_nowait(None)
        else:
            self._subscribers.append(subscriber)
        try:
            for chunk in subscriber.replay:
                yield chunk
            subscriber.replay = []
            while True:
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT)
                except TimeoutError:
                    yield b""
                    continue
                if item is None:
                    return
                subscriber.backlog -= len(item)
                yield item
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

    # ------------------------------------------------------------------ running

    async def run(self) -> DeployResult:
        """Run the script to its end (or its time limit); never raises for the script's sake."""
        command = self.command
        loop = asyncio.get_running_loop()
        started = loop.time()
        argv = await loop.run_in_executor(None, lambda: command.argv)
        _log.info(
            "app %s: running deploy script %s with %s%s",
            self.app,
            command.script,
            argv[0],
            f" (output to {command.log_path})" if command.log_path else "",
            extra={"app": self.app},
        )
        try:
            if command.log_path is not None:
                self._log_file = await loop.run_in_executor(None, _open_log, command.log_path)
                header = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n"
                await self._write_log(header.encode())
            if not await loop.run_in_executor(None, os.path.isfile, command.script):
                return await self._finish(started, None, error=f"{command.script} does not exist")
            try:
                confinement = command.confiner.ready() if command.confiner is not None else None
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env=worker_env(command.env, confinement),
                    cwd=command.cwd,
                    start_new_session=True,
                    preexec_fn=confine_child(confinement) if confinement is not None else None,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return await self._finish(started, None, error=str(exc))
            timed_out = False
            try:
                async with asyncio.timeout(command.timeout):
                    await self._pump(proc)
                    code = await proc.wait()
            except TimeoutError:
                timed_out = True
                code = await self._kill(proc)
            except BaseException:
                await self._kill(proc)
                raise
            return await self._finish(started, code, timed_out=timed_out)
        finally:
            self._end_subscribers()
            if self._log_file is not None:
                log_file, self._log_file = self._log_file, None
                await loop.run_in_executor(None, log_file.close)

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            chunk = await proc.stdout.read(65536)
            if not chunk:
                return
            await self._output(chunk)

    async def _output(self, chunk: bytes) -> None:
        if self._log_file is not None:
            await self._write_log(chunk)
        self._broadcast(chunk)
        text = self._decoder.decode(chunk)
        self._tail = (self._tail + text)[-TAIL_CHARS:]
        *lines, self._line = (self._line + text).split("\n")
        for line in lines:
            self._log_line(line)

    def _broadcast(self, chunk: bytes) -> None:
        """To the history (replayed to later subscribers) and to every subscriber."""
        self._history.append(chunk)
        self._history_size += len(chunk)
        while self._history_size > HISTORY_BYTES and len(self._history) > 1:
            self._history_size -= len(self._history.popleft())
        for subscriber in list(self._subscribers):
            if subscriber.backlog > SUBSCRIBER_BACKLOG:
                # Not reading: stop feeding it (its stream ends).
                self._subscribers.remove(subscriber)
                subscriber.queue.put_nowait(None)
                continue
            subscriber.backlog += len(chunk)
            subscriber.queue.put_nowait(chunk)

    def _log_line(self, line: str) -> None:
        self._logger.info(
            "%s deploy: %s",
            self.app,
            line.rstrip("\r"),
            extra={"app": self.app, "stream": "deploy"},
        )

    async def _write_log(self, data: bytes) -> None:
        log_file = self._log_file
        if log_file is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, _write, log_file, data)
        except OSError as exc:
            _log.error(
                "app %s: cannot write DEPLOY_LOG %s: %s",
                self.app,
                self.command.log_path,
                exc,
                extra={"app": self.app},
            )
            self._log_file = None

    async def _kill(self, proc: asyncio.subprocess.Process) -> int:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), KILL_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return await proc.wait()

    async def _finish(
        self, started: float, code: int | None, *, timed_out: bool = False, error: str | None = None
    ) -> DeployResult:
        if self._line:
            self._log_line(self._line)
            self._line = ""
        if error is not None:
            # Where the output would have gone (the page, the log) explains it.
            await self._output(f"the deploy script could not run: {error}\n".encode())
        loop = asyncio.get_running_loop()
        ok = code == 0 and not timed_out and error is None
        missing = None
        command = self.command
        if ok and command.fallback_interpreter:
            # The script was to make the workers' interpreter (their virtualenv): did it?
            made = await loop.run_in_executor(None, os.access, command.interpreter, os.X_OK)
            missing = None if made else command.interpreter
        result = DeployResult(
            ok=ok and missing is None,
            returncode=code,
            timed_out=timed_out,
            error=error,
            tail=self._tail,
            duration=loop.time() - started,
            finished_at=time.time(),
            missing=missing,
        )
        if error is None:
            summary = f"--- {result.describe()}\n".encode()
            await self._write_log(summary)
            self._broadcast(summary)
        self.result = result
        level = logging.INFO if result.ok else logging.ERROR
        _log.log(level, "app %s: %s", self.app, result.describe(), extra={"app": self.app})
        return result

    def _end_subscribers(self) -> None:
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.queue.put_nowait(None)


class _Subscriber:
    __slots__ = ("backlog", "queue", "replay")

    def __init__(self, replay: list[bytes]) -> None:
        self.replay = replay
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.backlog = 0


def _open_log(path: str) -> IO[bytes]:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return open(path, "ab", buffering=0)


def _write(log_file: IO[bytes], data: bytes) -> None:
    log_file.write(data)
