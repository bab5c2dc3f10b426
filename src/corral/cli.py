"""Command line: argv -> options, then the composition root does the work.

``corral serve [PATH] [--listen HOST:PORT] [--min N] [--max N] [--no-access-log] [--set N=V]``
``corral check [PATH]``
``corral --version``

Usage errors, a missing site folder and a busy port are one clear line on stderr and exit 2. A
broken configuration is every error (``file:line: setting: message``) on stderr and exit 1,
before anything listens or starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from corral import __version__
from corral.errors import ExitCode

if TYPE_CHECKING:
    from corral.config.errors import ConfigErrors

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
    serve = commands.add_parser("serve", help="serve a site folder or a server configuration")
    serve.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a site folder (web.config, corral.toml, or a wsgi.py alone) or a server TOML file "
        "(default: the bundled example, examples/hello)",
    )
    serve.add_argument(
        "--listen",
        default=None,
        type=parse_listen,
        metavar="HOST:PORT",
        help=f"serve every site here instead of the configured bindings (a site folder's "
        f"default: {DEFAULT_LISTEN}; port 0 picks a free port)",
    )
    serve.add_argument(
        "--min", type=_count, dest="min_workers", metavar="N", help="workers kept, every app"
    )
    serve.add_argument(
        "--max", type=_count, dest="max_workers", metavar="N", help="most workers, every app"
    )
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not write the access log (stderr)"
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="override a server setting (e.g. header_timeout=5, max_body_size=1000000: the "
        "server TOML's [server] keys) or a pool setting for every app (queue_size=10); "
        "repeatable; wins over the configuration files",
    )
    # --- users (issue 13, docs/tenants.md) ---
    serve.add_argument(
        "--user",
        metavar="USER",
        help="started as root: drop to USER once the ports are bound ([server] user)",
    )
    serve.add_argument(
        "--group", metavar="GROUP", help="the group to drop to with --user ([server] group)"
    )
    # --- end of users ---
    check = commands.add_parser(
        "check", help="validate a configuration and print the resolved model"
    )
    check.add_argument(
        "path", nargs="?", metavar="PATH", help="a site folder or a server TOML file (default: .)"
    )
    return parser


def _print_config_errors(
    path: Path, errors: ConfigErrors, outcome: str = "nothing started"
) -> None:
    count = len(errors.errors)
    print(
        f"corral: {path}: {count} configuration error{'s' if count != 1 else ''}, {outcome}:",
        file=sys.stderr,
    )
    for error in errors.errors:
        print(f"  {error}", file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    """`corral check`: the model as `corral serve` would load it, and what it would refuse."""
    from corral import app
    from corral.config.builtin_engines import PYTHON
    from corral.config.check import run_check
    from corral.config.errors import ConfigError, ConfigErrors
    from corral.config.model import ServerConfig

    path = Path(args.path or ".").resolve()

    def engine_errors(config: ServerConfig) -> list[ConfigError]:
        """What `corral serve` would refuse once loaded (the engines' checks)."""
        try:
            app.build_apps(config, app.ServeOptions(path=path))
        except ConfigErrors as errors:
            return list(errors.errors)
        return []

    code, text = run_check(args.path, default_engine=PYTHON, more_errors=engine_errors)
    if code == 0:  # users and limits (issue 13): who runs what, and what enforces the limits
        tenants = app.tenants_for(app.load_config(path), app.ServeOptions(path=path))
        warnings = tenants.problems()[1]
        text += "Users and limits:\n" + "".join(f"  {line}\n" for line in tenants.report())
        text += "".join(f"warning: {warning}\n" for warning in warnings)
    (sys.stdout if code == 0 else sys.stderr).write(text)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    path = Path(args.path) if args.path else default_site()
    if not path.exists():
        print(f"corral: site folder or server file {str(path)!r} does not exist", file=sys.stderr)
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
    from corral.config.errors import ConfigErrors

    logs.setup(access_log=None if args.no_access_log else sys.stderr)
    try:
        front_overrides, pool_overrides = app.apply_overrides(dict(args.set))
    except ValueError as exc:
        print(f"corral: --set: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.min_workers is not None:
        pool_overrides["min_instances"] = args.min_workers
    if args.max_workers is not None:
        pool_overrides["max_instances"] = args.max_workers
    if args.user is not None:  # issue 13: the user the front drops to
        front_overrides["user"] = args.user
    if args.group is not None:
        front_overrides["group"] = args.group
    path = path.resolve()
    listen = args.listen
    if listen is None and path.is_dir():
        listen = parse_listen(DEFAULT_LISTEN)
    options = app.ServeOptions(
        path=path, listen=listen, front_overrides=front_overrides, pool_overrides=pool_overrides
    )
    try:
        config = app.load_config(path)
        apps = app.build_apps(config, options)  # every problem now, before anything listens
    except ConfigErrors as errors:
        _print_config_errors(path, errors)
        return ExitCode.FAILURE
    try:
        return app.run(options, config, apps)
    except app.StartupError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
