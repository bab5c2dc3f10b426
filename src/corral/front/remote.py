"""A front process's lease source for an application whose workers the supervisor runs
(``front_processes`` > 1): ``RemotePool``.

The supervisor grants the front *slots* (one connection's worth of a worker each: its address,
id and pid) over the link (``protocol.frontlink``); the front leases only the slots it holds,
and connects to the worker itself, so a request costs no message to the supervisor while the
front holds slots. A request that finds no free slot waits in the front's FIFO queue, and the
front tells the supervisor how many wait (``Demand``, at most once per loop turn); the
supervisor's pool queues that many asks and grants slots as workers free up or start
(``supervision.broker``).

A slot that ends its request goes to the next waiting request; without one it stays idle
``SLOT_HOLD`` seconds (the next request usually comes sooner), then goes back
(``Give``), with its connection closed (a worker thread serves one connection at a time: a
connection kept open would hold the slot). A slot goes back at once when the supervisor revoked
it (its worker drains: a rolling restart, a recycle) or when the front holds more than its
``Limit`` (another front waits), or when its worker closed the connection (``lost``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable

import psutil  # type: ignore[import-untyped]

from corral.backends import PooledUpstream
from corral.protocol.frontlink import Demand, ErrorInfo, Give, Message
from corral.supervision.launch import Address
from corral.supervision.lease import (
    AcquireTimeout,
    Connect,
    Deliver,
    Lease,
    PoolClosed,
    PoolError,
    PoolOverloaded,
    PoolUnavailable,
    Waiter,
)
from corral.supervision.shares import DEMAND_INTERVAL, NO_LIMIT, SLOT_HOLD


def worker_gone(pid: int) -> bool:
    """Whether a worker has died, though the supervisor may not have reaped it yet."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError):
        return False


_log = logging.getLogger("corral.front")

#: How often requests are checked against the request timeout (seconds), as the pool does.
SWEEP_INTERVAL = 0.5


class Slot:
    """One worker slot the front holds."""

    __slots__ = ("address", "conn", "ident", "idle_at", "pid", "revoked", "worker_id")

    def __init__(self, ident: int, worker_id: int, pid: int, address: Address) -> None:
        self.ident = ident
        self.worker_id = worker_id
        self.pid = pid
        self.address = address
        #: Its connection to the worker, kept alive between requests (None: connect first).
        self.conn: PooledUpstream | None = None
        self.revoked = False
        self.idle_at = 0.0


