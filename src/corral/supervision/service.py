"""The "pool" of a backend that Corral does not start: one or several servers already running
(Zoo's ``transport="tcp.service"``, e.g. php-fpm on 127.0.0.1:9000, or other Corral nodes).

Same contract as ``Pool`` for the front (``acquire`` -> ``Lease``, ``release``, ``close``): a
request gets a kept-alive connection to the server chosen for it when one is idle, else a new
one. Which server, and when one is down or back, is ``balance.Balancer``'s policy (least
outstanding requests, slow start); this module is the mechanism: connections, the outcome of
each request (``_Watch``: a connection broken during the request, or a 5xx to an idempotent request,
counts as a failure; one the server closed before the request reached it does not), and
the active checks (``checks``) every ``health_interval`` seconds.

A server that refuses the connection is taken down and the request goes to another at once (it
never reached the refusing one); when none is left the request is a 503 (``PoolUnavailable``).
At most ``settings.max_instances`` connections per server are in use at once (0: as many as the
CPU count, like the pool), more requests wait in a FIFO queue bounded by ``queue_size`` and
``queue_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from corral.backends import (
    BackendClosed,
    BackendError,
    BackendNotReached,
    BackendProtocolError,
    PooledUpstream,
    ResponseSink,
)
from corral.supervision.balance import Balancer, BalanceSettings, ServerView
from corral.supervision.checks import Check
from corral.supervision.launch import Address
from corral.supervision.lease import (
    AcquireTimeout,
    Connect,
    Deliver,
    Lease,
    PoolClosed,
    PoolOverloaded,
    PoolUnavailable,
    Waiter,
)
from corral.supervision.settings import PoolSettings
from corral.supervision.snapshot import PoolSnapshot, ServerSnapshot

_log = logging.getLogger("corral.supervision.service")

#: Idle kept-alive connections kept per server at most.
MAX_IDLE = 64
#: Methods whose 5xx answer counts against the server (a POST's 5xx may be the app's own answer
#: to what it was sent, and is not sent again anyway).
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


def where(address: Address) -> str:
    return f"unix:{address}" if isinstance(address, str) else f"{address[0]}:{address[1]}"


class ServicePool:
    """Connections to one or several running servers, leased one request at a time."""

    def __init__(
        self,
        name: str,
        addresses: tuple[Address, ...],
        settings: PoolSettings,
        connect: Connect,
        *,
        balance: BalanceSettings | None = None,
        check: Check | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not addresses:
            raise ValueError("a service needs at least one address")
        self.name = name
        self.addresses = addresses
        self.settings = settings
        self._connect = connect
        self._clock = clock
        self._check = check
        self._check_interval = settings.health_interval
        self._balancer = Balancer(len(addresses), balance or BalanceSettings())
        self._per_server = settings.limits().max_instances
        self._limit = self._per_server * len(addresses)
        self._slots = asyncio.Semaphore(self._limit)
        self._waiting = 0
        self._idle: list[list[PooledUpstream]] = [[] for _ in addresses]
        self._leases: dict[Lease, int] = {}
        self._closing = False
        self._drained: asyncio.Event | None = None
        self._checker: asyncio.Task[None] | None = None
        #: Connections that failed, and the last reason (``snapshot``).
        self._failures = 0
        self._last_error: str | None = None

    @property
    def where(self) -> str:
        return ", ".join(where(address) for address in self.addresses)

    def start(self) -> None:
        """Begin the active checks (when the engine has some): call from the event loop."""
        if self._check is not None and self._checker is None and not self._closing:
            self._checker = asyncio.get_running_loop().create_task(
                self._check_loop(), name=f"checks {self.name}"
            )

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        if self._closing:
            raise PoolClosed(self.name)
        limit = self.settings.queue_timeout if timeout is None else timeout
        if self._slots.locked():
            if self._waiting >= self.settings.queue_size:
                raise PoolOverloaded(self.name, self.settings.queue_size)
            self._waiting += 1
            try:
                async with asyncio.timeout(limit):
                    await self._slots.acquire()
            except TimeoutError:
                raise AcquireTimeout(self.name, limit) from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            index, conn = await self._open(limit)
        except BaseException:
            self._slots.release()
            raise
        lease = Lease(_Watch(conn, self, index), conn, 0, index)
        self._leases[lease] = index
        return lease

    async def _open(self, limit: float) -> tuple[int, PooledUpstream]:
        """A connection to the server chosen for the request: an idle one, or a new one; a
        server that cannot be reached is taken down and the next one tried."""
        tried: set[int] = set()
        reasons: list[str] = []
        while True:
            index = self._balancer.pick(self._clock(), frozenset(tried))
            if index is None:
                reason = "; ".join(reasons) or f"every server is down ({self._down_reasons()})"
                raise PoolUnavailable(self.name, reason)
            conn = self._take_idle(index)
            if conn is not None:
                return index, conn
            address = self.addresses[index]
            try:
                async with asyncio.timeout(limit):
                    return index, await self._connect(address)
            except (OSError, TimeoutError) as exc:
                reason = f"cannot connect to {where(address)}: {_describe(exc)}"
                _log.error("%s: %s", self.name, reason)
                self._failures += 1
                self._last_error = reason
                self._balancer.failed(index, self._clock(), reason, definite=True)
                self._balancer.done(index)
                self._close_idle(index)
                tried.add(index)
                reasons.append(reason)
            except BaseException:
                self._balancer.done(index)
                raise

    def _down_reasons(self) -> str:
        views = self._balancer.view(self._clock())
        return "; ".join(
            f"{where(address)}: {view.last_error or 'down'}"
            for address, view in zip(self.addresses, views, strict=True)
        )

    def outcome(self, index: int, error: str | None) -> None:
        """What became of a request on server ``index`` (``_Watch``): None when it was
        answered, else why it failed."""
        now = self._clock()
        if error is None:
            self._balancer.succeeded(index, now)
            return
        was_up = self._balancer.is_up(index)
        self._balancer.failed(index, now, error)
        if was_up and not self._balancer.is_up(index):
            _log.error("%s: %s taken out: %s", self.name, where(self.addresses[index]), error)
            self._close_idle(index)

    def servers(self) -> tuple[ServerSnapshot, ...]:
        """Each server's state, as ``snapshot`` shows it."""
        views = self._balancer.view(self._clock())
        return tuple(
            _server_snapshot(address, view)
            for address, view in zip(self.addresses, views, strict=True)
        )

    def snapshot(self) -> PoolSnapshot:
        """What ``Pool.snapshot`` shows, for servers Corral does not start: no workers; its
        connections in use, the requests waiting for one, the failed connections, and each
        server (``servers``)."""
        return PoolSnapshot(
            app=self.name,
            workers=(),
            waiting=self._waiting,
            in_flight=len(self._leases),
            start_failures=0,
            last_error=self._last_error,
            closing=self._closing,
            min_instances=0,
            max_instances=self._limit,
            state="closing" if self._closing else "running",
            queue_length=self._waiting,
            failed_starts=self._failures,
            servers=self.servers(),
        )

    def try_acquire(self) -> Lease | None:
        """No lease without awaiting here (see ``Pool.try_acquire``): always ``acquire()``."""
        return None

    def lease_or_wait(
        self, deliver: Deliver, queueable: bool = False, first: bool = False
    ) -> Lease | Waiter | None:
        """No callback leasing here: the front always awaits ``acquire()`` (None)."""
        if self._closing:
            raise PoolClosed(self.name)
        return None

    def cancel_wait(self, waiter: Waiter) -> None:
        """(Nothing waits by callback here.)"""

    def release(self, lease: Lease, reusable: bool) -> None:
        if lease.released:
            return
        lease.released = True
        index = self._leases.pop(lease, 0)
        self._balancer.done(index)
        self._slots.release()
        conn = lease.pooled
        idle = self._idle[index]
        if (
            reusable
            and not self._closing
            and not conn.is_closed
            and len(idle) < MAX_IDLE
            and self._balancer.is_up(index)
        ):
            idle.append(conn)
        else:
            conn.close()
            if conn.closed_by_peer:
                # The server closed a connection: the other idle ones are as old and as likely
                # closed (a keep-alive timeout), so a request sent again gets a fresh one.
                self._close_idle(index)
        if self._drained is not None and not self._leases:
            self._drained.set()

    def _take_idle(self, index: int) -> PooledUpstream | None:
        idle = self._idle[index]
        while idle:
            conn = idle.pop()
            if not conn.is_closed:
                return conn
        return None

    def _close_idle(self, index: int | None = None) -> None:
        lists = self._idle if index is None else [self._idle[index]]
        for idle in lists:
            for conn in idle:
                conn.close()
            idle.clear()

    async def _check_loop(self) -> None:
        check = self._check
        assert check is not None
        while not self._closing:
            await asyncio.gather(
                *(self._check_one(check, index) for index in range(len(self.addresses)))
            )
            await asyncio.sleep(self._check_interval)

    async def _check_one(self, check: Check, index: int) -> None:
        address = self.addresses[index]
        was_up = self._balancer.is_up(index)
        try:
            await check(address, max(0.5, min(self._check_interval, 5.0)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # (any failure of the check is the server's)
            reason = f"health check: {_describe(exc)}"
            self._balancer.checked(index, False, self._clock(), reason)
            if was_up:
                _log.error("%s: %s taken out: %s", self.name, where(address), reason)
                self._close_idle(index)
            return
        self._balancer.checked(index, True, self._clock())
        if not was_up and self._balancer.is_up(index):
            _log.warning("%s: %s is back (health check passed)", self.name, where(address))

    async def close(self, grace: float) -> None:
        """Refuse new requests, wait up to ``grace`` s for those in flight, close connections."""
        self._closing = True
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
        self._close_idle()
        if self._leases:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._drained.wait()
        for lease in list(self._leases):
            lease.conn.close()


def _server_snapshot(address: Address, view: ServerView) -> ServerSnapshot:
    return ServerSnapshot(
        address=where(address),
        state=view.state.value,
        in_flight=view.in_flight,
        requests=view.requests,
        failures=view.failures,
        weight=view.weight,
        last_error=view.last_error,
    )


class _Watch:
    """The ``Upstream`` the front drives for one request to a service: the pooled connection,
    with the response watched (``_WatchedSink``) so that the pool learns the request's outcome."""

    def __init__(self, conn: PooledUpstream, pool: ServicePool, index: int) -> None:
        self._conn = conn
        self._pool = pool
        self._index = index

    def begin(
        self,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        sink: ResponseSink,
        has_body: int,
    ) -> None:
        method = _method(static, params)
        watched = _WatchedSink(sink, self._pool, self._index, method in _IDEMPOTENT)
        self._conn.begin(static, params, watched, has_body)

    def send_body(self, data: bytes) -> None:
        self._conn.send_body(data)

    def end_body(self) -> None:
        self._conn.end_body()

    def pause_reading(self) -> None:
        self._conn.pause_reading()

    def resume_reading(self) -> None:
        self._conn.resume_reading()

    def abort(self) -> None:
        self._conn.abort()

    def close(self) -> None:
        self._conn.close()

    @property
    def is_closed(self) -> bool:
        return self._conn.is_closed


def _method(static: bytes, params: list[tuple[bytes, bytes]]) -> bytes:
    """The request's method: an HTTP request head starts with it; FastCGI carries it in
    REQUEST_METHOD (per request)."""
    for key, value in params:
        if key == b"REQUEST_METHOD":
            return value
    head, space, _ = static[:16].partition(b" ")
    return head if space else b""


class _WatchedSink:
    """Passes one response on to the front, telling the pool how the request went: answered
    (success), a 5xx to an idempotent request or a broken connection (failure)."""

    def __init__(self, sink: ResponseSink, pool: ServicePool, index: int, idempotent: bool) -> None:
        self._sink = sink
        self._pool = pool
        self._index = index
        self._idempotent = idempotent

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if status >= 500 and self._idempotent:
            self._pool.outcome(self._index, f"answered {status} to an idempotent request")
        else:
            self._pool.outcome(self._index, None)
        self._sink.backend_head(status, reason, headers)

    def backend_body(self, data: bytes | memoryview) -> None:
        self._sink.backend_body(data)

    def backend_end(self, reusable: bool) -> None:
        self._sink.backend_end(reusable)

    def backend_error(self, exc: BackendError) -> None:
        # A connection the server closed before the request reached it (its keep-alive
        # timeout) is not the server's failure: the front sends the request again.
        if isinstance(exc, BackendClosed | BackendProtocolError) and not isinstance(
            exc, BackendNotReached
        ):
            self._pool.outcome(self._index, str(exc) or type(exc).__name__)
        self._sink.backend_error(exc)

    def backend_flush(self) -> None:
        self._sink.backend_flush()

    def backend_pause_writing(self) -> None:
        self._sink.backend_pause_writing()

    def backend_resume_writing(self) -> None:
        self._sink.backend_resume_writing()

    def backend_started(self) -> None:
        self._sink.backend_started()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
