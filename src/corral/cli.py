"""Command line: argv -> options, then the composition root does the work.

``corral serve [SITE] [--listen HOST:PORT] [--min N] [--max N] [--no-access-log]``
``corral --version``

Usage errors, a missing site folder and a busy port are one clear line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from corral import __version__
from corral.errors import ExitCode

DEFAULT_LISTEN = "127.0.0.1:8080"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"corral: {message} (see corral --help)\n")


def default_site() -> Path:
    """The bundled example site, shipped inside the package as data (``examples/hello`` of a
    checkout is a link to it)."""
    return Path(__file__).resolve().parent / "examples" / "hello"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {value!r}")
    return host, int(port)


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}")
    return int(value)


def _setting(value: str) -> tuple[str, str]:
    name, sep, text = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {value!r}")
    return name.strip(), text.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="corral", description="Corral: an application host for Python web apps.")
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve a site folder")
    serve.add_argument(
        "site", nargs="?", help="the site folder (default: the bundled example, examples/hello)"
    )
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        type=parse_listen,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; port 0 picks a free port)",
    )
    serve.add_argument("--min", type=_count, dest="min_workers", metavar="N", help="workers kept")
    serve.add_argument("--max", type=_count, dest="max_workers", metavar="N", help="most workers")
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not write the access log (stderr)"
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="override a front or pool setting (e.g. header_timeout=5, queue_size=10); repeatable",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    site = Path(args.site) if args.site else default_site()
    if not site.is_dir():
        what = "is not a folder" if site.exists() else "does not exist"
        print(f"corral: site folder {str(site)!r} {what}", file=sys.stderr)
        return ExitCode.USAGE
    if (
        args.min_workers is not None
        and args.max_workers is not None
        and args.min_workers > args.max_workers
    ):
        print("corral: --min must not exceed --max", file=sys.stderr)
        return ExitCode.USAGE
    if args.max_workers == 0:
        print("corral: --max must be at least 1", file=sys.stderr)
        return ExitCode.USAGE

    # Imported here so that --version and usage errors stay instant.
    from corral import app, logs

    logs.setup(access_log=None if args.no_access_log else sys.stderr)
    host, port = args.listen
    try:
        front, pool = app.apply_overrides(dict(args.set))
    except ValueError as exc:
        print(f"corral: --set: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    options = app.ServeOptions(
        site=site.resolve(),
        host=host,
        port=port,
        min_workers=args.min_workers,
        max_workers=args.max_workers,
        front=front,
        pool=pool,
    )
    try:
        return app.run(options)
    except app.StartupError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
