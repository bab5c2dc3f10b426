"""The end of a request, whatever its protocol: counted (its application's ``RequestStats``,
else the server's unrouted ones) and, with the access log on, written as one line."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from corral.front.context import FrontContext
from corral.protocol.http1.events import Request

if TYPE_CHECKING:
    from corral.front.exchange import Exchange


def record_request(
    server: FrontContext,
    exchange: Exchange,
    request: Request,
    status: int,
    sent: int,
    body_received: int,
    started: float,
    peer: str,
    access: bool,
) -> None:
    """A request ended (HTTP/1.1 or an HTTP/2 stream): count it (its application's
    ``RequestStats``, else the server's unrouted ones) and, with ``access``, write its
    access-log line. ``peer`` is the client's address as the connection trusts it."""
    route = exchange.route
    stats = route.stats if route is not None else server.stats.unrouted
    now = perf_counter()
    duration = now - started
    stats.record(status, duration, sent, body_received)
    if server.access_log and access:
        began = exchange.upstream_start
        server.access_write(
            server.access_format(
                peer,
                request,
                status,
                sent,
                exchange.referer,
                exchange.agent,
                "" if route is None else route.name,
                duration,
                None if not began else (exchange.upstream_end or now) - began,
            )
        )
