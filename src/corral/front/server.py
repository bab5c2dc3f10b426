"""The front server: listening sockets, the connections' shared state, the deadline sweep, and
a graceful stop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import ssl
import time
from collections.abc import Callable

from corral.front import accesslog
from corral.front.context import ClientConnection
from corral.front.forward import TrustedProxies
from corral.front.http1 import HTTPConnection
from corral.front.negotiate import ProtocolChooser
from corral.front.parsing import ConnectionParser
from corral.front.peers import Local, Peers
from corral.front.routes import AppRouter
from corral.front.settings import FrontSettings
from corral.front.stats import FrontStats
from corral.front.tlsrenew import TlsRenewal
from corral.protocol.http1.parser import Limits
from corral.protocol.http1.writer import DateCache
from corral.protocol.memo import remember

logger = logging.getLogger("corral.front")

#: How often deadlines are checked and the Date header refreshed (seconds).
SWEEP_INTERVAL = 0.5
#: At most one "out of file descriptors" line in this many seconds.
FD_LOG_INTERVAL = 1.0


class FrontServer:
    """Owns the listener and every client connection; the ``FrontContext`` of its connections."""

    def __init__(
        self,
        router: AppRouter,
        settings: FrontSettings | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.router = router
        self.loop = loop or asyncio.get_running_loop()
        self.closing = False
        #: The https listeners, given fresh TLS contexts now and then (``front.tlsrenew``).
        self.tls_renewal = TlsRenewal(self.loop)
        #: The client and local addresses' facts, worked out once each (``front.peers``).
        self.peers = Peers(TrustedProxies(()))
        self.apply_settings(settings or FrontSettings())
        self.connections: set[ClientConnection] = set()
        self.stats = FrontStats()
        self.now = self.loop.time()
        self.host_bytes = b"localhost"
        self._dates = DateCache()
        self.date_header = self._dates.field(time.time())
        self._port_cache: dict[int, bytes] = {}
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._fd_logged_at = -1e9

    def apply_settings(self, settings: FrontSettings) -> None:
        """Use ``settings`` from now on (at start, and when a reload changes them).

        Timeouts, Retry-After, trusted proxies, the error pages and the access log's
        destination and format apply at once, to every connection; the size limits (request
        line, head, body) and the write-buffer mark are taken by a connection when it opens:
        connections already open keep theirs."""
        self.settings = settings
        # Read on every request: plain attributes rather than a chain through settings.
        self.header_timeout = settings.header_timeout
        self.keepalive_timeout = settings.keepalive_timeout
        self.body_timeout = settings.body_timeout
        self.response_timeout = settings.response_timeout
        self.tunnel_idle_timeout = settings.tunnel_idle_timeout
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)
        self.peers.retrust(self.trusted_proxies)
        # The access log as ``corral.logs`` set it up (again, before a reload calls this).
        self.access_log = accesslog.enabled()
        self.access_write = accesslog.writer()
        self.access_format = accesslog.format_for(settings.access_log_format)
        self.tls_renewal.configure(settings.tls_ticket_key_lifetime, settings.tls_handshake_timeout)
        self._limits = Limits(
            max_request_line=settings.max_request_line,
            max_header_bytes=settings.max_header_size,
            max_header_count=settings.max_header_count,
            max_header_field=settings.max_header_field,
            max_body_size=settings.max_body_size,
        )

    # -- used by connections -----------------------------------------------------------------

    def new_parser(self) -> ConnectionParser:
        return ConnectionParser(self._limits)

    def port_bytes(self, port: int) -> bytes:
        cached = self._port_cache.get(port)
        if cached is None:
            cached = remember(self._port_cache, port, b"%d" % port, 70000)
        return cached

    @staticmethod
    def protocol_bytes(version: str) -> bytes:
        return _PROTOCOLS.get(version) or b"HTTP/" + version.encode("ascii", "replace")

    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self.stats.connections_opened += 1

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self.closing and not self.connections:
            self._idle.set()

    def is_loopback(self, host: str) -> bool:
        """Whether a client address is a loopback address (remembered per address with the rest
        of what it tells: ``peers``)."""
        return self.peers.client(host).loopback

    # -- life --------------------------------------------------------------------------------

    async def listen(
        self,
        host: str,
        port: int,
        *,
        backlog: int = 1024,
        sock: socket.socket | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> list[tuple[str, int]]:
        """Start listening; returns the bound addresses (port 0 picks a free port). ``sock``:
        a listening socket to serve instead of binding ``host:port`` (socket activation).
        ``tls``: an https listener, whose contexts that function makes (``front.tls``; a fresh
        one at each renewal, see ``TlsRenewal``)."""

        # A plain listener bound to one concrete address: its connections' local facts, known
        # once it is bound (``front.peers``; until then, and otherwise, each connection's own).
        local: list[Local | None] = [None]

        def connection() -> asyncio.Protocol:
            # HTTP/1.1, or the protocol ALPN or the first bytes choose (front/negotiate.py).
            if tls is not None or self.settings.http2_cleartext:
                return ProtocolChooser(self, tls is None)
            return HTTPConnection(self, local[0])

        context = tls() if tls is not None else None
        handshake = self.settings.tls_handshake_timeout if tls is not None else None
        if sock is not None:
            server = await self.loop.create_server(
                connection, sock=sock, backlog=backlog, ssl=context, ssl_handshake_timeout=handshake
            )
        else:
            server = await self.loop.create_server(
                connection,
                host,
                port,
                backlog=backlog,
                reuse_address=True,
                ssl=context,
                ssl_handshake_timeout=handshake,
            )
        if tls is None:
            self._servers.append(server)
            local[0] = self.peers.listener_local(server.sockets)
        else:
            self.tls_renewal.add(server, tls, connection, backlog)
        addresses: list[tuple[str, int]] = []
        for sock in server.sockets:
            name = sock.getsockname()
            addresses.append((str(name[0]), int(name[1])))
        if host and host not in ("0.0.0.0", "::"):
            self.host_bytes = host.encode("idna")
        else:
            self.host_bytes = socket.gethostname().encode("ascii", "replace")
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        return addresses

    def _sweep(self) -> None:
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        self.now = now = self.loop.time()
        if now >= self.tls_renewal.due:
            self.tls_renewal.renew()
        self.date_header = self._dates.field(time.time())
        if self.access_log:
            accesslog.flush()
        for conn in list(self.connections):
            try:
                conn.check_deadline(now)
            except Exception:  # a bug: contain it to that one connection
                logger.exception("deadline handling failed; dropping the connection")
                conn.force_close()
        self._check_descriptors(now)

    def _check_descriptors(self, now: float) -> None:
        """Say when the process is out of file descriptors: then the event loop cannot accept
        a connection (uvloop's libuv accepts and closes it at once; asyncio's loop leaves it
        in the backlog), silently but for this line, at most once per ``FD_LOG_INTERVAL``. The
        connections already open are served as usual; new ones are accepted again as soon as
        some close. (A probe per sweep, two system calls: nothing per connection or request.)"""
        try:
            os.close(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                return
            if now - self._fd_logged_at < FD_LOG_INTERVAL:
                return
            self._fd_logged_at = now
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            logger.error(
                "cannot accept connections: %s (%d client connections open, RLIMIT_NOFILE %d): "
                "new connections are closed until some close; raise the limit (ulimit -n, "
                "systemd's LimitNOFILE=)",
                os.strerror(exc.errno),
                len(self.connections),
                soft,
            )

    def drain(self) -> None:
        """Keep accepting and serving, but end every connection after its next response
        (``Connection: close``): clients reconnect, to another node once a balancer has seen
        this one is not ready."""
        self.closing = True

    async def stop(self, grace: float) -> None:
        """Stop accepting; let requests in flight finish within ``grace`` seconds; close all."""
        self.closing = True
        self._idle.clear()  # (it may have been set while draining)
        self.tls_renewal.stop()
        servers = self._servers + self.tls_renewal.servers
        for server in servers:
            server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if not self.connections:
            self._idle.set()
        if self.connections:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "%d connection(s) still busy after %.0f s: closing them",
                    len(self.connections),
                    grace,
                )
                for conn in list(self.connections):
                    conn.force_close()
        for server in servers:
            await server.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.access_log:
            accesslog.flush()


_PROTOCOLS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0", "2.0": b"HTTP/2.0"}
