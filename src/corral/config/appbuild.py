"""One application's declaration (handlers, engine, written variables) -> its `AppConfig`.

The engine is resolved and checked against the site's `<switchboard>`, the variables are layered
(OS < engine < application) and expanded, the application settings Corral interprets
(`settings.APP_BY_VARIABLE`) are converted, and the command a worker runs is worked out: Corral's
Python worker under the right interpreter, the engine's fullPath and arguments, or APP_COMMAND.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from corral.config import builtin_engines, expand, statedir
from corral.config.errors import Problems, did_you_mean
from corral.config.model import (
    AppConfig,
    EngineConfig,
    EngineKind,
    Handler,
    Location,
    NotInEffect,
    WireProtocol,
)
from corral.config.precedence import console_allowed, resolve_engine, switch_enabled
from corral.config.servercfg import SwitchEntry
from corral.config.settings import APP_BY_VARIABLE, BY_NAME, Kind, Setting


@dataclass
class BuildContext:
    """What building one configuration gathers as it goes (errors, notices, engines used)."""

    problems: Problems
    engines: dict[str, EngineConfig]
    environ: Mapping[str, str]
    notices: list[str] = field(default_factory=list)
    not_in_effect: list[NotInEffect] = field(default_factory=list)
    used_engines: dict[str, EngineConfig] = field(default_factory=dict)
    site_engines_allowed: bool = False
    default_engine: str | None = None
    #: The variables of that default application (the one-line serve's WSGI_APP).
    default_env: Mapping[str, str] = field(default_factory=dict)


_WINDOWS_EXE = re.compile(r"^([A-Za-z]:[\\/]|%[^%]+%[\\/])|\.exe$", re.IGNORECASE)


def build_app(
    ctx: BuildContext,
    site: str,
    virtual_path: str,
    root: str,
    name: str,
    handlers: list[Handler],
    env_written: dict[str, tuple[str, Location]],
    where: Location | None,
    switchboard: list[SwitchEntry],
) -> AppConfig | None:
    problems = ctx.problems
    first = handlers[0]
    engine_name = first.engine
    in_toml = first.location is not None and first.location.file.endswith(".toml")
    in_zoo = first.location is not None and first.location.file.endswith(".zoo")
    engine_key = "engine" if in_toml else "selected-engine" if in_zoo else "scriptProcessor"
    for handler in handlers[1:]:
        if handler.engine != engine_name:
            problems.add(
                handler.location or Location("?"),
                engine_key,
                f"application {name!r} uses engine {handler.engine!r} here but "
                f"{engine_name!r} at {first.location}",
            )
            return None
    # An engine that cannot run is an error, but the application's variables are still
    # checked, so that one pass reports every error.
    engine = resolve_engine(ctx.engines, engine_name)
    usable = engine is not None
    if engine is None:
        known = sorted(set(ctx.engines) | {e.name for e in builtin_engines.BUILT_IN})
        problems.add(
            first.location or Location("?"),
            engine_key,
            f"unknown engine {engine_name!r}{did_you_mean(engine_name, known)} (known: "
            f"{', '.join(known)}; Zoo names python.*, php.*.pipe, nodejs.http* and ruby.*.pipe "
            "also work)",
        )
    elif not switch_enabled(switchboard, engine_name) or not engine.enabled:
        why = "by <switchboard>" if engine.enabled else "(enabled = false)"
        problems.add(
            first.location or Location("?"),
            engine_key,
            f"engine {engine_name!r} is disabled for site {site!r} {why}",
        )
        usable = False
    else:
        ctx.used_engines[engine_name] = engine
    app_where = where or first.location
    module_vars = expand.module_variables(root, virtual_path)
    fixed = {var.upper() for var, _ in module_vars}
    engine_vars = engine.env if engine is not None else ()
    known_vars = {*APP_BY_VARIABLE, *(var.name.upper() for var in engine_vars)}
    for var, (_, loc) in env_written.items():
        if var.upper() in fixed:
            ctx.notices.append(f"{loc}: {var} is set by Corral; this value is ignored")
        elif var.upper() not in known_vars and (hint := did_you_mean(var, known_vars)):
            ctx.notices.append(
                f"{loc}: {var} is not a Corral setting{hint} (it is passed to the application "
                "as it is)"
            )
    engine_layer = [(var.name, var.value) for var in engine_vars if var.name.upper() not in fixed]
    app_layer = [
        (var, value) for var, (value, _) in env_written.items() if var.upper() not in fixed
    ]
    env = dict(
        expand.layer_env(ctx.environ, module_vars, [engine_layer, app_layer], site_root=root)
    )
    where_of: dict[str, Location | None] = {var.name: var.location for var in engine_vars}
    where_of.update({var: loc for var, (_, loc) in env_written.items()})
    notices: list[str] = []
    not_in_effect: list[NotInEffect] = []
    values: dict[str, object] = {}
    ok = True
    for variable, setting in APP_BY_VARIABLE.items():
        if variable not in env:
            continue
        raw = env[variable]
        loc = where_of.get(variable) or app_where or Location(root)
        try:
            values[setting.name] = _app_value(setting, raw)
        except ValueError as error:
            problems.add(loc, variable, str(error))
            ok = False
            continue
        if setting.name == "app.django_root" and raw.strip():
            _django_root(raw.strip(), virtual_path, name, loc, notices, not_in_effect)
        elif not setting.in_effect and raw.strip():
            not_in_effect.append(NotInEffect(f"{name}: {variable}", raw, loc))

    def path_value(key: str, default: str | None = None) -> str | None:
        raw = values.get(key)
        if not isinstance(raw, str) or not raw.strip():
            return default
        if raw.strip().upper() == "NULL":
            return None
        return expand.resolve_path(raw.strip(), root)

    deploy_file = path_value("app.deploy_file")
    if deploy_file is not None and not os.path.isfile(deploy_file):
        where_deploy = where_of.get("DEPLOY_FILE") or app_where or Location(root)
        problems.add(where_deploy, "DEPLOY_FILE", f"no such file: {deploy_file}")
        ok = False
    if not ok or engine is None or not usable:
        return None

    def log_path(key: str) -> str | None:
        """A path Corral writes to: under the state directory for a site that is Corral's own
        package data (the bundled example), never into the installed package."""
        path = path_value(key)
        state = statedir.package_site_state(root, ctx.environ) if path else None
        return statedir.relocate(path, root, state) if path and state else path

    pythonpath: tuple[str, ...] = ()
    raw_pythonpath = env.get("PYTHONPATH")
    if raw_pythonpath is not None:
        entries = [e for e in re.split(f"[{re.escape(os.pathsep)};]", raw_pythonpath) if e]
        pythonpath = tuple(
            dict.fromkeys(expand.resolve_path(e, root) for e in entries if not e.startswith("%"))
        )
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    current_directory = path_value("app.current_directory", root) or root
    virtual_env = path_value("app.virtual_env")
    if virtual_env is not None:
        env["VIRTUAL_ENV"] = virtual_env
        scripts, bin_dir = f"{virtual_env}/Scripts", f"{virtual_env}/bin"
        if "PATH" in env and not os.path.isdir(scripts):
            # A Windows virtualenv's Scripts folder is bin/ in a POSIX one (also when the
            # virtualenv does not exist yet: the deploy script makes a POSIX one).
            entries = env["PATH"].split(os.pathsep)
            env["PATH"] = os.pathsep.join(bin_dir if e == scripts else e for e in entries)
    lookup_env = {**ctx.environ, **dict(module_vars), **env}
    folded = {key.upper(): value for key, value in lookup_env.items()}

    def lookup(ref: str) -> str | None:
        if ref.upper() in expand.INSTANCE_VARIABLES:
            return None
        return lookup_env.get(ref, folded.get(ref.upper()))

    def expand_here(text: str) -> str:
        return expand.expand(text, lookup)

    interpreter = ""
    base_interpreter = ""
    argv: tuple[str, ...] = ()
    if engine.kind is EngineKind.PYTHON_WORKER:
        base_interpreter = _interpreter(engine, None, expand_here)
        if virtual_env is not None and not _executable(f"{virtual_env}/bin/python"):
            if deploy_file is None or os.path.isdir(f"{virtual_env}/Scripts"):
                problems.add(
                    where_of.get("VIRTUAL_ENV") or app_where or Location(root),
                    "VIRTUAL_ENV",
                    f"{virtual_env} has no bin/python (a virtualenv made on Windows has "
                    r"Scripts\python.exe instead: make one here with python3 -m venv)",
                )
                return None
            # The deploy script makes it: it runs under the engine's interpreter until the
            # virtualenv exists, and the workers, started after it, run its bin/python.
            notices.append(
                f"application {name!r}: VIRTUAL_ENV {virtual_env} has no bin/python yet; the "
                f"deploy script is expected to make it (it runs under {base_interpreter} "
                "until then)"
            )
        interpreter = _interpreter(engine, virtual_env, expand_here)
        argv = (interpreter, "-m", "corral.worker")
        asked = re.match(r"python\.(\d+(?:\.\d+)?)", engine_name)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        detail = f" (Python {version})" if interpreter == sys.executable else ""
        if builtin_engines.is_python_alias(engine_name) or engine.origin != "built-in":
            asked_text = (
                f"; the engine name asks for Python {asked.group(1)}"
                if asked
                and interpreter == sys.executable
                and not f"{version}.".startswith(asked.group(1) + ".")
                else ""
            )
            notices.append(
                f"engine {engine_name!r} runs Corral's Python worker (WSGI or ASGI over "
                f"FastCGI) under {interpreter}{detail}{asked_text}"
            )
    elif engine.kind is EngineKind.COMMAND:
        command = env.get("APP_COMMAND", "").strip()
        if engine.full_path:
            full_path = expand_here(engine.full_path)
            if _WINDOWS_EXE.search(full_path):
                posix = re.split(r"[\\/]", full_path)[-1]
                posix = re.sub(r"\.exe$", "", posix, flags=re.IGNORECASE)
                notices.append(
                    f"engine {engine_name!r}: Windows fullPath {full_path!r} runs as "
                    f"{posix!r} from PATH"
                )
                full_path = posix
            arguments = expand_here(engine.arguments)
            if engine.origin != "toml":
                arguments = arguments.replace("\\", "/")
            try:
                argv = (full_path, *expand.split_arguments(arguments))
            except ValueError as error:
                problems.add(
                    engine.location or app_where or Location(root),
                    "arguments",
                    f"engine {engine_name!r}: {error}",
                )
                return None
        elif command:
            try:
                argv = tuple(expand.split_arguments(command))
            except ValueError as error:
                problems.add(
                    where_of.get("APP_COMMAND") or Location(root), "APP_COMMAND", str(error)
                )
                return None
        else:
            problems.add(
                app_where or Location(root),
                "APP_COMMAND",
                f"application {name!r} uses engine {engine_name!r}, which has no "
                "fullPath: set APP_COMMAND to the command that runs the backend",
            )
            return None
    max_requests = 0
    buffering = str(values.get("app.request_buffering") or "auto")
    if buffering == "auto":
        buffering = engine.request_buffering
    if buffering == "auto":  # backends that read up to CONTENT_LENGTH: PHP's
        php = engine.protocol is WireProtocol.FASTCGI_PHP or _runs_php_cgi(engine, argv)
        buffering = "on" if php else "off"
    if _runs_php_cgi(engine, argv):
        argv = _php_argv(argv, path_value("app.php_ini"))
        limit = values.get("app.php_fcgi_max_requests")
        max_requests = limit if isinstance(limit, int) else 0
    host_ok, substitute_host = _substitute_host(
        ctx, name, engine, values, where_of, app_where, root
    )
    if not host_ok:
        return None
    _python_only(name, engine, values, where_of, not_in_effect)
    timeout = values.get("app.worker_request_timeout")
    mask = values.get("app.watch_file_changes_mask", ())
    console_url = _opt_str(values.get("app.console_url"))
    if console_url is not None:
        console_url, console_error = console_path(console_url)
        if console_error:
            where = where_of.get("CONSOLE_URL") or app_where or Location(root)
            problems.add(where, "CONSOLE_URL", console_error)
            return None
    idle = values.get("app.console_idle_timeout", BY_NAME["app.console_idle_timeout"].default)
    assert isinstance(idle, int | float)
    return AppConfig(
        name=name,
        site=site,
        virtual_path=virtual_path,
        physical_path=root,
        engine=engine,
        handlers=tuple(handlers),
        env=tuple(env.items()),
        module_vars=module_vars,
        argv=argv,
        current_directory=current_directory,
        interpreter=interpreter,
        base_interpreter=base_interpreter,
        pythonpath=pythonpath,
        wsgi_app=_opt_str(values.get("app.wsgi_app")),
        deploy_file=deploy_file,
        deploy_log=log_path("app.deploy_log"),
        deploy_timeout=_int_value(values, "app.deploy_timeout"),
        error_log_dir=log_path("app.error_log_dir"),
        error_log_max_kb=_int_value(values, "app.error_log_max_kb"),
        error_log_files=_int_value(values, "app.error_log_files"),
        watch_file_changes_mask=tuple(str(m) for m in mask) if isinstance(mask, tuple) else (),
        console_url=console_url,
        console_allowed=console_allowed(switchboard),
        console_idle_timeout=float(idle),
        zoo_substitute_host=substitute_host,
        worker_request_timeout=timeout if isinstance(timeout, int) else None,
        development_mode=values.get("app.development_mode") is True,
        max_requests=max_requests,
        request_buffering=buffering == "on",
        preload=str(values.get("app.preload") or "auto"),
        worker_scheduling=str(values.get("app.worker_scheduling") or "batch"),
        hook_app_start=_opt_str(values.get("app.hook_app_start")),
        hook_after_fork=_opt_str(values.get("app.hook_after_fork")),
        hook_worker_exit=_opt_str(values.get("app.hook_worker_exit")),
        warm_up=_opt_str(values.get("app.warm_up")),
        warm_up_requests=_int_value(values, "app.warm_up_requests"),
        notices=tuple(notices),
        not_in_effect=tuple(not_in_effect),
        location=app_where,
    )


#: A Host header value: a name or an address, an optional port.
_HOST_VALUE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")


def _substitute_host(
    ctx: BuildContext,
    name: str,
    engine: EngineConfig,
    values: Mapping[str, object],
    where_of: Mapping[str, Location | None],
    app_where: Location | None,
    root: str,
) -> tuple[bool, str | None]:
    """(valid, ZOO_SUBSTITUTE_HOST with %INSTANCE_ID% filled in: one shared backend, 0); the
    value is None when unset or not in effect (FastCGI); not valid (an error is reported) when
    it is no host name."""
    raw = _opt_str(values.get("app.zoo_substitute_host"))
    if raw is None:
        return True, None
    where = where_of.get("ZOO_SUBSTITUTE_HOST") or app_where or Location(root)
    if engine.protocol is not WireProtocol.HTTP:
        ctx.not_in_effect.append(
            NotInEffect(
                f"{name}: ZOO_SUBSTITUTE_HOST (a FastCGI backend gets the client's HTTP_HOST; "
                "it applies to http engines)",
                raw,
                where,
            )
        )
        return True, None
    value = re.sub("%INSTANCE_ID%", "0", raw, flags=re.IGNORECASE)
    if not _HOST_VALUE.fullmatch(value):
        ctx.problems.add(where, "ZOO_SUBSTITUTE_HOST", f"{value!r} is not a host name[:port]")
        return False, None
    return True, value


def _django_root(
    value: str,
    virtual_path: str,
    name: str,
    where: Location,
    notices: list[str],
    not_in_effect: list[NotInEffect],
) -> None:
    """django.root: zoofcgi stripped it from PATH_INFO (SCRIPT_NAME was always ""). Corral's
    SCRIPT_NAME is the virtual path and PATH_INFO the rest: the same for the usual
    %APPL_VIRTUAL_PATH%; any other prefix is not stripped (listed as not in effect)."""
    if value.rstrip("/") == virtual_path.rstrip("/"):
        notices.append(
            f"django.root = {value}: Corral already serves the application with SCRIPT_NAME "
            f"{virtual_path.rstrip('/') or '(empty)'} and PATH_INFO below it, as zoofcgi's "
            "stripping did"
        )
        return
    not_in_effect.append(
        NotInEffect(
            f"{name}: django.root (only the virtual path {virtual_path} is stripped from "
            "PATH_INFO: it becomes SCRIPT_NAME)",
            value,
            where,
        )
    )


def _python_only(
    name: str,
    engine: EngineConfig,
    values: Mapping[str, object],
    where_of: Mapping[str, Location | None],
    not_in_effect: list[NotInEffect],
) -> None:
    """ERROR_LOG_LEVEL is read by Corral's Python worker, WARM_UP sent by its template: listed
    as not in effect elsewhere (WARM_UP also with PRELOAD=off)."""
    warm_up = values.get("app.warm_up")
    if warm_up and (
        engine.kind is not EngineKind.PYTHON_WORKER or values.get("app.preload") == "off"
    ):
        not_in_effect.append(
            NotInEffect(
                f"{name}: WARM_UP (sent by the template of Corral's Python worker: PRELOAD on "
                "or auto)",
                str(warm_up),
                where_of.get("WARM_UP"),
            )
        )
    level = values.get("app.error_log_level")
    if level and engine.kind is not EngineKind.PYTHON_WORKER:
        not_in_effect.append(
            NotInEffect(
                f"{name}: ERROR_LOG_LEVEL (read by Corral's Python worker; this engine's "
                "backend configures its own logging)",
                str(level),
                where_of.get("ERROR_LOG_LEVEL"),
            )
        )


_PHP_CGI = re.compile(r"php-?cgi[\d.]*", re.IGNORECASE)


def _runs_php_cgi(engine: EngineConfig, argv: tuple[str, ...]) -> bool:
    """A PHP engine: protocol fastcgi-php, or (Zoo's own declarations say protocol="fastcgi")
    a command that is php-cgi."""
    if engine.kind is not EngineKind.COMMAND or not argv:
        return False
    program = os.path.basename(argv[0])
    return engine.protocol is WireProtocol.FASTCGI_PHP or bool(_PHP_CGI.fullmatch(program))


def _php_argv(argv: tuple[str, ...], php_ini: str | None) -> tuple[str, ...]:
    """php-cgi reads the application's PHP_INI: `-c FILE`, unless the command names one."""
    if not php_ini or not argv or "-c" in argv[1:]:
        return argv
    return (*argv, "-c", php_ini)


def _app_value(setting: Setting, raw: str) -> object:
    if setting.kind is Kind.INT and not raw.strip():
        return None
    if setting.kind is Kind.PATH_LIST:
        return raw
    return setting.convert(raw)


def _int_value(values: dict[str, object], name: str) -> int:
    """An integer application setting's value, or its declared default."""
    value = values.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    default = BY_NAME[name].default
    assert isinstance(default, int)
    return default


def console_path(value: str) -> tuple[str | None, str]:
    """CONSOLE_URL below the app's virtual path: (its segments joined by "/", "") or (None,
    why it cannot be one). A leading slash is tolerated, as in Zoo."""
    stripped = value.strip().strip("/")
    segments = stripped.split("/")
    if not stripped or any(part in ("", ".", "..") for part in segments):
        return None, f"{value!r} is not a URL path below the application (such as console)"
    if any(char in stripped for char in "?#%\\") or any(ord(char) <= 32 for char in stripped):
        return None, f"{value!r}: a console URL has no query, fragment, escapes or spaces"
    return stripped, ""


def _opt_str(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _interpreter(
    engine: EngineConfig, virtual_env: str | None, expand_here: Callable[[str], str]
) -> str:
    """The Python worker's interpreter: the virtualenv's (checked to exist), else the engine's
    fullPath when it is an absolute executable, else Corral's own."""
    if virtual_env is not None:
        return os.path.join(virtual_env, "bin", "python")
    if engine.full_path:
        path = expand_here(engine.full_path)
        if path.startswith("/") and _executable(path):
            return path
    return sys.executable


def _executable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)
