"""How a worker loads its application and serves it: shared by a directly started worker
(``corral.worker.__main__``) and one forked from a template (``corral.worker.template``).
Stdlib only: this runs in the application's interpreter."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from corral.errors import ExitCode


class Loaded:
    """The application, imported, and where it came from."""

    def __init__(self, app: object, description: str, asgi: bool) -> None:
        self.app = app
        self.description = description
        self.asgi = asgi


def load_app(args: argparse.Namespace) -> Loaded | int:
    """Import the application (from the working directory); the exit code if it fails, its
    traceback written to stderr."""
    from corral.worker import loader

    cwd = os.getcwd()
    _error_log_level(os.environ.get("ERROR_LOG_LEVEL", ""))
    loader.ensure_app_root_on_path(cwd)
    source = loader.choose_source(args.app, os.environ, cwd)
    try:
        app = loader.load(source)
    except loader.AppLoadError as exc:
        lines = [f"corral worker: cannot load application {loader.describe(source)}: {exc}\n"]
        if exc.__cause__ is not None:
            lines += loader.format_app_error(exc.__cause__)
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
        return ExitCode.APP_LOAD_FAILED
    interface = args.interface
    if interface == "auto":
        interface = "asgi" if source.kind == "ASGI_APP" or loader.is_asgi(app) else "wsgi"
    return Loaded(app, loader.describe(source), interface == "asgi")


def serve(args: argparse.Namespace, loaded: Loaded, listener: socket.socket, where: str) -> int:
    """Serve ``loaded`` on ``listener`` until SIGTERM; then the worker-exit hook."""
    from corral.worker import hooks, server, threads

    if args.scheduling == "batch":
        batch_scheduling()
    if loaded.asgi:
        code = _serve_asgi(args, loaded.app, listener, f"{loaded.description} on {where}")
    else:
        state = server.ServeState(
            loaded.app,  # type: ignore[arg-type]
            args.threads,
            args.stderr_to_front,
            max_threads=args.max_threads,
            thread_idle_timeout=args.thread_idle_timeout,
        )
        count = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
        if state.max_threads > args.threads:
            count = f"{args.threads} to {state.max_threads} threads, on demand"
        server.log(
            f"serving {loaded.description} on {where} ({count}, Python {sys.version.split()[0]})",
            notice=True,
        )
        code = threads.serve_forever(listener, state)
    if not hooks.run(args.hook_worker_exit, "worker exit"):
        return ExitCode.FAILURE
    return code


def _serve_asgi(args: argparse.Namespace, app: object, listener: socket.socket, what: str) -> int:
    """ASGI 3 on one asyncio loop (imported only here: a WSGI worker never loads asyncio)."""
    from corral.worker import aserver

    state = aserver.ASGIState(
        app,  # type: ignore[arg-type]
        max_connections=args.max_connections or aserver.DEFAULT_MAX_CONNECTIONS,
        max_message_size=args.ws_max_size or aserver.DEFAULT_WS_MAX_SIZE,
        ping_interval=aserver.DEFAULT_PING_INTERVAL
        if args.ws_ping_interval is None
        else args.ws_ping_interval,
    )
    ready = f"serving {what} (ASGI, Python {sys.version.split()[0]})"
    return aserver.serve_forever(listener, state, ready)


def batch_scheduling() -> None:
    """Linux: this thread, and the threads it starts from now on, run under ``SCHED_BATCH``.

    The front wakes a worker for each request that finds it idle. A woken thread of the
    default policy preempts what runs on its CPU, most often the front itself in the middle of
    a turn of its event loop (on a machine with fewer cores than the front, its workers and
    the clients need): two context switches for each request, and a front that then handles
    fewer events per turn. A ``SCHED_BATCH`` thread is not given the CPU on a wake-up: it runs
    on an idle core at once, else when the running task sleeps or its slice ends. Its share of
    the CPU is unchanged (same weight, same nice value). Measured in bench/README.md,
    "Performance II (session 7)". An unprivileged process may make this change; where it is
    refused (a sandbox), the worker serves as it is."""
    if sys.platform != "linux":
        return
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:
        pass


#: ERROR_LOG_LEVEL's values (checked by the host when it loads the configuration).
_LEVELS = ("debug", "info", "warning", "error", "critical")


def _error_log_level(level: str) -> None:
    """ERROR_LOG_LEVEL: the application's logging records from that level go to stderr (the
    application's log), set up before the application is imported so that its own logging
    configuration, if any, decides over this one."""
    level = level.strip().lower()
    if level not in _LEVELS:
        return
    import logging

    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
