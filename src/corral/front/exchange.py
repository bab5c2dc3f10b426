"""One request's life, whatever the client's protocol: route -> lease -> begin -> relay -> release.

An ``Exchange`` takes a parsed ``Request`` from its ``ClientStream`` (``front/stream.py``) and

1. routes it (``AppRouter.match``; a mount's URL Rewrite rules first: ``front/rewriting.py``)
   and builds its CGI variables (or, for an HTTP backend, the request head; for a static
   folder, a ``StaticResponse``);
2. leases a backend from the route's ``LeaseSource``: ``lease_or_wait`` (by callback: no task,
   coroutine or timer per request), or ``try_acquire`` then, in a small task, ``acquire``;
3. begins the request on the lease's ``Upstream`` and passes the request body on as it comes
   (what came before the lease waits; the stream is not read meanwhile);
4. relays the response: it is the backend's ``ResponseSink``, and hands head, body and end to
   the stream's ``ResponseStream``, which frames them for its protocol;
5. releases the lease.

It also owns what happens when that goes wrong: a request that never reached the application
(``BackendNotStarted``: it was queued on a worker's connection that closed, or withdrawn from
behind a slow request) is leased again, first in line; a lease that fails becomes the 503 that
says why (``_lease_failed``: details such as a traceback only where ``details.allowed``
says, else a reference id that is also in the log); a failing backend costs the request a 502
(504 past the app's request timeout), or a cut response once its head has left. While an
application's deploy script runs, one request may watch its output (``_stream_deploy``), if it
may see details.

Who the client is: from a trusted proxy (the stream's ``trusted``), what the proxy says
(``forward.from_proxy``) becomes REMOTE_ADDR, HTTPS and the host for a FastCGI backend, and
``client`` (the access log, the details rule); ``cgienv`` drops the forwarding fields from
everyone else, so no app believes a client that claims to be a proxy.

An HTTP/1.1 connection keeps one ``Exchange`` and reuses it for each of its requests, in turn
(``reset``): no object per request on the hot path. An Upgrade request that the route may
tunnel gets a ``Tunnel`` (``front/tunnel.py``) as its sink.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from functools import partial
from time import perf_counter
from typing import Final

from corral.backends import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_TUNNEL,
    BackendError,
    BackendNotReached,
    BackendNotStarted,
    Upstream,
)
from corral.front import (
    accesslog,
    cgienv,
    details,
    forward,
    rewriting,
    staticserve,
    unavailable,
)
from corral.front.context import FrontContext
from corral.front.httpspolicy import add_hsts, https_redirect
from corral.front.proxy import BadBackendHead
from corral.front.routes import AppRoute
from corral.front.spool import BodySpool
from corral.front.stream import PAUSE_BACKEND, PAUSE_LEASE, ClientStream, Deadline
from corral.front.target import PATHS, BadTarget, decode_path_remembered, split_host
from corral.front.tunnel import Tunnel
from corral.protocol.http1.events import Request
from corral.protocol.memo import remember
from corral.runtime.gate import DeployInProgress
from corral.supervision.lease import (
    Lease,
    LeaseSource,
    PoolError,
    Waiter,
)

logger = logging.getLogger("corral.front")

_PATHS_GET: Final = PATHS.get
# Module constants: read on the hot path without an attribute look-up on the enum.
_BODY: Final = Deadline.BODY
_BACKEND: Final = Deadline.BACKEND
_ACQUIRE: Final = Deadline.ACQUIRE

#: How often a request that never reached the app (BackendNotStarted) is leased again.
_NOT_STARTED_RETRIES: Final = 3
#: Methods whose requests (without a body) may be queued on a busy worker's connection: safe
#: ones, which may run twice if one is withdrawn just as it begins (RFC 9110 9.2.2).
_QUEUEABLE: Final = frozenset((b"GET", b"HEAD", b"OPTIONS"))
#: Idempotent methods (RFC 9110 9.2.2): a request of one that the backend closed on before
#: answering anything (``BackendNotReached``) is sent again once, as nginx does.
_IDEMPOTENT: Final = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
#: How long after such a close the request is sent again: time for the pool to see whether
#: the worker died of it (then it is not sent again).
_RESEND_DELAY: Final = 0.02


class Exchange:
    """One request at a time from one ``ClientStream``, to a backend and back (see the module
    doc). The stream calls ``start``, ``body``, ``body_end``, ``client_paused``/``_resumed``,
    ``give_up``, ``drop`` and ``reset``; the backend calls the ``ResponseSink`` methods; a
    ``Tunnel`` also ``end_backend``."""

    __slots__ = (
        "_host",
        "_host_parts",
        "_hsts",
        "_lease",
        "_method",
        "_params",
        "_pending_body",
        "_response",
        "_retries",
        "_server",
        "_spool",
        "_spool_params",
        "_stream",
        "_target",
        "_task",
        "_waiter",
        "agent",
        "backend",
        "client",
        "referer",
        "request",
        "route",
        "upstream_end",
        "upstream_start",
    )

    def __init__(self, server: FrontContext, stream: ClientStream) -> None:
        self._server = server
        self._stream = stream
        self._response = stream.response
        #: The last Host seen and its (SERVER_NAME, SERVER_PORT): kept-alive clients send the
        #: same Host every time, so it is split once.
        self._host: bytes | None = None
        self._host_parts = (b"", b"")
        #: The client's address as a trusted proxy named it (None: it named none); set for
        #: each request from a trusted proxy, unused otherwise.
        self.client: str | None = None
        #: The Strict-Transport-Security value for the request's responses: set per request
        #: on a TLS connection only (``AppRoute.hsts``); always None over plain HTTP.
        self._hsts: bytes | None = None
        self.reset()

    def reset(self) -> None:
        """Ready for the next request (the previous one is over)."""
        self.request: Request | None = None
        self.route: AppRoute | None = None
        #: The request's backend while it runs (the lease's ``conn``; a static response).
        self.backend: Upstream | None = None
        #: The Referer and User-Agent fields (for the access log).
        self.referer: bytes | None = None
        self.agent: bytes | None = None
        #: When a backend was first leased for the request, and when that lease went back
        #: (``perf_counter``; 0.0: not yet): the access log's upstream time.
        self.upstream_start = 0.0
        self.upstream_end = 0.0
        self._lease: Lease | None = None
        self._task: asyncio.Task[None] | None = None
        #: The source and waiter of a request queued by callback (``lease_or_wait``).
        self._waiter: tuple[LeaseSource, Waiter] | None = None
        self._method = b""
        self._pending_body: list[bytes] | None = None
        #: A request queued on a busy worker connection is sent again when that connection
        #: closes before serving it (BackendNotStarted): its CGI variables, and how often.
        self._params: list[tuple[bytes, bytes]] | None = None
        self._retries = 0
        #: Request buffering: the body read so far (before the lease), then what is left to
        #: send of it; and the request's CGI variables while its body is read.
        self._spool: BodySpool | None = None
        self._spool_params: list[tuple[bytes, bytes]] | None = None
        #: An HTTP backend's request target when URL Rewrite rules applied (None: as sent).
        self._target: bytes | None = None

    @property
    def name(self) -> str:
        """The route's name, for logs ("?" before routing)."""
        route = self.route
        return route.name if route is not None else "?"

    # -- from the client -----------------------------------------------------------------------

    def start(self, request: Request, has_body: bool) -> None:
        """A request head arrived (its limits already checked): route it and lease a backend."""
        server = self._server
        stream = self._stream
        self.request = request
        self._method = method = request.method
        # From a trusted proxy: what it says about the client (see the module doc).
        view = (
            forward.from_proxy(request.headers, server.trusted_proxies) if stream.trusted else None
        )
        if view is not None:
            self.client = view.client
        # An Upgrade request is served as plain HTTP/1.1 (Upgrade is hop-by-hop, not forwarded)
        # unless the route's backend can switch protocols (see _special_request).
        try:
            raw_path = request.path
            path = _PATHS_GET(raw_path) or decode_path_remembered(raw_path)
        except BadTarget as exc:
            if exc.status == 404:
                stream.respond_error(404)
            else:
                stream.reject(exc.status, str(exc))
            return
        params: list[tuple[bytes, bytes]] = []
        host, self.referer, self.agent, _ = cgienv.header_params(request.headers, params)
        authority = request.host
        if authority is not None:
            if authority is not host and host is not None and authority != host:
                # An absolute-form target: its authority is the host (RFC 9112 3.2.2).
                cgienv.replace(params, b"HTTP_HOST", authority)
            host = authority
        route = server.router.match(host, path, stream.server_port)
        if route is None:
            stream.respond_error(404)
            return
        query = request.query
        if route.rewrite is not None:  # the mount's URL Rewrite rules (front/rewriting.py)
            done = rewriting.apply(route.rewrite, request, host, path, view, stream, params)
            if done is None:  # answered (404) or dropped (AbortRequest)
                return
            route, path, query, self._target = done.route, done.path, done.query, done.target
            if done.answer is not None:  # a Redirect or CustomResponse rule's
                self.route = route
                self._begin(done.answer, route.encoded_params + stream.conn_params, [], has_body)
                return
        self.route = route
        if stream.tls:
            self._hsts = route.hsts
        elif route.https_port:  # the site wants https (https_redirect): a 308 there
            redirect = https_redirect(request, route.https_port, host or server.host_bytes)
            if redirect is None:
                stream.reject(400, "a Host that cannot be redirected to https")
            else:
                self._begin(redirect, b"", [], has_body)
            return
        script_name = route.script_name
        path_info = path[len(script_name) :] if script_name else path
        if route.console is not None:  # an app's web console (corral.console): in-process
            own = forward.origin(view, stream.tls, host)
            responder = route.console.respond(
                request, path_info, self.client or stream.remote_host, own
            )
            upgrade = request.upgrade is not None and not has_body
            self._begin(responder, b"", [], BODY_TUNNEL if upgrade else int(has_body))
            return
        if route.static is not None:  # a static file: answered like a backend's response
            responder = staticserve.respond(route, request, path_info)
            self._begin(responder, route.encoded_params + stream.conn_params, [], has_body)
            return
        if host is None or host != self._host:
            self._host = host
            if host:
                self._host_parts = split_host(host, server.port_bytes(stream.server_port))
            else:
                self._host_parts = (server.host_bytes, server.port_bytes(stream.server_port))
        server_name, server_port = self._host_parts
        if view is not None:
            server_name, server_port = forward.proxy_params(
                view,
                params,
                stream.remote_host,
                server.port_bytes(stream.remote_port),
                server_name,
                server_port,
            )
        version = request.http_version
        protocol = _PROTOCOL_PARAMS.get(version) or _protocol_param(server, version)
        if route.script_params is None:
            params += (
                (b"REQUEST_METHOD", method),
                (b"PATH_INFO", path_info),
                (b"QUERY_STRING", query),
                (b"REQUEST_URI", request.target),
                (b"SERVER_NAME", server_name),
                (b"SERVER_PORT", server_port),
                protocol,
            )
        else:  # a file handler's script (*.php)
            params.append((b"REQUEST_METHOD", method))
            params += route.script_params
            params += (
                (b"QUERY_STRING", query),
                (b"REQUEST_URI", request.target),
                (b"SERVER_NAME", server_name),
                (b"SERVER_PORT", server_port),
                protocol,
            )
        length = request.content_length
        if length is not None and not request.chunked:
            params.append((b"CONTENT_LENGTH", b"%d" % length))
        if route.development and details.local(server, stream, self.client, request):
            params.append((cgienv.LOCAL_PARAM, b"1"))  # the worker's development page
        if has_body:
            if route.buffering:  # read the body whole first, then lease (body_end)
                self._spool = BodySpool(server.settings.request_buffer_memory)
                self._spool_params = params
                stream.want_body()
                stream.read_body()
                return
            stream.pause_reading(PAUSE_LEASE)
            self._pending_body = []
        if route.special and (route.http or request.upgrade is not None):
            # (An upgrade-only route, as the Python worker's, keeps ordinary requests below.)
            self._special_request(request, route, params, has_body)
            return
        self._lease_for(route, params, has_body)

    def body(self, data: bytes) -> None:
        """A piece of the request body: to the backend, or kept until there is one."""
        backend = self.backend
        if backend is not None:
            backend.send_body(data)
        elif self._spool is not None:
            self._spool.write(data)
        elif self._pending_body is not None:
            self._pending_body.append(data)
        # Else the request was already answered (an error): the body is dropped.

    def body_end(self) -> None:
        """The request body is complete."""
        if self.backend is not None:
            self.backend.end_body()
            return
        spool = self._spool
        if spool is None:
            return
        # Request buffering: the whole body is here. Lease a backend, then send the body with
        # its length (_begin).
        request = self.request
        route = self.route
        params = self._spool_params
        assert request is not None and route is not None and params is not None
        self._spool_params = None
        if request.chunked or request.content_length is None:
            params.append((b"CONTENT_LENGTH", b"%d" % spool.size))
            self.request = request = dataclasses.replace(
                request, content_length=spool.size, chunked=False
            )
        if route.special and (route.http or request.upgrade is not None):
            self._special_request(request, route, params, True)
        else:
            self._lease_for(route, params, True)

    def client_paused(self) -> None:
        """The client's send buffer is full: spill the response to disk (a leased worker's:
        it is then read at full speed and released at its end), else stop reading the
        backend."""
        backend = self.backend
        if backend is not None:
            if self._lease is not None and self._response.spill(backend):
                return
            backend.pause_reading()

    def client_resumed(self) -> None:
        if self.backend is not None:
            self.backend.resume_reading()

    def give_up(self, kind: Deadline = _ACQUIRE) -> None:
        """A deadline of the exchange's own passed. ACQUIRE: waiting for a worker took too
        long: leave the queue and answer 503. BACKEND: no sign of the backend for the response
        timeout: 504, or a cut response; the lease goes back marked ``stuck``, so that the pool
        retires the worker (its stack to the app's log first) rather than hand it the next
        request."""
        if kind == _BACKEND:
            lease = self._lease
            if lease is not None:
                lease.stuck = True
            self._stream.respond_error(504)
            return
        self._give_up_waiting()
        self._stream.respond_error(503, retry_after=True, message="No application worker was free.")

    def drop(self) -> None:
        """The exchange ends early (the client left, or was answered with an error): stop
        waiting, drop the backend and give its lease back, not reusable."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._give_up_waiting()
        spool = self._spool
        if spool is not None:
            self._spool = None
            spool.close()
        lease = self._lease
        if lease is not None:
            lease.abandoned = True
        backend = self.backend
        if backend is not None:
            self.backend = None
            backend.abort()
            self._release(False)
        elif lease is not None:
            self._release(False)

    # -- leasing -------------------------------------------------------------------------------

    def _lease_for(
        self, route: AppRoute, params: list[tuple[bytes, bytes]], has_body: bool
    ) -> None:
        """Lease a backend for a plain request and start it (or queue for one)."""
        server = self._server
        pool = route.pool
        # Leased by callback: no task, coroutine or timer per request (see _on_lease). A
        # request of a safe method without a body may be queued on a busy worker's
        # connection (and withdrawn from it: then it is sent again, first in line).
        queueable = not has_body and self._method in _QUEUEABLE
        if queueable:
            self._params = params
        try:
            got = pool.lease_or_wait(
                partial(self._on_lease, pool, route, params, has_body),
                queueable,
                self._retries > 0,
            )
        except Exception as exc:
            self._lease_failed(route, exc)
            return
        if got is not None:
            if isinstance(got, Lease):
                self._lease = got
                static = route.encoded_params + self._stream.conn_params
                self._begin(got.conn, static, params, has_body)
            else:  # queued: the sweep gives up after acquire_timeout
                self._waiter = (pool, got)
                self._stream.set_deadline(_ACQUIRE, server.settings.acquire_timeout)
            return
        static = route.encoded_params + self._stream.conn_params
        self._task = server.loop.create_task(self._acquire(route, static, params, has_body))

    def _on_lease(
        self,
        pool: LeaseSource,
        route: AppRoute,
        params: list[tuple[bytes, bytes]],
        has_body: bool,
        got: Lease | PoolError | None,
    ) -> None:
        """The pool's answer to a request that queued in ``lease_or_wait``."""
        self._waiter = None
        stream = self._stream
        if stream.closed or self.route is not route:  # gone, or given up (503) meanwhile
            if isinstance(got, Lease):
                pool.release(got, True)
            return
        if got is None:  # the pool could not hand over a kept-alive connection: the long way
            stream.set_deadline(_BACKEND, self._server.response_timeout)
            static = route.encoded_params + stream.conn_params
            self._task = self._server.loop.create_task(
                self._acquire(route, static, params, has_body)
            )
        elif isinstance(got, Lease):
            self._lease = got
            stream.set_deadline(_BACKEND, self._server.response_timeout)
            self._begin(got.conn, route.encoded_params + stream.conn_params, params, has_body)
        else:
            self._lease_failed(route, got)

    def _give_up_waiting(self) -> None:
        waiting = self._waiter
        if waiting is not None:
            self._waiter = None
            pool, waiter = waiting
            pool.cancel_wait(waiter)

    def _special_request(
        self, request: Request, route: AppRoute, params: list[tuple[bytes, bytes]], has_body: bool
    ) -> None:
        """A request for a route whose backend speaks HTTP, or may switch protocols."""
        server = self._server
        stream = self._stream
        if request.upgrade is not None and route.upgrade and not has_body:
            body = BODY_TUNNEL
        elif request.chunked:
            body = BODY_CHUNKED
        else:
            body = BODY_LENGTH if has_body else BODY_NONE
        if route.http:
            host = self._host or b"%s:%s" % self._host_parts
            static = forward.request_head(
                request,
                host=host,
                client=stream.remote_host.encode("ascii", "replace"),
                trusted=stream.trusted,
                body=body,
                target=self._target,
                proto=b"https" if stream.tls else b"http",
                backend_host=route.backend_host,
            )
            params = []
        else:
            static = route.encoded_params + stream.conn_params
            if body == BODY_TUNNEL:
                assert request.upgrade is not None
                params.append((b"HTTP_UPGRADE", request.upgrade))
                params.append((b"HTTP_CONNECTION", b"Upgrade"))
        lease = route.pool.try_acquire()
        if lease is not None:  # a worker was free: no task, no wait
            self._lease = lease
            self._begin(lease.conn, static, params, body)
            return
        self._task = server.loop.create_task(self._acquire(route, static, params, body))

    async def _wait_lease(self, route: AppRoute) -> Lease | None:
        """Wait for a lease from the route's pool (the queued path); None when the request was
        answered instead (deploy page, 503) or the client left meanwhile."""
        try:
            lease = await route.pool.acquire(self._server.settings.acquire_timeout)
        except DeployInProgress as exc:
            if (
                exc.output is not None
                and self._method != b"HEAD"
                and details.allowed(self._server, route, self._stream, self.client, self.request)
            ):
                await self._stream_deploy(route, exc.output)
                return None
            self._task = None
            self._lease_failed(route, exc)
            return None
        except Exception as exc:
            self._task = None
            self._lease_failed(route, exc)
            return None
        self._task = None
        if self._stream.closed:
            route.pool.release(lease, True)
            return None
        self._lease = lease
        return lease

    async def _acquire(
        self, route: AppRoute, static: bytes, params: list[tuple[bytes, bytes]], body: int
    ) -> None:
        lease = await self._wait_lease(route)
        if lease is not None:
            self._begin(lease.conn, static, params, body)

    def _lease_failed(self, route: AppRoute, exc: Exception) -> None:
        """No backend for this request: the 503 that says why (``unavailable.lease_failed``)."""
        unavailable.lease_failed(self._server, self._stream, route, self.client, self.request, exc)

    async def _stream_deploy(self, route: AppRoute, output: AsyncIterator[bytes]) -> None:
        """The deploy script's output as the answer (``unavailable.stream_deploy``); runs in
        the request's task."""
        await unavailable.stream_deploy(self._server, self._stream, route, self.client, output)
        self._task = None
        if not self._stream.closed:
            self._stream.finish(True)

    # -- beginning -----------------------------------------------------------------------------

    def _begin(
        self, backend: Upstream, static: bytes, params: list[tuple[bytes, bytes]], body: int
    ) -> None:
        """Begin the request on ``backend``, then pass it what body came meanwhile. ``body``
        is a ``BODY_*`` value (a plain request's ``has_body``: BODY_NONE or BODY_LENGTH)."""
        stream = self._stream
        self.backend = backend
        if self._lease is not None and not self.upstream_start:
            self.upstream_start = perf_counter()
        sink = Tunnel(self, stream, backend, self._lease) if body == BODY_TUNNEL else self
        backend.begin(static, params, sink, body)
        if self.backend is None:  # begin() failed and reported it
            return
        if stream.writing_paused:
            backend.pause_reading()
        if not body or body == BODY_TUNNEL:  # (BODY_NONE is 0)
            stream.set_deadline(_BACKEND, self._server.response_timeout)
            return
        if self._spool is not None:  # request buffering: the whole body is here
            stream.set_deadline(_BACKEND, self._server.response_timeout)
            _send_spool(self, backend)
            return
        self._send_pending_body(backend)

    def _send_pending_body(self, backend: Upstream) -> None:
        """The backend is leased: send what body came meanwhile and read the rest."""
        stream = self._stream
        pending = self._pending_body
        self._pending_body = None
        if pending:
            for data in pending:
                backend.send_body(data)
        else:
            stream.want_body()
        if stream.body_complete:
            backend.end_body()
        else:
            stream.read_body()
        stream.resume_reading(PAUSE_LEASE)

    # -- ResponseSink: the backend side --------------------------------------------------------

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if status == 101:  # (a tunnel's 101 goes to the Tunnel, never here)
            self.backend_error(BackendError("101 Switching Protocols without a tunnel"))
            return
        if self._hsts is not None:  # (a TLS connection to a site with HSTS)
            add_hsts(headers, self._hsts)
        try:
            self._response.head(status, reason, headers)
        except BadBackendHead as exc:
            self.backend_error(BackendError(f"bad response head: {exc}"))

    def backend_body(self, data: bytes | memoryview) -> None:
        self._response.body(data)

    def backend_flush(self) -> None:
        self._response.flush()

    def backend_end(self, reusable: bool) -> None:
        self.backend = None
        self._release(reusable)
        stream = self._stream
        if stream.closed:
            return
        short = self._response.end()
        if short:
            # The backend ended before sending what its Content-Length promised.
            logger.warning(
                "%s: %s response ended %d bytes short of its Content-Length",
                self.name,
                accesslog.request_label(self.request),
                short,
            )
        stream.finish(False)

    def backend_started(self) -> None:
        """The request, queued behind others on its worker's connection, is now served."""
        lease = self._lease
        if lease is not None:
            lease.began()
        self._stream.extend_deadline(_BACKEND, self._server.response_timeout)

    def backend_error(self, exc: BackendError) -> None:
        stream = self._stream
        lease = self._lease
        backend = self.backend
        self.backend = None
        if backend is not None:
            backend.abort()
        request = self.request
        if (
            isinstance(exc, BackendNotReached)
            and not self._retries
            and request is not None
            and not stream.closed
            and self._response.status == 0
            and not (request.chunked or request.content_length)
            and (not exc.written or self._method in _IDEMPOTENT)
        ):
            # A kept-alive connection the backend closed just as the request was sent on it,
            # before answering anything: the app most likely never saw the request. Once.
            self._retries = 1
            self._server.loop.call_later(_RESEND_DELAY, _resend, self, lease, exc)
            return
        self._release(False)
        if (
            isinstance(exc, BackendNotStarted)
            and not stream.closed
            and self._params is not None
            and self.route is not None
            and self._response.status == 0
            and (exc.withdrawn or self._retries < _NOT_STARTED_RETRIES)
        ):
            # Queued on a worker connection that closed before serving it, or withdrawn from
            # behind a slow request: the app never saw it, so it goes to the pool again
            # (first in line: another worker, or this one's replacement).
            self._retries += 1
            self._lease_for(self.route, self._params, False)
            return
        name = self.name
        request = self.request
        what = accesslog.request_label(request)
        reason = backend_reason(exc, name)
        if stream.closed:
            logger.error("%s: %s (client already gone): %s", name, what, reason)
            return
        if not self._response.head_sent:
            if lease is not None and lease.timed_out:
                # The pool cut a request that ran past the app's request timeout.
                logger.error("%s: %s answered 504: it ran past the request timeout", name, what)
                stream.respond_error(504)
                return
            logger.error("%s: %s answered 502: %s", name, what, reason)
            stream.respond_error(502)
        else:
            logger.error("%s: %s response cut short: %s", name, what, reason)
            stream.abort()

    def backend_pause_writing(self) -> None:
        spool = self._spool
        if spool is not None:  # sending a spooled body: wait for the backend to drain
            spool.paused = True
            return
        self._stream.pause_reading(PAUSE_BACKEND)

    def backend_resume_writing(self) -> None:
        backend = self.backend
        if self._spool is not None and backend is not None:
            _send_spool(self, backend)
            return
        self._stream.resume_reading(PAUSE_BACKEND)

    # -- the end -------------------------------------------------------------------------------

    def end_backend(self) -> None:
        """The backend's part is over before its response ended (a tunnel closing): drop it
        and give the lease back, not reusable."""
        backend = self.backend
        self.backend = None
        if backend is not None:
            backend.abort()
        self._release(False)

    def _release(self, reusable: bool) -> None:
        lease = self._lease
        if lease is not None:
            self._lease = None
            self.upstream_end = perf_counter()
            assert self.route is not None
            self.route.pool.release(lease, reusable)


