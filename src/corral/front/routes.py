"""Where a request goes: (Host, path, local port) -> the application or static folder serving it.

This is the one place the front asks. ``ConfigRouter`` adapts the pure ``corral.routing.Router``
(sites by Host and binding port, mounts by longest virtual path, handlers by pattern) to the
front's ``AppRoute`` objects, built once per application (with its pool and fixed CGI
variables) and once per mount for static files. (``corral.routing``'s ``Route`` is the pure
answer of the configuration model; an ``AppRoute`` is what the front serves it with.)

A mount with URL Rewrite rules answers ``match`` with its *rewrite route*: an ``AppRoute``
whose ``rewrite`` (``MountRules``) the exchange hands to ``front/rewriting.py``, which applies
the rules and routes the result with ``routed`` (the rules are not applied twice). Mounts
without rules cost nothing more.

A PHP application mapped with ``*`` (a front controller) runs the script a URL names when it
exists (``/wp-login.php``, ``/a.php/extra``, a folder's ``index.php``), serves other existing
files as static files, and sends everything else to the mount's first PHP default document
(``index.php``), with the URL's path as its PATH_INFO.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from corral.backends import Upstream, encode_params
from corral.config.builtin_engines import source_suffixes
from corral.config.model import Mount, ServerConfig, StaticPolicy
from corral.config.rewrite import RewriteRule, RewriteScope
from corral.front.cgienv import DEVELOPMENT_PARAM, Pairs, route_params, script_params
from corral.front.stats import RequestStats
from corral.protocol.http1.events import Request
from corral.protocol.memo import remember
from corral.routing import Route, is_file_pattern
from corral.routing import Router as ModelRouter
from corral.supervision.lease import Deliver, Lease, LeaseSource, PoolUnavailable, Waiter


class _NoPool:
    """The lease source of a static route: never asked (static routes are answered from
    disk)."""

    name = "static"

    def lease_or_wait(
        self, deliver: Deliver, queueable: bool = False, first: bool = False
    ) -> Lease | Waiter | None:
        raise PoolUnavailable("static", "static files have no application")

    def cancel_wait(self, waiter: Waiter) -> None:
        return None

    def try_acquire(self) -> Lease | None:
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        raise PoolUnavailable("static", "static files have no application")

    def release(self, lease: Lease, reusable: bool) -> None:
        return None


NO_POOL = _NoPool()


class InProcess(Protocol):
    """What answers a route in the server's own process, without a pool (an application's web
    console, ``corral.console``)."""

    def respond(self, request: Request, path_info: bytes, client: str, origin: bytes) -> Upstream:
        """The responder of one request (``path_info``: below the route's ``script_name``;
        ``client``: the client's address; ``origin``: the request's own origin as its client
        sees it, ``forward.origin``)."""


@dataclass(eq=False, slots=True)
class AppRoute:
    """One application (or, with ``static``, one static folder) as the front sees it."""

    name: str
    pool: LeaseSource
    #: The application's virtual path, without a trailing slash ("" for the root application).
    script_name: bytes = b""
    document_root: bytes = b""
    #: CGI variables fixed for this application (built once).
    params: Pairs = field(default_factory=list)
    #: The same, encoded once (``backends.encode_params``) for ``Upstream.begin``.
    encoded_params: bytes = b""
    #: The backend speaks HTTP/1.1 (``backends.http``), not FastCGI: the front forwards the
    #: request head itself (with X-Forwarded-*) instead of CGI variables.
    http: bool = False
    #: The backend may answer an ``Upgrade`` request (WebSocket) with 101: the front then
    #: tunnels the connection's bytes both ways. Without it, Upgrade requests are served as
    #: plain HTTP (Upgrade is hop-by-hop and not forwarded).
    upgrade: bool = False
    #: The application is in development mode (DEVELOPMENT_MODE): its "cannot start" page shows
    #: the worker's traceback to every client, not only to loopback ones, and its requests carry
    #: ``CORRAL_DEVELOPMENT=1`` (the worker's service-information page then shows its details).
    development: bool = False
    #: Request buffering (``AppConfig.request_buffering``): a request body is read whole
    #: (``front/spool.py``) before a backend is leased, then sent with its CONTENT_LENGTH.
    buffering: bool = False
    #: Its requests so far (``front/stats.py``), counted by the front as each one ends.
    stats: RequestStats = field(default_factory=RequestStats)
    #: Its site's Strict-Transport-Security value, sent on TLS responses only (None: none).
    hsts: bytes | None = None
    #: Its site redirects plain HTTP to https on this port (``https_redirect``; 0: it does
    #: not).
    https_port: int = 0
    #: HTTP backends: the Host header sent instead of the client's (ZOO_SUBSTITUTE_HOST; the
    #: client's goes in X-Forwarded-Host); None: the client's.
    backend_host: bytes | None = None
    #: ``http or upgrade``: the one test the front's hot path makes per request.
    special: bool = field(init=False, default=False)
    #: Set for a static route: what may be served from the mount's folder (no pool is used).
    static: StaticPolicy | None = None
    #: File handlers (``*.php``): the variables naming the script (SCRIPT_NAME, SCRIPT_FILENAME,
    #: PATH_INFO...: ``cgienv.script_params``), sent instead of the front's PATH_INFO. Set on
    #: the per-request route ``ConfigRouter`` derives; ``params`` then leave SCRIPT_NAME out.
    script_params: Pairs | None = None
    #: Set on a mount's rewrite route (see the module doc): its URL Rewrite rules.
    rewrite: MountRules | None = None
    #: Set on an application's console route (CONSOLE_URL): answered in-process, by this.
    console: InProcess | None = None

    def __post_init__(self) -> None:
        if not self.params:
            self.params = route_params(self.script_name, self.document_root)
        if self.development and (DEVELOPMENT_PARAM, b"1") not in self.params:
            self.params = [*self.params, (DEVELOPMENT_PARAM, b"1")]
        self.encoded_params = encode_params(self.params)
        self.special = self.http or self.upgrade


class AppRouter(Protocol):
    def match(self, host: bytes | None, path: bytes, port: int | None = None) -> AppRoute | None:
        """The route for a request (``port``: the listener's local port), or None (404)."""


@dataclass(eq=False, slots=True)
class MountRules:
    """A mount's URL Rewrite rules as the front applies them (``front/rewriting.py``)."""

    router: ConfigRouter
    #: The mount's virtual path as text, "" for the site's root.
    base: str
    #: The mount's folder (REQUEST_FILENAME is below it).
    root: str
    #: (folder URL below the mount, its rules), deepest folder first.
    scopes: tuple[tuple[str, tuple[RewriteRule, ...]], ...]
    #: The route redirects and custom responses of these rules are counted on.
    answers: AppRoute

    def rules_for(self, path: str) -> tuple[RewriteRule, ...]:
        """The rules in effect for a (decoded) path below the mount: its deepest folder's."""
        relative = path[len(self.base) :]
        for folder, rules in self.scopes:
            if not folder or relative == folder or relative.startswith(folder + "/"):
                return rules
        return ()


def _folder_scopes(
    scopes: tuple[RewriteScope, ...],
) -> tuple[tuple[str, tuple[RewriteRule, ...]], ...]:
    ordered = sorted(scopes, key=lambda scope: scope.folder.count("/") + bool(scope.folder))
    return tuple(
        ("/" + scope.folder if scope.folder else "", scope.rules) for scope in reversed(ordered)
    )


#: Routing answers remembered by ``ConfigRouter`` (kept-alive clients ask the same URLs again).
CACHE_SIZE = 4096

#: An application's key: (site name, virtual path, application name).
AppKey = tuple[str, str, str]


class ConfigRouter:
    """The configuration's routing (``corral.routing.Router``) onto the front's routes."""

    def __init__(
        self,
        config: ServerConfig,
        apps: Mapping[AppKey, AppRoute],
        *,
        static_name: str = "static",
        by_port: bool = True,
        hsts: str | None = None,
        consoles: Mapping[AppKey, AppRoute] | None = None,
    ) -> None:
        """
        Args:
            config: the loaded configuration.
            apps: the route of every application of ``config``.
            by_port: route by the listener's port (each binding's port); False when every
                site is served on one address given on the command line (``--listen``: plain
                HTTP only, so no site redirects to https).
            hsts: the server's Strict-Transport-Security value in force (default: the
                configuration's ``[server] hsts``), for the sites that set none.
            consoles: the console route (``AppRoute.console``) of applications with a web
                console, answered for the URLs at and below its ``script_name`` before the
                mount's URL Rewrite rules and handlers.
        """
        self._router = ModelRouter(config)
        self._apps = dict(apps)
        self._by_port = by_port
        #: Listener's actual port -> the configured port it serves (they differ for port 0).
        self._ports: dict[int, int] = {}
        self._static: dict[tuple[str, str], AppRoute] = {}
        #: (site, virtual path) -> the mount's rewrite route, for mounts with rules.
        self._rewriting: dict[tuple[str, str], AppRoute] = {}
        for site in config.sites:
            for mount in site.mounts:
                script = b"" if mount.virtual_path == "/" else mount.virtual_path.encode()
                self._static[(site.name, mount.virtual_path)] = AppRoute(
                    name=f"{static_name}:{site.name}:{mount.virtual_path}",
                    pool=NO_POOL,
                    script_name=script,
                    document_root=mount.physical_path.encode(),
                    static=mount.static,
                )
                if mount.rewrite:
                    self._rewriting[(site.name, mount.virtual_path)] = self._rules_route(
                        site.name, mount, script
                    )
        #: PHP applications (their script suffixes): a ``*`` handler is a front controller.
        self._php: dict[AppKey, tuple[str, ...]] = {
            (app.site, app.virtual_path, app.name): suffixes
            for app in config.apps
            if ".php" in (suffixes := source_suffixes(app.engine))
        }
        missing = {(a.site, a.virtual_path, a.name) for a in config.apps} - set(self._apps)
        if missing:
            raise ValueError(f"no route for applications {sorted(missing)}")
        #: (site, mount's virtual path) -> (console URL prefix, its route), longest first.
        self._consoles: dict[tuple[str, str], list[tuple[bytes, AppRoute]]] = {}
        for app in config.apps:
            console = (consoles or {}).get((app.site, app.virtual_path, app.name))
            if console is not None:
                found = self._consoles.setdefault((app.site, app.virtual_path), [])
                found.append((console.script_name, console))
                found.sort(key=lambda item: -len(item[0]))
        _site_tls_policy(config, self._apps, self._static, by_port, hsts)
        if consoles:
            _site_tls_policy(config, consoles, {}, by_port, hsts)
        #: (host, path, port) -> route, for the answers that depend on nothing else (whole
        #: applications; static files that are not folder URLs). Cleared when full.
        self._cache: dict[tuple[bytes | None, bytes, int | None], AppRoute] = {}
        #: The same for rewritten requests (``routed``).
        self._rewritten: dict[tuple[bytes | None, bytes, int | None], AppRoute] = {}
        # The common case of `corral serve SITE_DIR`: one site, every host, one application
        # taking every URL. Answered without routing at all.
        self._only: AppRoute | None = None
        if (
            len(config.sites) == 1
            and len(config.apps) == 1
            and len(config.sites[0].mounts) == 1
            and not self._consoles
        ):
            site = config.sites[0]
            mount = site.mounts[0]
            scopes = mount.scopes
            if (
                mount.virtual_path == "/"
                and not mount.rewrite
                and not self._php
                and len(scopes) == 1
                and scopes[0].folder == ""
                and scopes[0].handlers
                and scopes[0].handlers[0].path == "*"
                and not any(binding.hosts for binding in site.bindings)
                and len({binding.port for binding in site.bindings}) == 1
            ):
                self._only = next(iter(self._apps.values()))

    def _rules_route(self, site: str, mount: Mount, script: bytes) -> AppRoute:
        answers = AppRoute(name=f"rewrite:{site}:{mount.virtual_path}", pool=NO_POOL)
        rules = MountRules(
            self,
            "" if mount.virtual_path == "/" else mount.virtual_path,
            mount.physical_path,
            _folder_scopes(mount.rewrite),
            answers,
        )
        return AppRoute(name=answers.name, pool=NO_POOL, script_name=script, rewrite=rules)

    def listening(self, actual_port: int, configured_port: int) -> None:
        """A listener for the bindings on ``configured_port`` got ``actual_port``."""
        self._ports[actual_port] = configured_port

    def match(self, host: bytes | None, path: bytes, port: int | None = None) -> AppRoute | None:
        only = self._only
        if only is not None:
            return only
        port = self._ports.get(port, port) if self._by_port and port is not None else None
        key = (host, path, port)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = self._router.match(host, path, port=port)
        if found is None:
            return None
        if self._consoles:
            for prefix, console in self._consoles.get(
                (found.site.name, found.mount.virtual_path), ()
            ):
                if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in (b"", b"/"):
                    remember(self._cache, key, console, CACHE_SIZE)
                    return console
        if self._rewriting:
            rules = self._rewriting.get((found.site.name, found.mount.virtual_path))
            if rules is not None:
                remember(self._cache, key, rules, CACHE_SIZE)
                return rules
        return self._resolve(found, key, self._cache)

    def routed(self, host: bytes | None, path: bytes, port: int | None = None) -> AppRoute | None:
        """The route of a rewritten request (``front/rewriting.py``): as ``match``, without
        applying the rules again."""
        port = self._ports.get(port, port) if self._by_port and port is not None else None
        key = (host, path, port)
        cached = self._rewritten.get(key)
        if cached is not None:
            return cached
        found = self._router.match(host, path, port=port)
        if found is None:
            return None
        return self._resolve(found, key, self._rewritten)

    def _resolve(
        self,
        found: Route,
        key: tuple[bytes | None, bytes, int | None],
        cache: dict[tuple[bytes | None, bytes, int | None], AppRoute],
    ) -> AppRoute:
        app = found.app
        if app is None:
            route = self._static[(found.site.name, found.mount.virtual_path)]
            if found.path_info and not found.path_info.endswith("/"):
                # (A folder URL may get a default document once one is created: not cached.)
                remember(cache, key, route, CACHE_SIZE)
            return route
        app_key = (app.site, app.virtual_path, app.name)
        route = self._apps[app_key]
        if found.handler is None or not is_file_pattern(found.handler.path):
            php = self._php.get(app_key) if self._php else None
            if php is not None:
                return self._front_controller(found, route, php)
            remember(cache, key, route, CACHE_SIZE)
            return route
        # A file handler (*.php): this request's script, only when that file exists. php-cgi's
        # cgi.fix_pathinfo would otherwise run the longest existing prefix of a missing script:
        # /uploads/avatar.jpg/x.php executing an uploaded "image" as PHP. The folder's static
        # rules answer instead (404: no such file, and PHP sources are never served). Not
        # remembered: the script may be created later.
        if not os.path.isfile(route.document_root + found.script_bytes):
            return self._static[(found.site.name, found.mount.virtual_path)]
        return _script_route(route, found.script_bytes, found.script_path_info_bytes)

    def _front_controller(
        self, found: Route, route: AppRoute, suffixes: tuple[str, ...]
    ) -> AppRoute:
        """A PHP application's ``*`` handler (see the module doc). Not remembered: files come
        and go."""
        root = route.document_root
        path = found.path_info_bytes
        static = self._static[(found.site.name, found.mount.virtual_path)]
        php = tuple(suffix.encode() for suffix in suffixes)
        start = 1
        while start < len(path):  # the first segment that names an existing script
            end = path.find(b"/", start)
            end = len(path) if end < 0 else end
            if path[start:end].lower().endswith(php) and os.path.isfile(root + path[:end]):
                return _script_route(route, path[:end], path[end:])
            start = end + 1
        documents = [
            name.encode()
            for name in found.mount.static.default_documents
            if name.lower().endswith(suffixes)
        ]
        if not path or path.endswith(b"/"):
            folder = path or b"/"
            for name in documents:
                if os.path.isfile(root + folder + name):
                    return _script_route(route, folder + name, b"")
        elif os.path.isfile(root + path):
            return static  # an existing file that is no script: the front serves it
        for name in documents[:1]:
            if os.path.isfile(root + b"/" + name):
                return _script_route(route, b"/" + name, path)
        return static


def _script_route(route: AppRoute, script: bytes, path_info: bytes) -> AppRoute:
    """``route`` for one request to the script ``script`` (a file handler's variables)."""
    return AppRoute(
        name=route.name,
        pool=route.pool,
        script_name=route.script_name,
        document_root=route.document_root,
        params=[pair for pair in route.params if pair[0] != b"SCRIPT_NAME"],
        http=route.http,
        upgrade=route.upgrade,
        buffering=route.buffering,
        hsts=route.hsts,
        https_port=route.https_port,
        stats=route.stats,
        script_params=script_params(route.script_name, script, path_info, route.document_root),
    )


def _site_tls_policy(
    config: ServerConfig,
    apps: Mapping[AppKey, AppRoute],
    static: Mapping[tuple[str, str], AppRoute],
    by_port: bool,
    hsts: str | None,
) -> None:
    """Each route's site's HSTS value and https redirect (set again by every reload's
    router: an application's route outlives a reload that leaves it unchanged)."""
    server_hsts = config.front.hsts if hsts is None else hsts
    for site in config.sites:
        value = server_hsts if site.hsts is None else site.hsts
        port = site.https_port() if by_port and site.https_redirect else None
        routes = [route for key, route in apps.items() if key[0] == site.name]
        routes += [route for key, route in static.items() if key[0] == site.name]
        for route in routes:
            route.hsts = value.encode("latin-1") if value else None
            route.https_port = port or 0
