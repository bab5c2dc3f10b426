"""The "pool" of a backend that Corral does not start: a server already running at an address
(Zoo's ``transport="tcp.service"``, e.g. php-fpm on 127.0.0.1:9000).

Same contract as ``Pool`` for the front (``acquire`` -> ``Lease``, ``release``, ``close``): a
request gets a kept-alive connection when one is idle, else a new one. At most
``settings.max_instances`` connections are in use at once (0: as many as the CPU count, like
the pool), more requests wait in a FIFO queue bounded by ``queue_size`` and ``queue_timeout``.
A server that cannot be reached makes that request a 503 (``PoolUnavailable`` with the reason);
the next request tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from corral.backends import PooledUpstream
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
from corral.supervision.snapshot import PoolSnapshot

_log = logging.getLogger("corral.supervision.service")

#: Idle kept-alive connections kept per service at most.
MAX_IDLE = 64


class ServicePool:
    """Connections to one running server, leased one request at a time."""

    def __init__(
        self, name: str, address: Address, settings: PoolSettings, connect: Connect
    ) -> None:
        self.name = name
        self.address = address
        self.settings = settings
        self._connect = connect
        self._limit = settings.limits().max_instances
        self._slots = asyncio.Semaphore(self._limit)
        self._waiting = 0
        self._idle: list[PooledUpstream] = []
        self._leases: set[Lease] = set()
        self._closing = False
        self._drained: asyncio.Event | None = None
        #: Connections that failed, and the last reason (``snapshot``).
        self._failures = 0
        self._last_error: str | None = None

    @property
    def where(self) -> str:
        address = self.address
        return address if isinstance(address, str) else f"{address[0]}:{address[1]}"

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
            conn = self._take_idle()
            if conn is None:
                try:
                    async with asyncio.timeout(limit):
                        conn = await self._connect(self.address)
                except (OSError, TimeoutError) as exc:
                    reason = f"cannot connect to {self.where}: {_describe(exc)}"
                    _log.error("%s: %s", self.name, reason)
                    self._failures += 1
                    self._last_error = reason
                    raise PoolUnavailable(self.name, reason) from None
        except BaseException:
            self._slots.release()
            raise
        lease = Lease(conn, conn, 0, 0)
        self._leases.add(lease)
        return lease

    def snapshot(self) -> PoolSnapshot:
        """What ``Pool.snapshot`` shows, for a server Corral does not start: no workers; its
        connections in use, the requests waiting for one, the failed connections."""
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
        self._leases.discard(lease)
        self._slots.release()
        conn = lease.pooled
        if reusable and not self._closing and not conn.is_closed and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()
            if conn.closed_by_peer:
                # The server closed a connection: the other idle ones are as old and as likely
                # closed (a keep-alive timeout), so a request sent again gets a fresh one.
                self._close_idle()
        if self._drained is not None and not self._leases:
            self._drained.set()

    def _take_idle(self) -> PooledUpstream | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed:
                return conn
        return None

    def _close_idle(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def close(self, grace: float) -> None:
        """Refuse new requests, wait up to ``grace`` s for those in flight, close connections."""
        self._closing = True
        self._close_idle()
        if self._leases:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._drained.wait()
        for lease in list(self._leases):
            lease.conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
