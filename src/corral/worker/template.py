"""An application's template process (preloaded workers, "smart spawning").

``python -m corral.worker --template-fd N ...``: import the application once, call its
app-start hook, then fork a worker for each ``spawn`` the host sends on the control socket at
fd N (``corral.protocol.spawnctl``). Each forked worker gets, with the ``spawn``, the same
things a directly started worker gets from the host: its listening socket (fd 0), the read end
of its liveness pipe (fd 3), and its own stdout and stderr pipes (fds 1 and 2, logged by the
host under the worker's pid). It starts a new session (so the host signals its process group,
and stopping the template does not stop it), calls the after-fork hook and serves.

Before forking, the template serves its warm-up requests (``corral.worker.warmup``: Corral's
own serving path, then the app's ``--warm-up`` page), so that the code they quicken and what
the app builds at its first request are shared; then it freezes its heap (``gc.freeze()``;
no collection runs while the app imports, so that no hole is left for the workers to fill):
the objects of the import are moved out of the collector's reach, so that a worker's
collections do not write to (and so copy) the pages they live on. An app whose import (or
warm-up) started threads is not forked (a fork copies only the calling thread: a lock another
thread held stays locked in the child); the template says ``nofork`` and exits, and the host
starts that app's workers directly.

The template reaps its workers (they are its children) and reports each exit with its code.
It exits when its liveness pipe closes (the host is gone) or on SIGTERM; its workers do not
depend on it, and end on their own liveness pipes. Stdlib only.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import os
import select
import signal
import socket
import sys
import threading
import time

from corral.errors import STACK_DUMP_SIGNAL, ExitCode
from corral.protocol import spawnctl
from corral.worker import server
from corral.worker.serving import Loaded

#: fds a forked worker receives, by position in the ``spawn``: where each goes in the worker.
_TARGETS = (0, 3, 1, 2)
_FDS_PER_SPAWN = len(spawnctl.SPAWN_FDS)


def _send(ctrl: socket.socket, line: bytes) -> None:
    try:
        ctrl.sendall(line)
    except OSError:  # the host is gone: the liveness pipe ends us
        pass


def _close_others(keep: set[int]) -> None:
    """Close every open descriptor not in ``keep`` (the open ones, as /proc lists them)."""
    try:
        opened = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: close the ranges between the kept ones
        bounds = sorted(keep)
        for low, high in zip(bounds, [*bounds[1:], os.sysconf("SC_OPEN_MAX")], strict=True):
            os.closerange(low + 1, high)
        return
    for fd in opened:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:  # the listing's own descriptor, already closed
                pass


def run(args: argparse.Namespace) -> int:
    """The template's life: import, hooks, then fork on request until the host goes away."""
    started = time.monotonic()
    # What a forked worker needs is imported here, once, and shared (a module each worker
    # imported for itself would be that worker's own memory: threads alone was 0.8 MB of a
    # forked worker's 3.3 MB, bench/preload.py --apps plain).
    from corral.worker import hooks, listen, threads  # noqa: F401
    from corral.worker.serving import load_app

    # Whatever else the template inherited (descriptors its starter leaked) would be inherited
    # by every worker, holding the template's own pipes open: before the app opens anything,
    # keep only stdio, the liveness pipe and the control socket.
    keep = {0, 1, 2, args.template_fd}
    if args.liveness_fd is not None:
        keep.add(args.liveness_fd)
    _close_others(keep)
    ctrl = socket.socket(fileno=args.template_fd)
    if args.template_title:
        from corral.worker.proctitle import set_title

        set_title(args.template_title)
    faulthandler.register(STACK_DUMP_SIGNAL, file=2, all_threads=True, chain=False)
    # A forked worker must not inherit the control socket, whatever the app execs later.
    os.set_inheritable(ctrl.fileno(), False)
    # No collection while the app imports: a collection frees objects in the middle of pages
    # that the workers would then fill with their own (and so copy). Frozen before the forks.
    gc.disable()
    loaded = load_app(args)
    if isinstance(loaded, int):
        return loaded
    if loaded.asgi:
        from corral.worker import aserver  # noqa: F401 - the workers' serving loop, shared
    if not hooks.run(args.hook_app_start, "app start"):
        return ExitCode.APP_LOAD_FAILED
    _warm_up(args, loaded, ctrl, started)
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        reason = (
            f"its import started {len(others)} thread(s) ({', '.join(others[:5])}), which a "
            "fork would not copy: its workers are started directly"
        )
        _send(ctrl, spawnctl.encode("nofork", text=reason))
        return ExitCode.OK
    gc.freeze()
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    _send(ctrl, spawnctl.encode("ready", os.getpid()))
    decoder = spawnctl.Decoder()
    received: list[int] = []
    liveness = args.liveness_fd
    watched = [ctrl.fileno(), wake_read] + ([liveness] if liveness is not None else [])
    while True:
        try:
            readable, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            try:
                while os.read(wake_read, 512):
                    pass
            except BlockingIOError:
                pass
        _reap(ctrl)
        if liveness is not None and liveness in readable:
            try:
                if not os.read(liveness, 512):
                    return ExitCode.ORPHANED
            except OSError:
                return ExitCode.ORPHANED
        if ctrl.fileno() in readable:
            try:
                data, fds, _, _ = socket.recv_fds(ctrl, spawnctl.MAX_LINE, 4 * _FDS_PER_SPAWN)
            except OSError:
                return ExitCode.ORPHANED
            if not data:
                return ExitCode.ORPHANED
            received += fds
            for message in decoder.feed(data):
                if message.kind != "spawn":
                    continue
                given, received = received[:_FDS_PER_SPAWN], received[_FDS_PER_SPAWN:]
                _spawn(args, loaded, ctrl, message.numbers[0], given, (wake_read, wake_write))
        _reap(ctrl)


