"""Command line: argv -> options, then the composition root does the work.

``corral serve [PATH] [--listen HOST:PORT] [--min N] [--max N] [--set N=V]``
``    [--access-log PATH|- | --no-access-log] [--log-level LEVEL] [--pid-file PATH]``
``    [--admin HOST:PORT] [--control PATH]``
``corral serve module:app | app.py [--bind HOST:PORT] [--workers N]`` (the one-line serve)
``corral new TEMPLATE DIR [--toml] [--force]``, ``corral new --list``
``corral check [PATH]``
``corral status|restart APP|reload|stop|scale APP --min N --max N|top [--control PATH]``
(``corral.ops.controlcli``: the running server, through its control socket)
``corral --version``

Usage errors, a missing site folder and a busy port are one clear line on stderr and exit 2. A
broken configuration is every error (``file:line: setting: message``) on stderr and exit 1,
before anything listens or starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from corral import __version__, hotpath
from corral.errors import ExitCode
from corral.ops import controlcli

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


def _listen_text(value: str) -> str:
    from corral.config.convert import to_listen

    try:
        return to_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    parser.add_argument(
        "--version", action="version", version=f"corral {__version__} ({hotpath.describe()})"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve a site folder or a server configuration")
    serve.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a site folder (web.config, corral.toml, or a wsgi.py alone), a server TOML file, "
        "or, as gunicorn takes it, module:app or a file.py (its application or app) "
        "(default: the bundled example, examples/hello)",
    )
    serve.add_argument(
        "--listen",
        "--bind",
        "-b",
        default=None,
        type=parse_listen,
        metavar="HOST:PORT",
        help=f"serve every site here instead of the configured bindings (a site folder's "
        f"default: {DEFAULT_LISTEN}; port 0 picks a free port)",
    )
    serve.add_argument(
        "--admin",
        default=None,
        type=_listen_text,
        metavar="HOST:PORT",
        help="open the admin listener here (/metrics, /healthz, /readyz, the dashboard; a port "
        "alone means 127.0.0.1:PORT); wins over [server] admin",
    )
    serve.add_argument(
        "--min", type=_count, dest="min_workers", metavar="N", help="workers kept, every app"
    )
    serve.add_argument(
        "--max", type=_count, dest="max_workers", metavar="N", help="most workers, every app"
    )
    # -- logs and the process: [server] settings the command line holds (corral.ops.duties) --
    access = serve.add_mutually_exclusive_group()
    access.add_argument(
        "--access-log",
        metavar="PATH|-",
        help="write the access log to this file (reopened on SIGUSR1) or - for stderr "
        "(default: the access_log setting, stderr)",
    )
    access.add_argument("--no-access-log", action="store_true", help="write no access log")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="the server log's level (default: the log_level setting, info)",
    )
    serve.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write the host's process id here once it listens (removed at exit)",
    )
    serve.add_argument(  # issue 16: the front across cores (--set front_processes=N)
        "--front-processes",
        type=_count,
        metavar="N",
        help="N front processes sharing the bindings and the workers (0: auto, one per 4 "
        "cores up to 8; default: the front_processes setting)",
    )
    serve.add_argument(
        "--workers",
        "-w",
        type=_count,
        metavar="N",
        help="exactly N workers, every app (--min N --max N, as gunicorn's --workers)",
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
    controlcli.add_control_option(serve, serving=True)
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
    controlcli.add_commands(commands)
    _add_new(commands)
    return parser


# --- corral new (the logic: corral.scaffold) -------------------------------------------------
def _add_new(commands: argparse._SubParsersAction[_Parser]) -> None:
    new = commands.add_parser("new", help="create a site from a template (corral new --list)")
    new.add_argument("template", nargs="?", metavar="TEMPLATE", help="wsgi, flask, django...")
    new.add_argument("folder", nargs="?", metavar="DIR", help="the new site's folder")
    new.add_argument("--list", action="store_true", help="list the templates")
    new.add_argument("--toml", action="store_true", help="write corral.toml, not web.config")
    new.add_argument(
        "--force",
        action="store_true",
        help="write into a folder that is not empty (same-named files are replaced, others kept)",
    )


def _new(args: argparse.Namespace) -> int:
    from corral import scaffold

    if args.list:
        sys.stdout.write(scaffold.list_text())
        return ExitCode.OK
    if not args.template or not args.folder:
        print("corral: new needs TEMPLATE and DIR (see corral new --list)", file=sys.stderr)
        return ExitCode.USAGE
    try:
        created = scaffold.create(
            args.template, Path(args.folder).absolute(), toml=args.toml, force=args.force
        )
    except (scaffold.ScaffoldError, OSError) as exc:
        print(f"corral: new: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    sys.stdout.write(scaffold.created_text(created))
    return ExitCode.OK


# --- end of corral new ------------------------------------------------------------------------


def _one_line(target: str | None) -> tuple[Path, dict[str, str]] | int | None:
    """``corral serve module:app`` / ``app.py``: the folder to serve and its application's
    variables (``config.quickserve``); None for a folder or a server file; an exit code when
    the target cannot be served."""
    if not target:
        return None
    from corral.config.quickserve import QuickServeError, resolve

    try:
        quick = resolve(target, os.getcwd())
    except QuickServeError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    return None if quick is None else (Path(quick.folder), quick.env())


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


def _process_options(args: argparse.Namespace) -> dict[str, object]:
    """``--access-log``, ``--no-access-log``, ``--log-level`` and ``--pid-file`` as the server
    settings they hold (over the configuration's, like ``--set``)."""
    held: dict[str, object] = {}
    if args.no_access_log:
        held["access_log"] = "off"
    elif args.access_log is not None:
        value = args.access_log
        held["access_log"] = value if value in ("-", "off") else os.path.abspath(value)
    if args.log_level is not None:
        held["log_level"] = args.log_level
    if args.pid_file is not None:
        held["pid_file"] = os.path.abspath(args.pid_file)
    if args.front_processes is not None:
        held["front_processes"] = args.front_processes
    return held


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args)
    if args.command in controlcli.COMMANDS:
        return controlcli.run(args)
    if args.command == "new":
        return _new(args)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    path = Path(args.path) if args.path else default_site()
    quick = _one_line(args.path)
    if isinstance(quick, int):
        return quick
    app_env: dict[str, str] = {}
    if quick is not None:
        path, app_env = quick
    if args.workers is not None:
        if args.min_workers is not None or args.max_workers is not None:
            print("corral: --workers sets --min and --max: give one or the other", file=sys.stderr)
            return ExitCode.USAGE
        args.min_workers = args.max_workers = args.workers
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

    # (The access log is set up once the configuration is read: Host.start.)
    logs.setup(level=args.log_level or "info", access_log=None)
    try:
        front_overrides, pool_overrides = app.apply_overrides(dict(args.set))
    except ValueError as exc:
        print(f"corral: --set: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    front_overrides.update(_process_options(args))
    if args.admin is not None:
        front_overrides["admin"] = args.admin
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
        path=path,
        listen=listen,
        front_overrides=front_overrides,
        pool_overrides=pool_overrides,
        control=None if args.control is None else args.control.absolute(),
        app_env=app_env,
    )
    try:
        config = app.load_config(path, app_env=app_env)
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