#: SERVER_PROTOCOL's pair by HTTP version (a request's version is one of a few).
_PROTOCOL_PARAMS: dict[str, tuple[bytes, bytes]] = {}


def _protocol_param(server: FrontContext, version: str) -> tuple[bytes, bytes]:
    pair = (b"SERVER_PROTOCOL", server.protocol_bytes(version))
    return remember(_PROTOCOL_PARAMS, version, pair, 8)


def _send_spool(exchange: Exchange, backend: Upstream) -> None:
    """Request buffering: send the exchange's spooled body to its backend while the backend
    takes it (again at each ``backend_resume_writing``), then end it."""
    spool = exchange._spool
    if spool is None:
        return
    try:
        done = spool.send(backend)
    except OSError as exc:
        exchange.backend_error(BackendError(f"the spooled request body is unreadable: {exc}"))
        return
    if done and exchange._spool is spool:
        exchange._spool = None


def _resend(exchange: Exchange, lease: Lease | None, exc: BackendNotReached) -> None:
    """A moment after the backend closed on a request it answered nothing to: give the lease
    back (the pool sees by now whether the worker died), then lease again and send the request
    once more, unless the worker died (a request that kills its worker is not sent to
    another) or the client has gone."""
    if exchange._lease is not lease or exchange.request is None:
        return  # the exchange ended meanwhile (the client left: its lease went back then)
    exchange._release(False)
    if exchange._stream.closed:
        return
    if lease is not None and lease.lost:
        exchange._retries = _NOT_STARTED_RETRIES  # (no further retry either way)
        exchange.backend_error(BackendError(f"{exc} (the worker died)"))
        return
    logger.info("%s: %s; sending the request again", exchange.name, exc)
    exchange.start(exchange.request, False)


def backend_reason(exc: BackendError, name: str) -> str:
    """A backend error's text without the application's name it may start with (the log
    line names the application already)."""
    text = str(exc)
    return text[len(name) + 1 :] if text.startswith(name + " ") else text
