"""`corral check [PATH]`: validate a configuration and render the resolved model as text.

    exit_code, text = run_check(path)     # the CLI prints `text` and exits with `exit_code`

0: valid (the text shows sites, routes, engines, each application's environment after expansion
with secret-looking values masked, and the settings accepted but not in effect yet); 1: the
configuration has errors (every one, as ``file:line: setting: message``, in one pass: the
files', the applications' and the engines'); 2: PATH does not exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence

from corral.config.errors import ConfigError, ConfigErrors, in_file_order
from corral.config.load import load, load_site
from corral.config.model import (
    AppConfig,
    Binding,
    EngineConfig,
    EngineKind,
    FrontSettings,
    Mount,
    NotInEffect,
    ServerConfig,
)
from corral.config.settings import SERVER_BY_TOML
from corral.errors import ExitCode

MASK = "********"
_SECRET_NAME = re.compile(
    r"secret|passw|pwd|token|api[_-]?key|private|credential|auth|signature|salt|cookie|session_key",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)")


def mask_value(name: str, value: str) -> str:
    """Hide a secret-looking variable's value, and the password of any URL in a value."""
    if _SECRET_NAME.search(name) and value:
        return MASK
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)


def run_check(
    path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    default_engine: str | None = None,
    more_errors: Callable[[ServerConfig], Sequence[ConfigError]] | None = None,
) -> tuple[int, str]:
    """``default_engine``: as `load_site`'s, for a folder without any configuration file
    (`corral check` passes "python", as `corral serve` does). ``more_errors``: the checks after
    loading (the engines': `corral serve` would refuse what they return), run on the model
    even when loading found errors (on what loaded), so that one pass reports every error."""
    path = path or "."
    if not os.path.exists(path):
        return int(ExitCode.USAGE), f"corral check: no such file or folder: {path}\n"
    config: ServerConfig | None
    try:
        if default_engine is not None and os.path.isdir(path):
            config = load_site(path, environ=environ, default_engine=default_engine)
        else:
            config = load(path, environ=environ)
        errors: list[ConfigError] = []
    except ConfigErrors as failed:
        config, errors = failed.partial, list(failed.errors)
    refused: list[ConfigError] = []
    if config is not None:  # a refused site file: corral serve serves the others
        refused = [ConfigError(*error) for item in config.included for error in item.errors]
        errors += refused
    if config is not None and more_errors is not None:
        errors += [error for error in more_errors(config) if error not in errors]
    if errors:
        count = len(errors)
        s = "s" if count != 1 else ""
        what = "it"
        if len(refused) == count:
            what = "the site files and folders named (and serve the others)"
        lines = [f"{path}: {count} configuration error{s}, corral serve would refuse {what}:"]
        lines += [f"  {error}" for error in in_file_order(errors)]
        notices = config.notices if config is not None else ()
        if notices:
            lines.append("Notices:")
            lines += [f"  {notice}" for notice in notices]
        return int(ExitCode.FAILURE), "\n".join(lines) + "\n"
    assert config is not None
    return int(ExitCode.OK), render(config)


def _binding(binding: Binding) -> str:
    hosts = ", ".join(binding.hosts) if binding.hosts else "every host"
    if binding.tls:
        return (
            f"https {binding.address}:{binding.port} ({hosts}; certificate {binding.certificate})"
        )
    return f"{binding.address}:{binding.port} ({hosts})"


def _instances(engine: EngineConfig) -> str:
    top = str(engine.max_instances) if engine.max_instances else "CPUs"
    return f"{engine.min_instances}..{top}"


def _service(engine: EngineConfig) -> str:
    try:
        addresses = engine.service_addresses()
    except ValueError as exc:
        return f"(bad servers: {exc})"
    return ", ".join(
        address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        for address in addresses
    )


def _engine_line(engine: EngineConfig) -> str:
    what = {
        EngineKind.PYTHON_WORKER: "Corral Python worker",
        EngineKind.COMMAND: engine.full_path or "APP_COMMAND",
        EngineKind.SERVICE: f"service at {_service(engine)}",
    }[engine.kind]
    where = f" ({engine.location})" if engine.location else ""
    return (
        f"  {engine.name}: {what}; {engine.transport.value}/{engine.protocol.value}; "
        f"instances {_instances(engine)}; from {engine.origin}{where}"
    )


def _routes(mount: Mount) -> list[str]:
    lines: list[str] = []
    scopes = sorted(mount.scopes, key=lambda scope: scope.folder)
    base = mount.virtual_path.rstrip("/")
    if not any(scope.folder == "" for scope in scopes):
        lines.append(f"        {base}/*  -> static files")
    for scope in scopes:
        prefix = f"{base}/{scope.folder}/" if scope.folder else f"{base}/"
        where = f"  ({scope.location})" if scope.location else ""
        if not scope.handlers:
            lines.append(f"        {prefix}*  -> static files{where}")
            continue
        for handler in scope.handlers:
            lines.append(
                f"        {prefix}{handler.path}  -> {handler.app_name} [{handler.engine}]"
                f"  ({handler.location})"
            )
        if not any(handler.path == "*" for handler in scope.handlers):
            lines.append(f"        {prefix}(anything else)  -> static files")
    return lines


