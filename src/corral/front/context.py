"""What a client connection needs of the server that accepted it, and what the server needs of a
connection: two small protocols, so that ``front.server`` (which makes connections) and
``front.http1`` (the connections) do not import each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from corral.front.accesslog import LineFormat
from corral.front.forward import TrustedProxies
from corral.front.parsing import ConnectionParser
from corral.front.peers import Peers
from corral.front.routes import AppRouter
from corral.front.settings import FrontSettings
from corral.front.stats import FrontStats


class FrontContext(Protocol):
    """The server's shared state as a connection (and its exchanges) read it: settings, the
    coarse clock, the Date field, the router, the access log. Timeouts are plain attributes
    (read on every request) rather than a chain through ``settings``."""

    settings: FrontSettings
    router: AppRouter
    loop: asyncio.AbstractEventLoop
    #: The clock of deadlines (``loop.time()`` at the last sweep: coarse on purpose).
    now: float
    #: The whole ``Date: ...`` field line, refreshed by the sweep.
    date_header: bytes
    #: The server's host name (SERVER_NAME for requests without a Host).
    host_bytes: bytes
    #: The server is stopping: no more kept-alive requests.
    closing: bool
    header_timeout: float
    keepalive_timeout: float
    body_timeout: float
    response_timeout: float
    tunnel_idle_timeout: float
    trusted_proxies: TrustedProxies
    #: The client and local addresses' facts, worked out once each (``front/peers.py``).
    peers: Peers
    #: Whether access-log lines are wanted, the way to write one, and their format
    #: (``front/accesslog.py``).
    access_log: bool
    access_write: Callable[[str], None]
    access_format: LineFormat
    #: What the server counts (``front/stats.py``).
    stats: FrontStats

    def new_parser(self) -> ConnectionParser:
        """A request parser with the server's current limits."""

    def port_bytes(self, port: int) -> bytes:
        """``port`` as ASCII digits (cached)."""

    def protocol_bytes(self, version: str) -> bytes:
        """SERVER_PROTOCOL for a request's HTTP version."""

    def is_loopback(self, host: str) -> bool:
        """Whether a client address is a loopback one (remembered per address: ``peers``)."""

    def connection_opened(self, conn: ClientConnection) -> None: ...

    def connection_closed(self, conn: ClientConnection) -> None: ...


class ClientConnection(Protocol):
    """What the server does with each of its client connections (whatever the protocol)."""

    @property
    def busy(self) -> bool:
        """A request is in flight."""

    def check_deadline(self, now: float) -> None:
        """The sweep: act on an expired deadline."""

    def shutdown(self) -> None:
        """The server is stopping: close when idle, else after the request in flight."""

    def force_close(self) -> None:
        """The grace period is over: drop the connection now."""
