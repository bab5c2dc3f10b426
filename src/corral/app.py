"""Composition root: builds every component from the options and runs them.

Today: one application at "/" per site folder, run by Corral's own Python worker. The seam for
issue 3's configuration model (web.config / TOML, many sites, routing by Host and virtual path) is
``build_routes``: the one place where applications become (route -> pool) pairs.

Life: start listening (a busy port is a ``StartupError``), log "serving SITE on http://HOST:PORT",
serve until SIGTERM or SIGINT, then stop accepting, let requests in flight finish within the
grace period, close the pools (their workers are stopped) and return 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from corral.backends import fastcgi
from corral.errors import CorralError
from corral.front.routes import PrefixRouter, Route
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.supervision.launch import python_worker_plan
from corral.supervision.pool import Pool, PoolSettings

logger = logging.getLogger("corral")


class StartupError(CorralError):
    """The host cannot start (busy port, missing site...): one clear line for the user."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    site: Path
    host: str = "127.0.0.1"
    port: int = 8080
    min_workers: int | None = None
    max_workers: int | None = None
    front: FrontSettings = field(default_factory=FrontSettings)
    pool: PoolSettings | None = None


@dataclass(slots=True)
class Application:
    name: str
    root: Path
    pool: Pool[fastcgi.FastCGIClientConnection]
    route: Route


def app_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The application's own variables: today only WSGI_APP, when the host's environment sets it."""
    env: dict[str, str] = {}
    if environ.get("WSGI_APP"):
        env["WSGI_APP"] = environ["WSGI_APP"]
    return env


#: Requests that may wait for a worker before the pool answers 503. The pool's own default (100)
#: suits an application with its own limits; for `corral serve`, clients should rather wait (up
#: to acquire_timeout) than be turned away while a few workers are busy: IIS queues 1000.
SERVE_QUEUE_SIZE = 1000


def default_pool_settings(front: FrontSettings) -> PoolSettings:
    return PoolSettings(queue_timeout=front.acquire_timeout, queue_size=SERVE_QUEUE_SIZE)


def build_routes(options: ServeOptions) -> list[Application]:
    """The applications of a site and where each is mounted (issue 3 replaces the body)."""
    site = options.site.resolve()
    name = site.name or "site"
    plan = python_worker_plan(site, app_env=app_env(os.environ))
    settings = options.pool or default_pool_settings(options.front)
    if options.min_workers is not None:
        settings = replace(settings, min_instances=options.min_workers)
    if options.max_workers is not None:
        settings = replace(settings, max_instances=options.max_workers)
    if 0 < settings.max_instances < settings.min_instances:
        settings = replace(settings, max_instances=settings.min_instances)
    pool: Pool[fastcgi.FastCGIClientConnection] = Pool(name, plan, settings, fastcgi.connect)
    route = Route(name=name, pool=pool, script_name=b"", document_root=os.fsencode(site))
    return [Application(name, site, pool, route)]


def _convert(kind: object, text: str) -> object:
    kind_text = str(kind)
    if "bool" in kind_text:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if "float" in kind_text:
        return float(text)
    if "int" in kind_text:
        return int(text)
    raise ValueError(f"cannot set a {kind_text} from the command line")


def apply_overrides(values: dict[str, str]) -> tuple[FrontSettings, PoolSettings]:
    """Front and pool settings with ``NAME=VALUE`` overrides (``corral serve --set``).

    A stopgap until issue 3's settings registry: names are the dataclass fields.
    """
    front = FrontSettings()
    pool = default_pool_settings(front)
    front_fields = {f.name: f.type for f in fields(FrontSettings)}
    pool_fields = {f.name: f.type for f in fields(PoolSettings)}
    front_changes: dict[str, object] = {}
    pool_changes: dict[str, object] = {}
    for name, text in values.items():
        try:
            if name in front_fields:
                front_changes[name] = _convert(front_fields[name], text)
            elif name in pool_fields:
                pool_changes[name] = _convert(pool_fields[name], text)
            else:
                known = ", ".join(sorted({*front_fields, *pool_fields} - {"backoff"}))
                raise ValueError(f"unknown setting {name!r} (known: {known})")
        except ValueError as exc:
            if "unknown setting" in str(exc):
                raise
            raise ValueError(f"{name}: {exc}") from None
    front = replace(front, **front_changes)  # type: ignore[arg-type]
    if "acquire_timeout" in front_changes and "queue_timeout" not in pool_changes:
        pool_changes["queue_timeout"] = front.acquire_timeout
    pool = replace(pool, **pool_changes)  # type: ignore[arg-type]
    return front, pool


class Host:
    """The running host: front server plus every application's pool."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.apps: list[Application] = []
        self.front: FrontServer | None = None
        self.addresses: list[tuple[str, int]] = []

    async def start(self) -> list[tuple[str, int]]:
        options = self.options
        self.apps = build_routes(options)
        router = PrefixRouter([app.route for app in self.apps])
        self.front = FrontServer(router, options.front)
        try:
            self.addresses = await self.front.listen(options.host, options.port)
        except OSError as exc:
            await self._close_pools(0.0)
            where = f"{options.host}:{options.port}"
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"address already in use: {where}") from None
            raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        for app in self.apps:
            start = getattr(app.pool, "start", None)
            if start is not None:
                await start()
        host, port = self.addresses[0]
        shown = f"[{host}]" if ":" in host else host
        logger.info("serving %s on http://%s:%d", options.site, shown, port)
        return self.addresses

    async def stop(self) -> None:
        grace = self.options.front.shutdown_grace
        logger.info("stopping: finishing requests in flight (up to %.0f s)", grace)
        if self.front is not None:
            await self.front.stop(grace)
        await self._close_pools(grace)
        logger.info("stopped")

    async def _close_pools(self, grace: float) -> None:
        await asyncio.gather(*(app.pool.close(grace) for app in self.apps), return_exceptions=True)

    async def serve(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop gracefully. Returns the exit status."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await self.start()
            await stopping.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        await self.stop()
        return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed, else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(options: ServeOptions) -> int:
    """Run the host until it is told to stop; returns the process exit status."""
    host = Host(options)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(host.serve())