class RemotePool:
    """A ``LeaseSource`` over the slots the supervisor grants this front (see the module)."""

    def __init__(
        self,
        name: str,
        app: int,
        connect: Connect,
        send: Callable[[Message], None],
        *,
        queue_size: int,
        queue_timeout: float,
        errors: Callable[[str, ErrorInfo], PoolError],
        loop: asyncio.AbstractEventLoop,
        request_timeout: float | None = None,
    ) -> None:
        """
        Args:
            app: the application's id on the link.
            send: writes a message to the supervisor.
            errors: an ``ErrorInfo`` from the supervisor as the exception to answer with.
            request_timeout: the app's WORKER_REQUEST_TIMEOUT, enforced here (the supervisor
                sees slots, not requests): a request past it is cut (504) and its slot goes
                back marked stuck, so that the supervisor replaces the worker.
        """
        self.name = name
        self.app = app
        self._connect = connect
        self._send = send
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self._errors = errors
        self._loop = loop
        self.slots: dict[int, Slot] = {}
        self._free: list[Slot] = []
        self._waiters: collections.deque[Waiter] = collections.deque()
        self._leased: dict[Lease, Slot] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        #: The most slots to hold (``Limit``); NO_LIMIT: as many as granted.
        self.keep = NO_LIMIT
        self.closed = False
        self._hold: asyncio.TimerHandle | None = None
        self.request_timeout = request_timeout
        self._sweep: asyncio.TimerHandle | None = None
        self._want_sent = 0
        self._sent_at = -1e9
        self._want_due = False

    # ---------------------------------------------------------------- LeaseSource

    def lease_or_wait(
        self, deliver: Deliver, queueable: bool = False, first: bool = False
    ) -> Lease | Waiter | None:
        if self.closed:
            raise PoolClosed(self.name)
        if not self._waiters and self._free:
            slot = self._free.pop()
            conn = slot.conn
            if conn is not None and not conn.is_closed:
                return self._lease(slot, conn)
            self._free.append(slot)
            return None  # acquire() connects
        if len(self._waiters) >= self.queue_size:
            raise PoolOverloaded(self.name, self.queue_size)
        waiter: Waiter = self._loop.create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        waiter.add_done_callback(functools.partial(self._waited, deliver))
        self._demand_changed()
        return waiter

    def cancel_wait(self, waiter: Waiter) -> None:
        if waiter.done():
            return
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        waiter.cancel()
        self._demand_changed()

    def try_acquire(self) -> Lease | None:
        if self.closed or self._waiters or not self._free:
            return None
        slot = self._free[-1]
        conn = slot.conn
        if conn is None or conn.is_closed:
            return None
        self._free.pop()
        return self._lease(slot, conn)

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        if self.closed:
            raise PoolClosed(self.name)
        limit = self.queue_timeout if timeout is None else timeout
        deadline = self._loop.time() + limit
        while True:
            slot = self._free.pop() if self._free and not self._waiters else None
            if slot is None:
                slot = await self._wait(deadline, limit)
            conn = slot.conn
            if conn is None or conn.is_closed:
                slot.conn = None
                try:
                    async with asyncio.timeout_at(deadline):
                        conn = await self._connect(slot.address)
                except OSError:
                    self._give_back(slot, lost=True)
                    continue
                except TimeoutError:
                    self._slot_free(slot)
                    raise AcquireTimeout(self.name, limit) from None
                except BaseException:
                    self._slot_free(slot)
                    raise
            if self.closed:
                conn.close()
                self._give_back(slot)
                raise PoolClosed(self.name)
            return self._lease(slot, conn)

    def release(self, lease: Lease, reusable: bool) -> None:
        if lease.released:
            return
        lease.released = True
        slot = self._leased.pop(lease, None)
        conn = lease.pooled
        if slot is None:
            conn.close()
            return
        lost = False
        if reusable and not conn.is_closed:
            slot.conn = conn
        else:
            lost = conn.closed_by_peer
            conn.close()
            slot.conn = None
            if lost and worker_gone(slot.pid):
                # It died (a request it closed on may have killed it: not one to send again,
                # see Exchange's _resend), as a single host's pool marks it.
                lease.lost = True
        if lease.stuck:  # (the front's 504: the supervisor retires the worker as hung)
            self._give_back(slot, lost, stuck=True)
            return
        self._slot_free(slot, lost)

    # ---------------------------------------------------------------- waiting

    async def _wait(self, deadline: float, limit: float) -> Slot:
        if len(self._waiters) >= self.queue_size:
            raise PoolOverloaded(self.name, self.queue_size)
        waiter: Waiter = self._loop.create_future()
        self._waiters.append(waiter)
        self._demand_changed()
        try:
            async with asyncio.timeout_at(deadline):
                got = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if isinstance(handed, Slot):
                    self._slot_free(handed)
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
                waiter.cancel()
                self._demand_changed()
            if isinstance(exc, TimeoutError):
                raise AcquireTimeout(self.name, limit) from None
            raise
        assert isinstance(got, Slot)
        return got

    def _waited(self, deliver: Deliver, waiter: Waiter) -> None:
        if waiter.cancelled():
            return
        error = waiter.exception()
        if error is not None:
            deliver(
                error if isinstance(error, PoolError) else PoolUnavailable(self.name, str(error))
            )
            return
        slot = waiter.result()
        assert isinstance(slot, Slot)
        conn = slot.conn
        if conn is not None and not conn.is_closed and not self.closed:
            deliver(self._lease(slot, conn))
            return
        task = self._loop.create_task(self._connect_for(slot, deliver))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_for(self, slot: Slot, deliver: Deliver) -> None:
        """A waiter was handed a slot without a connection: open one, then deliver."""
        slot.conn = None
        try:
            async with asyncio.timeout(self.queue_timeout):
                conn = await self._connect(slot.address)
        except OSError:
            self._give_back(slot, lost=True)
            deliver(None)  # the long way (acquire), with another slot
            return
        except TimeoutError:
            self._slot_free(slot)
            deliver(AcquireTimeout(self.name, self.queue_timeout))
            return
        except BaseException:
            self._slot_free(slot)
            raise
        if self.closed:
            conn.close()
            self._give_back(slot)
            deliver(PoolClosed(self.name))
            return
        deliver(self._lease(slot, conn))

    def _lease(self, slot: Slot, conn: PooledUpstream) -> Lease:
        slot.conn = None
        lease = Lease(
            conn=conn,
            pooled=conn,
            worker_pid=slot.pid,
            worker_id=slot.worker_id,
            started=time.monotonic(),
        )
        self._leased[lease] = slot
        if self.request_timeout is not None and self._sweep is None:
            self._sweep = self._loop.call_later(SWEEP_INTERVAL, self._cut_late)
        return lease

    def _cut_late(self) -> None:
        """Every SWEEP_INTERVAL while requests run: cut those past the request timeout."""
        self._sweep = None
        timeout = self.request_timeout
        if timeout is None or not self._leased:
            return
        now = time.monotonic()
        for lease in list(self._leased):
            if (
                now - lease.started > timeout
                and not lease.queued
                and not lease.open_ended
                and not lease.timed_out
            ):
                _log.error(
                    "app %s: a request on worker pid %s ran %.1f s, past the request timeout "
                    "of %g s (WORKER_REQUEST_TIMEOUT): answered 504; the worker is replaced",
                    self.name,
                    lease.worker_pid,
                    now - lease.started,
                    timeout,
                    extra={"app": self.name, "pid": lease.worker_pid},
                )
                lease.timed_out = True
                lease.stuck = True  # (its slot goes back marked stuck: see release)
                lease.conn.close()
        if self._leased:
            self._sweep = self._loop.call_later(SWEEP_INTERVAL, self._cut_late)

    # ---------------------------------------------------------------- slots

    def _slot_free(self, slot: Slot, lost: bool = False) -> None:
        """A slot ends its request (or arrives): the next waiter's, else idle a while."""
        if (
            lost
            or slot.revoked
            or self.closed
            or slot.ident not in self.slots
            or (self.keep != NO_LIMIT and len(self.slots) > self.keep)
        ):
            self._give_back(slot, lost)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                self._demand_changed()
                return
        slot.idle_at = self._loop.time()
        self._free.append(slot)
        if self._hold is None:
            self._hold = self._loop.call_later(SLOT_HOLD, self._on_hold)

    def _give_back(self, slot: Slot, lost: bool = False, stuck: bool = False) -> None:
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        if self.slots.pop(slot.ident, None) is None:
            return
        try:
            self._free.remove(slot)
        except ValueError:
            pass
        self._send(Give(self.app, slot.ident, lost, stuck))

    def _on_hold(self) -> None:
        """Slots idle for SLOT_HOLD go back to the supervisor."""
        self._hold = None
        if not self._free:
            return
        due = self._loop.time() - SLOT_HOLD
        for slot in [s for s in self._free if s.idle_at <= due]:
            self._give_back(slot)
        if self._free:
            self._hold = self._loop.call_later(SLOT_HOLD, self._on_hold)

    def _demand_changed(self) -> None:
        """Tell the supervisor how many requests wait: at the end of this loop turn when one
        has to wait and none did (or the front holds no slot), else at most every
        ``DEMAND_INTERVAL`` (under load the count changes with every request)."""
        if self._want_due:
            return
        self._want_due = True
        now = self._loop.time()
        if self._want_sent <= 0 or not self.slots or now - self._sent_at >= DEMAND_INTERVAL:
            self._loop.call_soon(self._send_demand)
        else:
            self._loop.call_at(self._sent_at + DEMAND_INTERVAL, self._send_demand)

    def _send_demand(self) -> None:
        self._want_due = False
        want = sum(1 for waiter in self._waiters if not waiter.done())
        if want != self._want_sent and not self.closed:
            self._want_sent = want
            self._sent_at = self._loop.time()
            self._send(Demand(self.app, want))

    # ---------------------------------------------------------------- from the supervisor

    def granted(self, slot: int, worker_id: int, pid: int, address: Address) -> None:
        # The supervisor counted this grant against the demand it was told: so does the front
        # (else a demand equal to the last one sent would never be sent again).
        self._want_sent = max(self._want_sent - 1, 0)
        given = self.slots[slot] = Slot(slot, worker_id, pid, address)
        self._slot_free(given)

    def revoked(self, slot: int) -> None:
        held = self.slots.get(slot)
        if held is None:
            return
        held.revoked = True
        if held in self._free:
            self._give_back(held)

    def limited(self, keep: int) -> None:
        self.keep = keep
        if keep == NO_LIMIT:
            return
        while len(self.slots) > keep and self._free:
            self._give_back(self._free[0])

    def refused(self, error: ErrorInfo) -> None:
        """The supervisor's answer instead of slots: waiting requests get it (one, the latest,
        for a full queue: as a single host refuses the request that overflows)."""
        waiters = self._waiters
        if error.kind == "overloaded":
            while waiters:
                waiter = waiters.pop()
                if not waiter.done():
                    waiter.set_exception(self._errors(self.name, error))
                    break
        else:
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(self._errors(self.name, error))
        self._want_sent = -1  # (the supervisor forgot the demand: say it again)
        self._demand_changed()

    def retire(self) -> None:
        """The routing no longer reaches this application (a reload): every slot goes back
        once idle, and no more are asked for."""
        self.keep = 0
        for slot in list(self._free):
            self._give_back(slot)

    def close(self) -> None:
        """The link is gone: nothing more to lease."""
        self.closed = True
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed(self.name))
        for slot in list(self._free):
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None
        self._free.clear()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def leased(self) -> int:
        return len(self._leased)
