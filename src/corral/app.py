"""Composition root: builds every component from the configuration and the options, and runs them.

    config = load_config(path)                    # ConfigErrors: every error, nothing started
    apps = build_apps(config, options)            # one pool per (site, virtual path, app)
    run(options)                                  # listen on every address; serve; stop

``PATH`` is a site folder (web.config and/or corral.toml; with neither, one Python application at
"/": wsgi.py, WSGI_APP, or the service-information page) or a server TOML file listing sites,
bindings and applications (``corral.config.load``). Command-line options win over the files:
``--listen`` serves every site on that one address instead of its bindings (sites are then told
apart by host name only), ``--min``/``--max`` and ``--set`` pool settings apply to every
application, ``--set`` front settings to the server, over the configuration's ``[server]``
values (``front_settings``).

Life: start listening on every address (a busy port is a ``StartupError``), log "serving PATH on
http://HOST:PORT" per address, serve until SIGTERM or SIGINT, then stop accepting, let requests
in flight finish within the grace period, close the pools (their workers are stopped), return 0.

Each application with workers of its own also gets an ``AppController`` (``corral.runtime``):
its deploy script, file-change restarts and error log. SIGHUP, or a change to a configuration
file, reloads the configuration (``Host.reload``): unchanged applications are left alone,
changed ones are started anew and take over once ready (then the old pool drains and stops),
new ones are added, removed ones drained; a configuration with errors is refused and the
running one kept, except that a site file or folder of ``[server] include`` with errors is
refused alone and keeps its sites' previous state (``config.include``; the watcher also watches
the include folders, and new bindings' addresses are listened on). Changed server settings
(``[server]``: the front's limits and timeouts) are applied at once
(``FrontServer.apply_settings``), except where a ``--set`` holds them.

The control socket (``corral.ops.control``, opened before listening, removed at the end of the
stop) lets ``corral status|restart|reload|stop|scale`` reach the host's ``status``,
``restart_app_outcome``, ``reload_outcome``, ``request_stop`` and ``scale_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from typing import Any

from corral import __version__, hotpath
from corral.assembly import (
    Application,
    ServeOptions,
    StartupError,
    apply_overrides,
    build_apps,
    front_settings,
    listen_plan,
    load_config,
    tenants_for,
)
from corral.config import ConfigErrors
from corral.config.model import ServerConfig
from corral.config.settings import SERVER_BY_TOML
from corral.config.tlsfiles import PairError
from corral.console.build import ConsoleRoutes
from corral.errors import CorralError
from corral.front import heap
from corral.front.routes import AppKey, AppRoute, ConfigRouter
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.front.stats import FrontStats, RequestStats
from corral.front.tls import TlsCertificates, https_certificates, tls_ports
from corral.ops import hostapps
from corral.ops.admin import AdminError, AdminListener
from corral.ops.control import ControlError, ControlServer
from corral.ops.duties import DutyError, HostDuties
from corral.ops.fronts import FrontSet, front_count, hosted
from corral.ops.history import History
from corral.ops.status import (
    HostStatus,
)
from corral.ops.tenants import Tenants
from corral.runtime.controller import AppController, runtime_spec
from corral.runtime.errorlog import ErrorLogs
from corral.runtime.policy import Phase
from corral.runtime.reload import AppKey as ReloadKey
from corral.runtime.reload import ConfigFiles, app_key, config_files, plan_reload
from corral.runtime.watch import FileWatcher
from corral.runtime.watchrules import Change
from corral.supervision.lease import PoolError
from corral.supervision.pool import Pool
from corral.supervision.service import ServicePool

logger = logging.getLogger("corral")

#: What the command line and the tests use of the composition root (the assembly's part is
#: ``corral.assembly``'s, named here too).
__all__ = [
    "Application",
    "Host",
    "ServeOptions",
    "StartupError",
    "apply_overrides",
    "build_apps",
    "front_settings",
    "listen_plan",
    "load_config",
    "loop_factory",
    "run",
    "tenants_for",
]


class Host:
    """The running host: front server plus every application's pool."""

    def __init__(
        self,
        options: ServeOptions,
        config: ServerConfig | None = None,
        apps: list[Application] | None = None,
    ) -> None:
        self.options = options
        self.config = config
        self.apps: list[Application] = apps or []
        self.front: FrontServer | None = None
        self.addresses: list[tuple[str, int]] = []
        self.error_logs = ErrorLogs()
        self._consoles = ConsoleRoutes(options.path)  # CONSOLE_URL (corral.console)
        #: (actual port, configured port) of every listener, replayed on a reloaded router.
        self._ports: list[tuple[int, int]] = []
        self._config_watcher: FileWatcher | None = None
        self._config_files = ConfigFiles(frozenset(), ())
        self._reload_lock: asyncio.Lock | None = None
        self._background: set[asyncio.Task[Any]] = set()
        #: "starting", "serving", "reloading", "stopping" (``status``).
        self.state = "starting"
        self.started_at = time.time()
        #: Every application's recent request figures, sampled once a second.
        self.history = History()
        self._sampler: asyncio.TimerHandle | None = None
        #: Set to stop serving (SIGTERM, SIGINT, ``corral stop``); ``_hurry``: without the
        #: drain delay (SIGINT, or asked twice).
        self._stopping: asyncio.Event | None = None
        self._hurry = asyncio.Event()
        #: Applications whose bounds ``corral scale`` changed (restored by a reload).
        self._scaled: set[ReloadKey] = set()
        #: The control socket (``corral status``...), open from start to the end of stop.
        self.control: ControlServer | None = None
        #: Why the last reload was refused (the configuration's errors), for ``corral reload``.
        self._reload_problem = ""
        #: Logs, pid file, systemd's notifications and passed sockets (``corral.ops.duties``).
        self.duties = HostDuties()
        #: The admin listener (``[server] admin`` / ``--admin``), when configured.
        self.admin: AdminListener | None = None
        #: The https bindings' certificates (None: no https binding), and the addresses
        #: listened on with TLS.
        self.tls: TlsCertificates | None = None
        self._https: set[tuple[str, int]] = set()
        #: Users and limits (docs/tenants.md); made at start.
        self.tenants: Tenants | None = None
        #: front_processes > 1 (issue 16): this process supervises, the fronts serve HTTP.
        self.fronts: FrontSet | None = None

    async def start(self) -> list[tuple[str, int]]:
        options = self.options
        config = self.config
        if config is None:
            config = load_config(options.path, app_env=options.app_env)
        self.config = config
        # --- tenants (issue 13): say who runs what, and how limits are enforced ---------
        self.tenants = tenants = tenants_for(config, options)
        for warning in tenants.problems()[1]:
            logger.warning("%s", warning)
        for line in tenants.report():
            logger.info("%s", line)
        # --- end of tenants ----------------------------------------------------------------
        settings = front_settings(config, options)
        # --- the front across cores (issue 16): N fronts, this process their supervisor ---
        count = front_count(settings.front_processes, os.cpu_count())
        if count > 1:
            self.fronts = FrontSet(count, options)
            # (Apps built by the command line to check them lease connections: slots here.)
            self.apps = build_apps(config, options, tenants, slots=True)
        # --- end of the front across cores ---
        if not self.apps:
            self.apps = build_apps(config, options, tenants)
        try:
            self.duties.begin(settings)
        except DutyError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.control = await ControlServer.open(
                self, options.control, options.path, self.started_at
            )
        except ControlError as exc:
            await self._close_pools(0.0)
            raise StartupError(str(exc)) from None
        router = self._router(config, self.apps)
        self.front = FrontServer(router, settings)
        listener: FrontServer | FrontSet = self.front
        if self.fronts is not None:
            self.fronts.front_stats = self.front.stats  # (the fronts' sum)
            listener = self.fronts
        wanted = [options.listen] if options.listen else listen_plan(config.listen_addresses())
        # TLS (front/tls.py): the https bindings' certificates, read now (--listen: plain only).
        if options.listen and tls_ports(config):
            logger.warning(
                "--listen serves plain HTTP only: the https bindings (ports %s) are not served",
                ", ".join(map(str, sorted(tls_ports(config)))),
            )
        try:
            self.tls = None if options.listen else https_certificates(config)
        except PairError as exc:
            await self._close_pools(0.0)
            await self.control.close()
            raise StartupError(str(exc)) from None
        https = self._https
        passed = self.duties.passed_sockets(wanted)
        for index, (host, port) in enumerate(wanted):
            sock = passed.pop(index, None)
            try:
                if self.tls is not None and port in self.tls.ports:
                    tls = partial(self.tls.listener_context, port)
                    bound = await listener.listen(host, port, sock=sock, tls=tls)
                    https.update(bound)
                else:
                    bound = await listener.listen(host, port, sock=sock)
            except OSError as exc:
                await self.front.stop(0.0)
                await self._close_pools(0.0)
                await self.control.close()
                where = f"{host}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(f"address already in use: {where}") from None
                raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            for _, actual in bound:
                router.listening(actual, port)
                self._ports.append((actual, port))
            self.addresses += bound
        await self._open_admin(front_settings(config, options))
        # --- tenants (issue 13): the front drops to its user once its ports are bound ------
        try:
            tenants.before_serving()
        except CorralError as exc:
            await self.front.stop(0.0)
            await self._close_pools(0.0)
            raise StartupError(str(exc)) from None
        # --- end of tenants ----------------------------------------------------------------
        for app in self.apps:
            await self._start_app(app)
        if self.fronts is not None:
            await self.fronts.start(hosted(self.apps))
        self._watch_config(config)
        if self.tls is not None:
            self.tls.watch()
        self._sample()
        self.state = "serving"
        build = hotpath.describe()
        if build == hotpath.PURE:  # (an install without a C compiler: say what it costs)
            build += ' (compiled, it costs ~30% less CPU: docs/production.md, "Which build")'
        logger.info("corral %s, the front's hot path %s", __version__, build)
        for host, port in self.addresses:
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if (host, port) in https else "http"
            logger.info("serving %s on %s://%s:%d", options.path, scheme, shown, port)
        try:
            self.duties.serving(self.addresses, len(self.apps))
        except DutyError as exc:
            await self.front.stop(0.0)
            await self._close_pools(0.0)
            raise StartupError(str(exc)) from None
        heap.settle()  # (what start-up built, out of the collector's way: front/heap.py)
        return self.addresses

    async def _drain(self) -> None:
        """Before a stop with an admin listener (whose /readyz now answers 503): keep serving
        ``drain_delay`` seconds, every response ending its connection, so that balancers move
        the traffic away first (``docs/production.md``)."""
        front = self.front
        if front is None or self.admin is None or self._hurry.is_set():
            return
        delay = front.settings.drain_delay
        if delay <= 0:
            return
        front.drain()
        if self.fronts is not None:
            self.fronts.drain()
        logger.info("draining: not ready; serving for %.0f s more, then stopping", delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), delay)

    @property
    def shutdown_grace(self) -> float:
        if self.front is not None:
            return self.front.settings.shutdown_grace
        if self.config is not None:
            return front_settings(self.config, self.options).shutdown_grace
        return FrontSettings().shutdown_grace

    async def stop(self) -> None:
        grace = self.shutdown_grace
        self.state = "stopping"
        heap.unsettle()
        self.duties.stopping(grace)
        if self._sampler is not None:
            self._sampler.cancel()
        await self._drain()
        logger.info("stopping: finishing requests in flight (up to %.0f s)", grace)
        if self.control is not None:
            await self.control.cancel_commands()
        if self._config_watcher is not None:
            await self._config_watcher.close()
        if self.tls is not None:
            await self.tls.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.fronts is not None:
            await self.fronts.stop(grace)
        if self.front is not None:
            await self.front.stop(grace)
        await self._close_pools(grace)
        if self.control is not None:
            await self.control.close()
        if self.admin is not None:  # last: /readyz answers 503 all through the drain
            await self.admin.close()
        if self.tenants is not None:
            self.tenants.cleanup()
        logger.info("stopped")
        self.duties.stopped()
        await asyncio.get_running_loop().run_in_executor(None, self.error_logs.close)

    async def _close_pools(self, grace: float) -> None:
        await asyncio.gather(
            *(app.controller.close() for app in self.apps if app.controller is not None),
            return_exceptions=True,
        )
        await asyncio.gather(*(app.pool.close(grace) for app in self.apps), return_exceptions=True)

    async def serve(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop gracefully; SIGHUP reloads the
        configuration, SIGUSR1 reopens the access log's file. Returns the exit status."""
        loop = asyncio.get_running_loop()
        stopping = self._stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, False)
        loop.add_signal_handler(signal.SIGHUP, self.schedule_reload, "SIGHUP")
        loop.add_signal_handler(signal.SIGUSR1, _reopen_logs, self)
        try:
            try:
                await self.start()
                await stopping.wait()
            finally:
                for signum in (signal.SIGHUP, signal.SIGUSR1):
                    loop.remove_signal_handler(signum)
            await self.stop()  # (a second SIGTERM or SIGINT meanwhile cuts the drain short)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        return 0

    # ---------------------------------------------------------------- status and control

    def request_stop(self, drain: bool = True) -> None:
        """Stop gracefully, as SIGTERM does (``drain``: after ``drain_delay``, when an admin
        listener shows readiness; SIGINT passes False). Asked again while draining: stop now."""
        if self._stopping is None:
            return
        if self._stopping.is_set() or not drain:
            self._hurry.set()
        self._stopping.set()

    def _sample(self) -> None:
        """Every application's request counters into the history, once a second."""
        loop = asyncio.get_running_loop()
        self.history.sample(loop.time(), hostapps.request_stats(self.apps))
        self._sampler = loop.call_later(1.0, self._sample)

    def status(self) -> HostStatus:
        """Every application's figures now (``corral.ops.status``)."""
        front = self.front
        facts = hostapps.HostFacts(
            config_path=str(self.options.path),
            started_at=self.started_at,
            state=self.state,
            listening=tuple((h, p, (h, p) in self._https) for h, p in self.addresses),
            fronts=() if self.fronts is None else tuple(self.fronts.pids()),
        )
        return hostapps.host_status(
            facts,
            self.apps,
            self.history,
            None if front is None else front.stats,
            (0 if front is None else len(front.connections))
            + (0 if self.fronts is None else self.fronts.connections),
            asyncio.get_running_loop().time(),
        )

    def request_stats(self) -> dict[str, RequestStats]:
        """Every application's live request counters, by status id (``/metrics``)."""
        return hostapps.request_stats(self.apps)

    def front_stats(self) -> FrontStats | None:
        return None if self.front is None else self.front.stats

    async def _open_admin(self, settings: FrontSettings) -> None:
        """Open the admin listener when configured (``corral.ops.admin``)."""
        if settings.admin is None:
            return
        try:
            self.admin = await AdminListener.open(
                self, settings.admin, settings.metrics_token, self.options.path
            )
        except AdminError as exc:
            if self.front is not None:
                await self.front.stop(0.0)
            await self._close_pools(0.0)
            if self.control is not None:
                await self.control.close()
            raise StartupError(str(exc)) from None

    def find_app(self, ident: str) -> Application:
        """The application ``ident`` names (``NAME`` or ``SITE/NAME``); ``LookupError``."""
        return hostapps.find(self.apps, ident)

    async def restart_app(self, ident: str) -> str:
        """A rolling restart of one application, as touching its restart.txt does.
        ``LookupError``: no such application, or one whose server Corral does not start."""
        return (await self.restart_app_outcome(ident))[1]

    async def restart_app_outcome(self, ident: str) -> tuple[bool, str]:
        """``restart_app``, and whether the new workers took over (False: they could not
        start, and the old ones keep serving)."""
        return await hostapps.restart(self.find_app(ident), ident)

    def scale_app(self, ident: str, min_workers: int | None, max_workers: int | None) -> str:
        """New worker bounds for one application until the next reload. ``LookupError``,
        ``ValueError`` (bounds the policy refuses)."""
        app = self.find_app(ident)
        said = hostapps.scale(app, ident, min_workers, max_workers)
        self._scaled.add(app_key(app.config))
        return said

    # ---------------------------------------------------------------- applications

    def _router(self, config: ServerConfig, apps: list[Application]) -> ConfigRouter:
        routes: dict[AppKey, AppRoute] = {app_key(a.config): a.route for a in apps}
        settings = front_settings(config, self.options)
        consoles = self._consoles.routes([(a.config, a.route) for a in apps], settings)
        by_port, hsts = self.options.listen is None, settings.hsts
        router = ConfigRouter(config, routes, by_port=by_port, hsts=hsts, consoles=consoles)
        for actual, configured in self._ports:
            router.listening(actual, configured)
        return router

    async def _start_app(self, app: Application) -> None:
        pool = app.pool
        if isinstance(pool, ServicePool):
            pool.start()  # (its servers' active health checks, if any)
        if isinstance(pool, Pool) and app.controller is None:
            app.controller = AppController(
                runtime_spec(app.config, pool.plan, confiner=pool.confiner),
                pool,
                app.route,
                error_logs=self.error_logs,
            )
            await app.controller.start()

    async def _retire_app(self, app: Application, why: str) -> None:
        """Drain an application that the routing no longer reaches, then stop it."""
        grace = self.shutdown_grace
        loop = asyncio.get_running_loop()
        # Requests routed to it just before the new router took over still reach its pool.
        await asyncio.sleep(0.2)
        pool = app.pool
        deadline = loop.time() + grace
        # Requests queued in it are served by its workers before it closes (a short poll, once
        # per reload: the pool has no "queue empty" event).
        while isinstance(pool, Pool) and pool.snapshot().waiting and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        logger.info("app %s: %s; stopping the old one", app.route.name, why)
        if app.controller is not None:
            await app.controller.close()
        await pool.close(grace)

    # ---------------------------------------------------------------- reloading

    def schedule_reload(self, reason: str) -> None:
        """Reload the configuration soon (from a signal handler or a file watcher)."""
        task = asyncio.get_running_loop().create_task(self.reload(reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload_outcome(self, reason: str) -> tuple[bool, str]:
        """``reload``, and what happened: "reloaded", or why not (the configuration's
        errors, one per line)."""
        if await self.reload(reason):
            return True, "configuration reloaded"
        return False, self._reload_problem or "the configuration was not reloaded"

    async def reload(self, reason: str) -> bool:
        """Read the configuration again and apply what changed without dropping a request.

        Returns False when the new configuration has errors (every one is logged; the running
        configuration stays in force)."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            self.state = "reloading"
            self.duties.reloading(reason)
            ok = False
            heap.unsettle()  # (the configuration replaced may go: front/heap.py)
            try:
                ok = await self._reload(reason)
                return ok
            finally:
                heap.settle()
                if self.state == "reloading":
                    self.state = "serving"
                    self.duties.reloaded(ok, self.addresses, len(self.apps))

    async def _reload(self, reason: str) -> bool:
        if self.config is None or self.front is None:
            logger.warning("%s: not serving yet; nothing to reload", reason)
            self._reload_problem = "the server is not serving yet; nothing to reload"
            return False
        logger.info("reloading the configuration (%s)", reason)
        try:
            new = await asyncio.to_thread(
                load_config, self.options.path, self.config, self.options.app_env
            )
            tenants = tenants_for(new, self.options, self.tenants)
            slots = self.fronts is not None
            built = {
                app_key(a.config): a for a in build_apps(new, self.options, tenants, slots=slots)
            }
        except ConfigErrors as exc:
            logger.error("the configuration has errors; the running one stays in force:\n%s", exc)
            self._reload_problem = (
                f"the configuration has errors; the running one stays in force:\n{exc}"
            )
            return False
        running = {app_key(a.config): a for a in self.apps}
        plan = plan_reload(self.config, new, (a.config for a in self.apps))
        if plan.listen_changed:
            await self._listen_added(new)
        keep: dict[ReloadKey, Application] = {}
        retire: list[tuple[Application, str]] = []
        for key in plan.unchanged:
            app = running[key]
            app.config = built[key].config
            keep[key] = app
            if key in self._scaled and isinstance(app.pool, Pool):  # (corral scale: undone)
                limits = app.pool.settings.limits()
                app.pool.set_bounds(limits.min_instances, limits.max_instances)
        self._scaled.clear()
        for key in plan.added:
            await self._start_app(built[key])
            keep[key] = built[key]
            logger.info("app %s: added", built[key].route.name)
        for key in plan.changed:
            fresh, old = built[key], running[key]
            if await self._take_over(fresh, old):
                keep[key] = fresh
                retire.append((old, "its configuration changed"))
            else:
                keep[key] = old
        for key in plan.removed:
            retire.append((running[key], "removed from the configuration"))
        apps = [keep[app_key(a)] for a in new.apps]
        self._apply_front_settings(self.config, new)
        if self.admin is not None:
            admin = front_settings(new, self.options)
            self.admin.reconfigure(admin.admin, admin.metrics_token)
        if self.tls is not None:
            self.tls.update(new)  # (new handshakes use the new certificates)
        self.front.router = self._router(new, apps)
        self.config = new
        self.apps = apps
        if self.fronts is not None:
            self.fronts.set_routes(hosted(apps), reload=True)
        for app, why in retire:
            task = asyncio.get_running_loop().create_task(self._retire_app(app, why))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._watch_config(new)
        logger.info("configuration reloaded: %s", plan.describe())
        return True

    async def _listen_added(self, new: ServerConfig) -> None:
        """Listen on the addresses a reload's new bindings need (a site added as a file on a
        port of its own). Addresses no site binds any more keep listening (answering 404)."""
        assert self.front is not None
        if self.options.listen is not None:
            return
        if self.fronts is not None:  # (the fronts' sockets are passed when they start)
            logger.warning("new bindings with front_processes > 1: restart corral to listen")
            return
        ports = dict(self._ports)
        have = {(host, ports.get(actual, actual)) for host, actual in self.addresses}
        https = tls_ports(new)
        for host, port in listen_plan(new.listen_addresses()):
            wildcard = "::" if ":" in host else "0.0.0.0"
            if (host, port) in have or (wildcard, port) in have:
                continue
            if port in https:  # (its certificates are read at start: front/tls.py)
                logger.warning(
                    "an https binding on a new port (%s:%d): restart corral to listen there",
                    host,
                    port,
                )
                continue
            try:
                bound = await self.front.listen(host, port)
            except OSError as exc:
                logger.error(
                    "cannot listen on %s:%d for the new configuration (%s): restart corral to "
                    "listen there",
                    host,
                    port,
                    exc.strerror or exc,
                )
                continue
            for address, actual in bound:
                self._ports.append((actual, port))
                shown = f"[{address}]" if ":" in address else address
                logger.info("serving %s on http://%s:%d", self.options.path, shown, actual)
            self.addresses += bound

    def _apply_front_settings(self, old: ServerConfig, new: ServerConfig) -> None:
        """A reload's server settings: in effect at once (see ``FrontServer.apply_settings``).
        Each change is logged, and so is a change that a ``--set`` overrides."""
        assert self.front is not None
        held = [
            f"{name} (--set {name}={SERVER_BY_TOML[name].shown(value)})"
            for name, value in sorted(self.options.front_overrides.items())
            if getattr(old.front, name) != getattr(new.front, name)
        ]
        if held:
            logger.warning(
                "server settings changed in the configuration but the command line holds them: %s",
                ", ".join(held),
            )
        settings = front_settings(new, self.options)
        current = self.front.settings
        shown = {name: setting.shown for name, setting in SERVER_BY_TOML.items() if setting.secret}
        changed = [
            f"{item.name} {shown.get(item.name, repr)(getattr(current, item.name))}"
            f" -> {shown.get(item.name, repr)(getattr(settings, item.name))}"
            for item in fields(FrontSettings)
            if getattr(current, item.name) != getattr(settings, item.name)
        ]
        if changed:
            self.duties.settings_changed(current, settings)
            self.front.apply_settings(settings)
            logger.info(
                "server settings changed, in effect now (connections already open keep their "
                "size limits): %s",
                "; ".join(changed),
            )

    async def _take_over(self, fresh: Application, old: Application) -> bool:
        """Start a changed application; True once it may take the old one's place. Its first
        worker must be ready first (so that no request waits on a start), and with a deploy
        script, that script must have run and succeeded first (so that no request gets the
        "deployment in progress" page while the old one could answer it). If it cannot start,
        or its script fails, the old one keeps serving. An old application that is not serving
        (its own script is due, runs or failed) has nothing to keep: the new one takes over at
        once, and its script runs on its first request, as at start."""
        await self._start_app(fresh)
        controller = fresh.controller
        if controller is None:
            return True
        try:
            return await self._ready(fresh, controller, old)
        except BaseException:  # the host stops meanwhile: the new one must not outlive it
            await controller.close()
            await fresh.pool.close(0.0)
            raise

    async def _ready(self, fresh: Application, controller: AppController, old: Application) -> bool:
        name = fresh.route.name
        pool = fresh.pool
        if controller.spec.deploy is not None:
            if old.controller is not None and old.controller.phase is not Phase.SERVING:
                return True
            logger.info(
                "app %s: running the new configuration's deploy script; the old one keeps serving",
                name,
                extra={"app": name},
            )
            result = await controller.deploy_now()
            if not result.ok:
                logger.error(
                    "app %s: the new configuration's deploy failed (%s); the old one keeps serving",
                    name,
                    result.describe(),
                    extra={"app": name},
                )
                await controller.close()
                await pool.close(0.0)
                return False
        try:
            lease = await pool.acquire()
        except PoolError as exc:
            logger.error(
                "app %s: the new configuration cannot start (%s); the old one keeps serving",
                name,
                exc,
                extra={"app": name},
            )
            await controller.close()
            await pool.close(0.0)
            return False
        pool.release(lease, True)
        logger.info("app %s: the new configuration is ready; switching to it", name)
        return True

    def _watch_config(self, config: ServerConfig) -> None:
        """Reload by itself when a configuration file changes."""
        files = config_files(config)
        old = self._config_watcher
        if old is not None:
            if old.roots == files.folders:
                self._config_files = files
                return
            task = asyncio.get_running_loop().create_task(old.close())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._config_files = files
        if not files.folders:
            self._config_watcher = None
            return
        self._config_watcher = FileWatcher(
            files.folders,
            lambda path: self._config_files.classify(path),
            self._on_config_change,
            recursive=False,
            name="configuration",
        )
        self._config_watcher.start()

    def _on_config_change(self, changes: list[tuple[Change, str]]) -> None:
        names = ", ".join(sorted({os.path.basename(path) for _, path in changes}))
        self.schedule_reload(f"{names} changed")


def _reopen_logs(host: Host) -> None:
    """SIGUSR1: this process's logs, and every front's (front_processes > 1)."""
    host.duties.reopen_logs()
    if host.fronts is not None:
        host.fronts.reopen_logs()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed, else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(
    options: ServeOptions,
    config: ServerConfig | None = None,
    apps: list[Application] | None = None,
) -> int:
    """Run the host until it is told to stop; returns the process exit status."""
    host = Host(options, config, apps)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(host.serve())