def _rewrite(mount: Mount) -> list[str]:
    """A mount's URL Rewrite rules, each once, under the folder that declares it."""
    lines: list[str] = []
    base = mount.virtual_path.rstrip("/")
    for scope in mount.rewrite:
        for rule in scope.rules:
            if rule.folder != scope.folder:
                continue  # inherited: listed under its own folder
            action = rule.action
            target = f" {action.url.text}" if action.url is not None else ""
            status = f" {action.status}" if action.status else ""
            conditions = f" + {len(rule.conditions)} condition(s)" if rule.conditions else ""
            lines.append(
                f"        {base}/{rule.folder + '/' if rule.folder else ''}  {rule.name!r}: "
                f"{'not ' if rule.negate else ''}{rule.match.syntax} {rule.match.text!r}"
                f"{conditions} -> {action.type}{status}{target}"
                f"{' (stop)' if rule.stop_processing else ''}  ({rule.location})"
            )
    return lines


def _app(app: AppConfig) -> list[str]:
    where = f"  ({app.location})" if app.location else ""
    lines = [f"    application {app.name!r} at {app.virtual_path}{where}"]
    lines.append(f"      engine: {app.engine.name}")
    if app.argv:
        lines.append(f"      command: {' '.join(app.argv)}")
    lines.append(f"      working directory: {app.current_directory}")
    if app.wsgi_app:
        lines.append(f"      WSGI_APP: {app.wsgi_app}")
    if app.pythonpath:
        lines.append(f"      PYTHONPATH: {os.pathsep.join(app.pythonpath)}")
    if app.console_url is not None:
        url = f"{app.script_name}/{app.console_url}"
        state = (
            f"admin token; idle timeout {app.console_idle_timeout:g} s"
            if app.console_allowed
            else "refused by the switchboard"
        )
        lines.append(f"      web console: {url} ({state})")
    lines.append("      environment (after expansion; %PORT%, %HOST%, %INSTANCE_ID% per worker):")
    for name, value in (*app.module_vars, *app.env):
        lines.append(f"        {name}={mask_value(name, value)}")
    for notice in app.notices:
        lines.append(f"      notice: {notice}")
    return lines


def _not_in_effect(item: NotInEffect) -> str:
    where = f"{item.location}: " if item.location else ""
    variable = item.setting.rpartition(": ")[2]
    value = f" = {mask_value(variable, item.value)}" if item.value else ""
    return f"  {where}{item.setting}{value}"


def _server_settings(front: FrontSettings) -> list[str]:
    """The front server's settings that differ from their declared defaults (before `--set`),
    by their TOML key."""
    lines: list[str] = []
    for key, setting in SERVER_BY_TOML.items():
        value = getattr(front, setting.attribute)
        if value != setting.default:
            shown = setting.shown(value) if setting.secret else None
            if shown is None:
                shown = ", ".join(value) if isinstance(value, tuple) else str(value).lower()
            lines.append(f"  {key} = {shown}")
    return lines


def _included(config: ServerConfig) -> list[str]:
    """The site files and site folders the include patterns matched, and their sites."""
    lines = ["Included site files and folders:"]
    for item in config.included:
        sites = ", ".join(repr(name) for name in item.sites) or "no site"
        state = " (refused)" if item.errors else ""
        lines.append(f"  {item.path}: {sites}{state}  (include {item.pattern!r})")
    if not config.included:
        lines.append("  (none yet)")
    return lines


def render(config: ServerConfig) -> str:
    lines = ["Configuration OK."]
    if config.sources:
        lines.append("Files read:")
        lines += [f"  {source}" for source in config.sources]
    if config.include_patterns:
        lines += _included(config)
    server = _server_settings(config.front)
    if server:
        lines.append("Server settings (others at their defaults):")
        lines += server
    lines.append("Sites:")
    for site in config.sites:
        where = f"  ({site.location})" if site.location and site.location.line else ""
        lines.append(f"  site {site.name!r}{where}")
        lines.append(f"    bindings: {'; '.join(_binding(b) for b in site.bindings)}")
        if site.https_redirect:
            lines.append(f"    https_redirect: plain HTTP -> https port {site.https_port()}")
        if site.hsts is not None:
            lines.append(f"    hsts: {site.hsts or '(none)'}")
        if site.switchboard:
            board = ", ".join(f"{n}={'on' if on else 'off'}" for n, on in site.switchboard)
            lines.append(f"    switchboard: {board}")
        for mount in sorted(site.mounts, key=lambda m: m.virtual_path):
            lines.append(f"    {mount.virtual_path} -> {mount.physical_path}")
            lines.append("      routes:")
            lines += _routes(mount)
            if mount.rewrite:
                lines.append("      URL Rewrite rules (before the routes, in order):")
                lines += _rewrite(mount)
            for app in site.apps:
                if app.virtual_path == mount.virtual_path:
                    lines += _app(app)
    used = {app.engine.name for app in config.apps}
    lines.append("Engines used:")
    lines += [_engine_line(e) for e in config.engines if e.name in used] or ["  (none)"]
    lines.append("Other engines available:")
    lines += [_engine_line(e) for e in config.engines if e.name not in used] or ["  (none)"]
    items = [*config.not_in_effect, *(i for app in config.apps for i in app.not_in_effect)]
    if items:
        lines.append("Accepted but not in effect yet:")
        lines += [_not_in_effect(item) for item in items]
    if config.notices:
        lines.append("Notices:")
        lines += [f"  {notice}" for notice in config.notices]
    return "\n".join(lines) + "\n"
