"""``python -m corral.worker``: Corral's Python worker, a FastCGI responder (WSGI or ASGI 3).

Runs inside the application's own interpreter; imports only the stdlib and Corral's pure
modules. See ``docs/architecture.md`` ("corral.worker") for the contract with the host.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys

from corral.errors import STACK_DUMP_SIGNAL, ExitCode


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m corral.worker",
        description="Serve a WSGI or ASGI application over FastCGI (Corral's Python worker).",
    )
    parser.add_argument(
        "--bind",
        metavar="unix:PATH|HOST:PORT",
        help="listen here; without it, serve on the listening socket inherited at fd 0",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="WSGI: requests served at once, one connection per thread (default 1)",
    )
    parser.add_argument(
        "--max-threads",
        type=int,
        default=None,
        metavar="M",
        help="WSGI: start a thread per connection on demand, up to M (the host opens as many "
        "connections as the load needs); threads above --threads that wait for a connection "
        "longer than --thread-idle-timeout end (default: --threads, fixed)",
    )
    parser.add_argument(
        "--thread-idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --max-threads: how long a thread above --threads waits for a connection "
        "before it ends (default 10)",
    )
    parser.add_argument(
        "--scheduling",
        choices=("batch", "normal"),
        default="batch",
        help="Linux: batch (default) serves under SCHED_BATCH, so that a worker woken for a "
        "request does not preempt the front; normal keeps the default policy",
    )
    parser.add_argument(
        "--interface",
        choices=("auto", "wsgi", "asgi"),
        default="auto",
        help="how to call the application: auto (default) serves a coroutine function or an "
        "object with an async __call__ as ASGI 3, anything else as WSGI ($ASGI_APP means asgi)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="ASGI: FastCGI connections (requests, WebSockets) the host may open at once, "
        "all served by one event loop (default 100)",
    )
    parser.add_argument(
        "--ws-max-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="ASGI: the largest WebSocket message accepted (default 16 MiB); a larger one "
        "closes the WebSocket with code 1009",
    )
    parser.add_argument(
        "--app",
        metavar="SPEC",
        help="the application: module.attr, module:attr, or module.factory(literal args); "
        "default: $ASGI_APP, $WSGI_APP, $WSGI_HANDLER, $DJANGO_SETTINGS_MODULE, wsgi.py in the "
        "working directory, else the service-information page",
    )
    parser.add_argument(
        "--liveness-fd",
        type=int,
        metavar="N",
        help="read end of a pipe from the host: the worker exits when it reaches EOF",
    )
    parser.add_argument(
        "--stderr-to-front",
        action="store_true",
        help="also send what the app writes to wsgi.errors to the front as FCGI_STDERR",
    )
    parser.add_argument(
        "--ws-ping-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="ASGI: ping each WebSocket this often (default 20; 0: never); a client silent "
        "for a whole interval after a ping is disconnected (1006)",
    )
    parser.add_argument(
        "--title",
        metavar="TEXT",
        help="show TEXT as the process's command line in ps and top (Linux; ignored elsewhere)",
    )
    parser.add_argument(
        "--template-fd",
        type=int,
        metavar="N",
        help="run as the app's template (preloaded workers): import the app once, then fork a "
        "worker for each request of the host on the control socket at fd N",
    )
    parser.add_argument("--template-title", metavar="TEXT", help="the template's own process title")
    parser.add_argument(
        "--template-start-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the time the host gives the template to say ready: its warm-up requests give up "
        "(and its workers are started directly) before it runs out",
    )
    parser.add_argument(
        "--hook-app-start",
        metavar="MODULE:FUNCTION",
        help="call this once the app is imported (in the template, else in each worker)",
    )
    parser.add_argument(
        "--hook-after-fork",
        metavar="MODULE:FUNCTION",
        help="call this in each worker forked from the template, before it serves",
    )
    parser.add_argument(
        "--hook-worker-exit",
        metavar="MODULE:FUNCTION",
        help="call this in a worker that stops when asked, after its last request",
    )
    parser.add_argument(
        "--warm-up",
        metavar="PATH_OR_URL",
        help="as the template: GET this (/path?query or http[s]://host/path) through the app "
        "before forking (WARM_UP)",
    )
    parser.add_argument(
        "--warm-up-requests",
        type=int,
        default=1,
        metavar="N",
        help="send the warm-up request N times (default 1)",
    )
    parser.add_argument(
        "--warm-up-script-name",
        default="",
        metavar="PATH",
        help="the warm-up request's SCRIPT_NAME (the app's virtual path)",
    )
    args = parser.parse_args(argv)
    if args.warm_up_requests < 1:
        parser.error("--warm-up-requests must be at least 1")
    if args.warm_up is not None:
        from corral.worker.warmup import parse_target

        try:
            parse_target(args.warm_up)
        except ValueError as exc:
            parser.error(f"--warm-up: {exc}")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.max_threads is not None and args.max_threads < 1:
        parser.error("--max-threads must be at least 1")
    if args.thread_idle_timeout <= 0:
        parser.error("--thread-idle-timeout must be more than 0")
    if args.max_connections is not None and args.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    if args.ws_max_size is not None and args.ws_max_size < 125:
        parser.error("--ws-max-size must be at least 125")
    if args.ws_ping_interval is not None and args.ws_ping_interval < 0:
        parser.error("--ws-ping-interval must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.template_fd is not None:
        from corral.worker import template

        return template.run(args)
    if args.title:  # first, while the worker has one thread (prctl names the calling thread)
        from corral.worker.proctitle import set_title

        set_title(args.title)
    # Imported after argument parsing so that --help works even where the codec is missing.
    from corral.worker import hooks, listen, server
    from corral.worker.serving import load_app, serve

    if args.liveness_fd is not None:
        try:
            os.fstat(args.liveness_fd)
        except OSError as exc:
            print(
                f"corral worker: --liveness-fd {args.liveness_fd} is not open ({exc.strerror})",
                file=sys.stderr,
            )
            return ExitCode.USAGE
        server.watch_liveness(args.liveness_fd)

    # The host asks for every thread's stack (to stderr, hence its log) before it replaces a
    # worker whose request ran past the timeout, or that hangs while it loads the app.
    faulthandler.register(STACK_DUMP_SIGNAL, file=2, all_threads=True, chain=False)

    # Bind first: the host learns about a bad socket before the (maybe slow) app import.
    try:
        listener, where = listen.bind(args.bind)
    except listen.BindError as exc:
        print(f"corral worker: {exc}", file=sys.stderr)
        return ExitCode.BIND_FAILED

    try:
        loaded = load_app(args)
        if isinstance(loaded, int):
            return loaded
        if not hooks.run(args.hook_app_start, "app start"):
            return ExitCode.APP_LOAD_FAILED
        return serve(args, loaded, listener, where)
    finally:
        if args.bind and args.bind.startswith("unix:"):
            try:
                os.unlink(args.bind[5:])
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