def _warm_up(args: argparse.Namespace, loaded: Loaded, ctrl: socket.socket, started: float) -> None:
    """Before the heap is frozen: the warm-up requests (``corral.worker.warmup``), through
    Corral's serving path (a WSGI app's; an ASGI app's is not warmed up)."""
    if loaded.asgi:
        if args.warm_up:
            server.log(f"warm-up request {args.warm_up}: not sent (an ASGI app)")
        return
    from corral.worker import warmup

    until = warmup.deadline(started, args.template_start_timeout)

    def stuck() -> None:
        # (From the warm-up's own thread: the template's is in the app, maybe for ever.)
        reason = (
            f"its warm-up request was still unanswered {until - started:.1f} s after the "
            "template started (its start timeout less a margin): its workers are started "
            "directly"
        )
        server.log(reason)
        _send(ctrl, spawnctl.encode("nofork", text=reason))
        os._exit(ExitCode.OK)

    warmup.before_fork(
        loaded.app,  # type: ignore[arg-type]
        args.warm_up,
        args.warm_up_requests,
        args.warm_up_script_name,
        stuck,
        until,
    )


def _reap(ctrl: socket.socket) -> None:
    """Report every worker that has ended (``exit PID CODE``)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctrl, spawnctl.encode("exit", pid, os.waitstatus_to_exitcode(status)))


def _spawn(
    args: argparse.Namespace,
    loaded: object,
    ctrl: socket.socket,
    worker_id: int,
    fds: list[int],
    wake: tuple[int, int],
) -> None:
    """Fork worker ``worker_id`` on the fds the host sent; report its pid."""
    try:
        if len(fds) != _FDS_PER_SPAWN:
            _send(ctrl, spawnctl.encode("failed", worker_id, text="the host sent no fds"))
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            _send(ctrl, spawnctl.encode("failed", worker_id, text=f"fork: {exc}"))
            return
        if pid == 0:
            # First of all, out of the template's process group: when the template ends, the
            # host kills what is left in its group.
            os.setsid()
            code: int = ExitCode.FAILURE
            try:
                code = _become_worker(args, loaded, ctrl, fds, wake)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        _send(ctrl, spawnctl.encode("spawned", worker_id, pid))
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _become_worker(
    args: argparse.Namespace,
    loaded: object,
    ctrl: socket.socket,
    fds: list[int],
    wake: tuple[int, int],
) -> int:
    """In the forked child: take the host's fds, a session of its own, the after-fork hook,
    then serve as any worker does."""
    from corral.worker import hooks, listen, server
    from corral.worker.serving import Loaded, serve

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    gc.enable()
    for fd, target in zip(fds, _TARGETS, strict=True):
        os.dup2(fd, target)
    for fd in (*fds, *wake):
        os.close(fd)
    ctrl.close()
    if args.title:
        from corral.worker.proctitle import set_title

        set_title(args.title)
    assert isinstance(loaded, Loaded)
    if not hooks.run(args.hook_after_fork, "after fork"):
        return ExitCode.APP_LOAD_FAILED
    server.watch_liveness(3)
    try:
        listener, where = listen.bind(None)
    except listen.BindError as exc:
        print(f"corral worker: {exc}", file=sys.stderr)
        return ExitCode.BIND_FAILED
    return serve(args, loaded, listener, f"{where}, forked from the template")
