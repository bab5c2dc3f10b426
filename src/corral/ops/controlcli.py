"""The control commands of the ``corral`` command line: ``status``, ``restart``, ``reload``,
``stop``, ``scale`` and ``top`` (``add_commands`` declares them on ``corral.cli``'s parser,
``run`` carries one out).

Each reaches a running ``corral serve`` through its control socket (``ops.client``):
``--control PATH``, or the only server running for this user. Errors (no server, unknown
application, a refused command) are one line on stderr and exit code 1; usage errors, and
several servers to choose from, exit 2.

Stdlib only: these commands must start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final, TypeVar

from corral.errors import ExitCode
from corral.ops import controlproto as proto
from corral.ops.client import QUICK, SLOW, ClientError, call, choose, wait_gone

_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)

COMMANDS: Final = ("status", "restart", "reload", "stop", "scale", "top")

#: Seconds ``corral stop`` waits beyond the server's grace period for it to be gone.
STOP_MARGIN: Final = 30.0


def _bound(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be within 0.1..3600 seconds, not {value!r}")
    return seconds


def add_control_option(parser: argparse.ArgumentParser, serving: bool = False) -> None:
    parser.add_argument(
        "--control",
        type=Path,
        metavar="PATH",
        help="the control socket to open (default: in the runtime folder, "
        "$XDG_RUNTIME_DIR/corral, named after the configuration)"
        if serving
        else "the control socket of the server (default: the only server running for this user)",
    )


def add_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the control commands on ``corral``'s subcommand parser."""
    status = commands.add_parser("status", help="show every application, its workers and figures")
    status.add_argument(
        "--json", action="store_true", help="print the status document (docs/operating.md)"
    )
    restart = commands.add_parser(
        "restart", help="restart an application's workers, rolling (as touching restart.txt)"
    )
    restart.add_argument("app", metavar="APP", help="the application: NAME or SITE/NAME")
    commands.add_parser("reload", help="read the configuration again (as SIGHUP)")
    stop = commands.add_parser(
        "stop", help="stop the server gracefully (as SIGTERM) and wait until it has stopped"
    )
    stop.add_argument(
        "--no-wait", action="store_true", help="return once the server has begun to stop"
    )
    scale = commands.add_parser(
        "scale", help="change an application's worker bounds until the next reload"
    )
    scale.add_argument("app", metavar="APP", help="the application: NAME or SITE/NAME")
    scale.add_argument(
        "--min", type=_bound, dest="min_workers", metavar="N", help="workers kept (started now)"
    )
    scale.add_argument(
        "--max",
        type=_bound,
        dest="max_workers",
        metavar="N",
        help="most workers (the surplus finishes its requests and stops)",
    )
    top = commands.add_parser("top", help="the status, refreshed in the terminal (q quits)")
    top.add_argument("--interval", type=_seconds, default=1.0, metavar="SECONDS", help="default: 1")
    for name in COMMANDS:
        add_control_option(commands.choices[name])


def _request(args: argparse.Namespace) -> proto.Request:
    """``ProtocolError`` for arguments the protocol refuses (scale's bounds)."""
    command = args.command
    if command == "restart":
        request = proto.Request(proto.RESTART, args.app)
    elif command == "scale":
        request = proto.Request(proto.SCALE, args.app, args.min_workers, args.max_workers)
    else:
        names = {"status": proto.STATUS, "reload": proto.RELOAD}
        request = proto.Request(names.get(command, proto.STOP))
    proto.check_request(request)
    return request


def _message(result: object) -> str:
    if isinstance(result, dict):
        message = result.get("message")
        if isinstance(message, str):
            return message
    return json.dumps(result)


def run(args: argparse.Namespace) -> int:
    """Carry out one control command; returns the exit status."""
    try:
        request = None if args.command == "top" else _request(args)
    except proto.ProtocolError as exc:
        print(f"corral {args.command}: {str(exc).removeprefix('scale: ')}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        path = choose(args.control)
        if request is None:
            from corral.ops import top

            return top.run(path, args.interval)
        slow = request.command in (proto.RESTART, proto.RELOAD)
        result = call(path, request, SLOW if slow else QUICK)
        if request.command == proto.STATUS:
            return _print_status(result, args.json)
        if request.command == proto.STOP:
            return _stopped(path, result, wait=not args.no_wait)
        print(_message(result))
        return ExitCode.OK
    except ClientError as exc:
        print(f"corral {args.command}: {exc.message}", file=sys.stderr)
        return exc.code


def _print_status(result: object, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
        return ExitCode.OK
    from corral.ops.screen import render

    try:
        lines = render(result)
    except ValueError as exc:
        raise ClientError(f"the server sent a status this corral cannot read: {exc}") from None
    print("\n".join(lines))
    return ExitCode.OK


def _stopped(path: Path, result: object, wait: bool) -> int:
    pid = result.get("pid") if isinstance(result, dict) else None
    grace = result.get("grace") if isinstance(result, dict) else None
    print(f"corral (pid {pid}) is stopping", flush=True)
    if not wait:
        return ExitCode.OK
    limit = (grace if isinstance(grace, int | float) else 30.0) + STOP_MARGIN
    if not wait_gone(path, limit):
        raise ClientError(f"corral (pid {pid}) is still stopping after {limit:.0f} s")
    print(f"corral (pid {pid}) has stopped")
    return ExitCode.OK
