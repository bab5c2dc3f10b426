"""One front process of a host with ``front_processes`` > 1 (``python -m corral.frontproc``,
started by the supervisor, ``corral.ops.fronts``; docs/architecture.md, "The front across
cores").

It reads the same configuration as the supervisor (the ``ServeOptions`` come pickled on its
standard input), builds the same router, TLS, rewrite rules, static files and consoles as a
single-process host, and serves HTTP on the listening sockets it inherited (``--sockets
FD:PORT:TLS,...``). Its applications' lease sources are ``front.remote.RemotePool``: it leases
the worker slots the supervisor grants it over the link (``--link FD``) and connects to the
workers itself. It counts its requests as a single host does and sends the totals once a
second.

It obeys the supervisor alone: SIGINT (a terminal's Ctrl-C reaches the whole process group),
SIGHUP and SIGUSR1 are ignored here, the supervisor forwards what they mean (``Stop``,
``Routes(reload=True)``, ``Reopen``). When the link closes (the supervisor is gone), the front
stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Sequence
from functools import partial

from corral import logs
from corral.app import loop_factory
from corral.assembly import (
    Application,
    ServeOptions,
    build_apps,
    front_settings,
    load_config,
    tenants_for,
)
from corral.config import ConfigErrors
from corral.config.model import ServerConfig
from corral.console.build import ConsoleRoutes
from corral.front import heap
from corral.front.linkerrors import pool_error
from corral.front.remote import RemotePool
from corral.front.routes import AppKey, AppRoute, ConfigRouter
from corral.front.server import FrontServer
from corral.front.stats import RequestStats
from corral.front.tls import TlsCertificates, https_certificates
from corral.ops.duties import configure_logs
from corral.ops.fronts import LinkEnd, figures_of
from corral.ops.tenants import Tenants
from corral.protocol.frontlink import (
    Drain,
    Give,
    Grant,
    Hello,
    Limit,
    LinkError,
    Message,
    Refuse,
    Reopen,
    Revoke,
    Routes,
    Stats,
    Stop,
)
from corral.runtime.reload import app_key
from corral.supervision.pool import Pool
from corral.supervision.service import ServicePool

logger = logging.getLogger("corral")

#: Seconds between two sendings of the front's counters.
STATS_INTERVAL = 1.0


class FrontProcess:
    """The front's life: configuration, routes over remote pools, serving, reloads, stop."""

    def __init__(
        self, options: ServeOptions, link_fd: int, sockets: Sequence[tuple[int, int, bool]]
    ) -> None:
        self.options = options
        self._link_fd = link_fd
        self._sockets = sockets
        self.link = LinkEnd(self)
        self.front: FrontServer | None = None
        self.config: ServerConfig | None = None
        self.tenants: Tenants | None = None
        self.tls: TlsCertificates | None = None
        self._consoles = ConsoleRoutes(options.path)
        self._ports: list[tuple[int, int]] = []
        #: The applications' lease sources and counters, by id on the link.
        self.pools: dict[int, RemotePool] = {}
        self.services: dict[int, ServicePool] = {}
        self.stats: dict[int, RequestStats] = {}
        self._table: Routes | None = None
        self._routed: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[float] | None = None
        self._stats_timer: asyncio.TimerHandle | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ life

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self._routed = loop.create_future()
        self._stopped = loop.create_future()
        options = self.options
        config = self.config = load_config(options.path, app_env=options.app_env)
        settings = front_settings(config, options)
        configure_logs(settings)
        sock = socket.socket(fileno=self._link_fd)
        sock.setblocking(False)
        await loop.connect_accepted_socket(lambda: self.link, sock)
        await self._routed  # (also set by a stop meanwhile)
        if self._stopped.done():
            return 0
        self.tenants = tenants_for(config, options)
        apps = self._applications(config)
        router = self._router(config, apps)
        front = self.front = FrontServer(router, settings)
        self.tls = None if options.listen else https_certificates(config)
        for fd, port, tls in self._sockets:
            listening = socket.socket(fileno=fd)
            host = str(listening.getsockname()[0])
            context = None
            if tls and self.tls is not None:
                context = partial(self.tls.listener_context, port)
            for _, actual in await front.listen(host, port, sock=listening, tls=context):
                router.listening(actual, port)
                self._ports.append((actual, port))
        if self.tls is not None:
            self.tls.watch()
        self.link.send(Hello(os.getpid()))
        self._send_stats()
        heap.settle()  # (what start-up built, out of the collector's way: front/heap.py)
        grace = await self._stopped
        heap.unsettle()
        if self._stats_timer is not None:
            self._stats_timer.cancel()
        await front.stop(grace)
        if self.tls is not None:
            await self.tls.close()
        self._send_stats()
        return 0

    def stop(self, grace: float) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(grace)
        if self._routed is not None and not self._routed.done():
            self._routed.set_result(None)

    def _send_stats(self) -> None:
        front = self.front
        if front is not None:
            figures = front.stats
            self.link.send(
                Stats(
                    tuple((ident, figures_of(stats)) for ident, stats in self.stats.items()),
                    figures.connections_opened,
                    len(front.connections),
                    tuple(figures.protocol_errors.items()),
                    figures_of(figures.unrouted),
                )
            )
        self._stats_timer = asyncio.get_running_loop().call_later(STATS_INTERVAL, self._send_stats)

    # ------------------------------------------------------------------ the link

    def link_broken(self, exc: LinkError) -> None:
        logger.error("front: broken link to the supervisor (%s): stopping", exc)
        self.stop(0.0)

    def link_lost(self) -> None:
        self.stop(1.0)

    def received(self, message: Message) -> None:
        if isinstance(message, Grant):
            pool = self.pools.get(message.app)
            if pool is None or pool.closed:
                self.link.send(Give(message.app, message.slot))
            else:
                pool.granted(message.slot, message.worker_id, message.pid, message.address)
        elif isinstance(message, Revoke):
            pool = self.pools.get(message.app)
            if pool is not None:
                pool.revoked(message.slot)
        elif isinstance(message, Limit):
            pool = self.pools.get(message.app)
            if pool is not None:
                pool.limited(message.keep)
        elif isinstance(message, Refuse):
            pool = self.pools.get(message.app)
            if pool is not None:
                pool.refused(message.error)
        elif isinstance(message, Routes):
            self._table = message
            if self._routed is not None and not self._routed.done():
                self._routed.set_result(None)
            elif message.reload:
                task = asyncio.get_running_loop().create_task(self._reload())
                self._reloads.add(task)
                task.add_done_callback(self._reloads.discard)
        elif isinstance(message, Drain):
            if self.front is not None:
                self.front.drain()
        elif isinstance(message, Stop):
            self.stop(message.grace)
        elif isinstance(message, Reopen):
            try:
                logger.info("%s", logs.reopen_access_log())
            except OSError as exc:
                logger.error("cannot reopen the access log: %s", exc)

    # ------------------------------------------------------------------ applications

    def _applications(self, config: ServerConfig) -> list[Application]:
        """The configuration's applications, their pools replaced by the supervisor's slots."""
        assert self._table is not None and self.tenants is not None
        ids = {(site, path, name): ident for site, path, name, ident in self._table.apps}
        apps = build_apps(config, self.options, self.tenants)
        loop = asyncio.get_running_loop()
        for app in apps:
            ident = ids.get(app_key(app.config))
            if ident is None:
                continue
            route = app.route
            route.stats = self.stats.setdefault(ident, route.stats)
            local = app.pool
            if isinstance(local, ServicePool):
                # A tcp.service: each front balances over its servers itself, with its own
                # active checks (kept across a reload while the app is unchanged).
                kept = self.services.get(ident)
                if kept is None:
                    kept = self.services[ident] = local
                    kept.start()
                route.pool = kept
                continue
            if not isinstance(local, Pool) or app.connect is None:
                continue
            pool = self.pools.get(ident)
            if pool is None:
                pool = self.pools[ident] = RemotePool(
                    route.name,
                    ident,
                    app.connect,
                    self.link.send,
                    queue_size=local.settings.queue_size,
                    queue_timeout=local.settings.queue_timeout,
                    errors=pool_error,
                    loop=loop,
                    request_timeout=local.settings.request_timeout,
                )
            route.pool = pool
        for ident in [i for i in self.pools if i not in ids.values()]:
            self.pools.pop(ident).retire()
        for ident in [i for i in self.services if i not in ids.values()]:
            grace = 0.0 if self.front is None else self.front.settings.shutdown_grace
            task = loop.create_task(self.services.pop(ident).close(grace))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)
        for ident in [i for i in self.stats if i not in ids.values()]:
            del self.stats[ident]
        return apps

    def _router(self, config: ServerConfig, apps: list[Application]) -> ConfigRouter:
        routes: dict[AppKey, AppRoute] = {app_key(a.config): a.route for a in apps}
        settings = front_settings(config, self.options)
        consoles = self._consoles.routes([(a.config, a.route) for a in apps], settings)
        router = ConfigRouter(
            config,
            routes,
            by_port=self.options.listen is None,
            hsts=settings.hsts,
            consoles=consoles,
        )
        for actual, configured in self._ports:
            router.listening(actual, configured)
        return router

    async def _reload(self) -> None:
        """The supervisor reloaded: read the configuration again, lease from its apps."""
        front = self.front
        if front is None or self.config is None:
            return
        heap.unsettle()  # (the configuration replaced may go: front/heap.py)
        try:
            new = await asyncio.to_thread(
                load_config, self.options.path, self.config, self.options.app_env
            )
            self.tenants = tenants_for(new, self.options, self.tenants)
            apps = self._applications(new)
        except ConfigErrors as exc:
            logger.error("front: the reloaded configuration has errors here: %s", exc)
            heap.settle()
            return
        settings = front_settings(new, self.options)
        old = front.settings
        if (settings.access_log, settings.access_log_format, settings.log_level) != (
            old.access_log,
            old.access_log_format,
            old.log_level,
        ):
            configure_logs(settings)
        if settings != front.settings:
            front.apply_settings(settings)
        if self.tls is not None:
            self.tls.update(new)
        front.router = self._router(new, apps)
        self.config = new
        heap.settle()


def _sockets(text: str) -> list[tuple[int, int, bool]]:
    found = []
    for item in filter(None, text.split(",")):
        fd, port, tls = item.split(":")
        found.append((int(fd), int(port), tls == "1"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corral front", description=__doc__)
    parser.add_argument("--link", type=int, required=True)
    parser.add_argument("--sockets", default="")
    args = parser.parse_args(argv)
    options = pickle.loads(sys.stdin.buffer.read())
    if not isinstance(options, ServeOptions):
        print("corral front: no ServeOptions on the standard input", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    logs.setup(level="info", access_log=None)
    front = FrontProcess(options, args.link, _sockets(args.sockets))
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        loop = runner.get_loop()
        loop.add_signal_handler(signal.SIGTERM, front.stop, 30.0)
        with contextlib.suppress(KeyboardInterrupt):
            return runner.run(front.serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
