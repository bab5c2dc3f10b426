"""Assembling a host from its configuration: the options of ``corral serve``, the loaded
configuration, one ``Application`` (pool, front route) per application, the front's settings
with the command line's on top, and the addresses to listen on.

Pure construction, no life: ``corral.app.Host`` runs what these build, and ``corral check``
builds them to report what ``corral serve`` would refuse.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.config import ConfigErrors, load, load_site
from corral.config.builtin_engines import PYTHON
from corral.config.model import AppConfig, ServerConfig
from corral.config.settings import POOL_BY_FIELD, SERVER_BY_TOML
from corral.engines import (
    Unsupported,
    app_label,
    backend_for,
    pool_settings_for,
)
from corral.errors import CorralError
from corral.front.routes import AppRoute
from corral.front.settings import FrontSettings
from corral.ops.rundir import name_for
from corral.ops.tenants import Tenants
from corral.runtime.controller import AppController
from corral.supervision.broker import slot_connect
from corral.supervision.lease import Connect
from corral.supervision.pool import Pool
from corral.supervision.service import ServicePool
from corral.supervision.settings import PoolSettings

logger = logging.getLogger("corral")


class StartupError(CorralError):
    """The host cannot start (busy port, missing site...): one clear line for the user."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    #: A site folder or a server TOML file.
    path: Path
    #: ``--listen``: serve every site here instead of the configured bindings.
    listen: tuple[str, int] | None = None
    #: Front settings from the command line (``--set``), by ``FrontSettings`` field: they win
    #: over the configuration's (``front_settings``).
    front_overrides: Mapping[str, object] = field(default_factory=dict)
    #: Pool settings from the command line (``--min``, ``--max``, ``--set``): they win.
    pool_overrides: Mapping[str, object] = field(default_factory=dict)
    #: ``--control``: the control socket's path (None: in the runtime folder, ``ops.control``).
    control: Path | None = None
    #: The one-line serve (``corral serve module:app``, ``app.py``: ``config.quickserve``):
    #: the variables of the folder's one application (its WSGI_APP).
    app_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Application:
    config: AppConfig
    pool: Pool | ServicePool
    route: AppRoute
    #: Deploy script, file watching, error log (applications with workers of their own).
    controller: AppController | None = None
    #: How the front connects to its workers (a front process of ``front_processes`` > 1
    #: opens its own connections: ``front.remote``).
    connect: Connect | None = None


def load_config(
    path: Path,
    previous: ServerConfig | None = None,
    app_env: Mapping[str, str] | None = None,
) -> ServerConfig:
    """The configuration at ``path``; a site folder without any configuration file is one
    application at "/" run by Corral's Python worker (with the variables ``app_env``: the
    one-line serve's). Raises ``ConfigErrors``. ``previous``: the running configuration, whose
    sites a refused site file keeps (a reload)."""
    if path.is_dir():
        return load_site(str(path), default_engine=PYTHON, default_env=app_env)
    config = load(str(path), previous=previous)
    if config.include_patterns and not config.sites:
        logger.info("no site yet: each site file's bindings are listened on as it is added")
    for item in config.included:
        if item.errors:
            names = ", ".join(repr(name) for name in item.sites)
            logger.error(
                "site %s %s refused; %s:\n%s",
                "folder" if item.pattern.endswith(("/", os.sep)) else "file",
                item.path,
                f"its sites keep their previous state ({names})"
                if item.kept
                else "no site from it",
                "\n".join(
                    f"  {where}: {setting}: {message}" for where, setting, message in item.errors
                ),
            )
    return config


def front_settings(config: ServerConfig, options: ServeOptions) -> FrontSettings:
    """The front server's settings: the configuration's, with the command line's on top."""
    return replace(config.front, **options.front_overrides)  # type: ignore[arg-type]


def tenants_for(
    config: ServerConfig, options: ServeOptions, running: Tenants | None = None
) -> Tenants:
    """Every application's user and limits (``corral.ops.tenants``; docs/tenants.md). A
    reload keeps the cgroups found at start (``running``): after its privilege drop the front
    could not tell them from none."""
    hierarchy = running.hierarchy if running is not None else None
    return Tenants(
        config, front_settings(config, options), name_for(options.path), hierarchy=hierarchy
    )


def build_apps(
    config: ServerConfig,
    options: ServeOptions,
    tenants: Tenants | None = None,
    *,
    slots: bool = False,
) -> list[Application]:
    """One pool and one front route per application; ``ConfigErrors`` (every one) when some
    application asks for what this runtime cannot run, or would run as a user it may not
    (``Tenants.problems``). ``slots``: the pools of a supervisor of front processes, which
    lease worker slots, not connections (``supervision.broker``)."""
    overrides = dict(options.pool_overrides)
    overrides.setdefault("queue_timeout", front_settings(config, options).acquire_timeout)
    apps: list[Application] = []
    problems: list[ConfigErrors] = []
    tenants = tenants or tenants_for(config, options)
    refused = tenants.problems()[0]
    if refused:
        problems.append(ConfigErrors(refused))
    for app in config.apps:
        settings = pool_settings_for(app, overrides)
        try:
            backend = backend_for(app, settings)
        except ConfigErrors as exc:
            problems.append(exc)
            continue
        label = app_label(app)
        pool: Pool | ServicePool
        if backend.plan is None:
            pool = ServicePool(
                label,
                backend.addresses,
                settings,
                backend.connect,
                balance=backend.balance,
                check=backend.check,
            )
        else:
            assert backend.probe is not None
            confiner = tenants.confiner_for(app)
            pool = Pool(
                label,
                backend.plan,
                settings,
                slot_connect if slots else backend.connect,
                backend.probe,
                confiner=confiner,
                spawner=backend.spawner,
            )
        root = os.fsencode(app.physical_path)
        route = AppRoute(
            name=label,
            pool=pool,
            script_name=app.script_name.encode(),
            document_root=root,
            http=backend.http,
            upgrade=backend.upgrade,
            development=app.development_mode,
            buffering=app.request_buffering,
            backend_host=(app.zoo_substitute_host or "").encode("ascii") or None,
        )
        apps.append(Application(app, pool, route, connect=backend.connect))
    if problems:
        raise Unsupported([error for exc in problems for error in exc.errors])
    return apps


def apply_overrides(values: dict[str, str]) -> tuple[dict[str, object], dict[str, object]]:
    """Front-setting and pool-setting overrides from ``NAME=VALUE`` (``corral serve --set``).

    Names are the fields of ``FrontSettings`` (checked as the configuration's ``[server]``
    values are) and of ``PoolSettings`` (converted as their declaration's ``PoolUse`` says),
    both declared in ``corral.config.settings``. The pool overrides apply to every application,
    over the engine's values. ``ValueError`` names the setting.
    """
    front_changes: dict[str, object] = {}
    pool_changes: dict[str, object] = {}
    for name, text in values.items():
        front = SERVER_BY_TOML.get(name)
        pool = POOL_BY_FIELD.get(name)
        if front is None and pool is None:
            known = ", ".join(sorted({*SERVER_BY_TOML, *POOL_BY_FIELD}))
            raise ValueError(f"unknown setting {name!r} (known: {known})")
        try:
            if front is not None:
                front_changes[name] = front.convert(text)
            elif pool is not None and pool.pool is not None:
                pool_changes[name] = pool.pool.parse(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    # Invalid values (negative sizes...) are refused now, not when the first app starts.
    replace(PoolSettings(min_instances=0), **pool_changes)  # type: ignore[arg-type]
    return front_changes, pool_changes


def listen_plan(addresses: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The sockets to open for the bindings' addresses: once each, and an address that a
    wildcard on the same port already covers (0.0.0.0 for IPv4, :: for IPv6) is left to the
    wildcard's socket (binding both would fail: the port is taken). Sites are routed by Host and
    port, so the wildcard's socket serves them alike."""
    wanted = list(dict.fromkeys(addresses))
    wildcards = {(address, port) for address, port in wanted if address in ("0.0.0.0", "::")}
    plan = []
    for address, port in wanted:
        family_wildcard = "::" if ":" in address else "0.0.0.0"
        if address != family_wildcard and (family_wildcard, port) in wildcards:
            continue
        plan.append((address, port))
    return plan
