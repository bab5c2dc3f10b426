"""The supervisor's side of worker slots shared by front processes (``front_processes`` > 1).

The supervisor serves no HTTP: its pools lease slots (one worker connection each) to the
``SlotBroker`` on behalf of the fronts, which open the connections themselves. Its pools are
built with ``slot_connect`` instead of the backend's client: a "connection" from it is a
``SlotUpstream``, a placeholder that only marks a worker slot as taken, so the pool's own
machinery (its queue, least-busy choice, scaling, draining, ``max_instances``) works unchanged
and sees the sum of every front's demand as its queue.

For each front and application the broker keeps the front's *want* (its requests waiting for
a slot: ``Demand``) and that many asks in the pool's queue (each a small task awaiting the
route's lease source: the pool, or its deploy gate while a deploy script runs). An answered
ask becomes a ``Grant`` to the front; a ``PoolError`` becomes a ``Refuse`` (the front answers
its waiting requests with the same 503 as a single-process host). Every
``shares.REBALANCE_INTERVAL`` while a front holds slots it also revokes the slots of workers no
longer ready (a rolling restart, a recycle, a crash: their requests end, then the worker
stops) and asks ``shares.limits`` whether a front holds more than its share while another
waits (``Limit``).

A front that dies gives every slot back at once; its asks are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from corral.backends import PooledUpstream, ResponseSink, Upstream
from corral.protocol.frontlink import (
    ErrorInfo,
    Grant,
    Limit,
    Message,
    Refuse,
    Revoke,
)
from corral.supervision.launch import Address
from corral.supervision.lease import AcquireTimeout, Lease, LeaseSource, PoolError
from corral.supervision.shares import NO_LIMIT, REBALANCE_INTERVAL, FrontNeed, limits


class SlotUpstream:
    """A worker slot as the supervisor's pool holds it: no connection (the front opens its
    own); closing it only marks it closed. ``lost``: the front saw the worker close it."""

    __slots__ = ("_closed", "lost")

    def __init__(self) -> None:
        self._closed = False
        self.lost = False

    def begin(
        self, static: bytes, params: list[tuple[bytes, bytes]], sink: ResponseSink, has_body: int
    ) -> None:
        raise RuntimeError("a worker slot carries no request in the supervisor")

    def send_body(self, data: bytes) -> None:
        """(No request here.)"""

    def end_body(self) -> None:
        """(No request here.)"""

    def pause_reading(self) -> None:
        """(No request here.)"""

    def resume_reading(self) -> None:
        """(No request here.)"""

    def abort(self) -> None:
        self._closed = True

    def close(self) -> None:
        self._closed = True

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def closed_by_peer(self) -> bool:
        return self.lost

    @property
    def in_flight(self) -> int:
        return 0

    def follower(self, depth: int, max_running: float) -> Upstream | None:
        return None

    def withdraw_stuck(self, limit: float) -> int:
        return 0

    def when_drained(self, callback: Callable[[PooledUpstream], None]) -> None:
        """(Never queued on.)"""


async def slot_connect(address: Address) -> PooledUpstream:
    """The supervisor's pools' ``Connect``: a slot, not a connection."""
    return SlotUpstream()


class FrontPort(Protocol):
    """How the broker speaks to one front."""

    def send(self, message: Message) -> None: ...


@dataclass(eq=False)
class BrokeredApp:
    """One application whose slots the broker hands out."""

    ident: int
    #: The route's lease source now (the pool, or its deploy gate).
    source: Callable[[], LeaseSource]
    #: Its ready workers (their slots may be used): id -> address.
    ready: Callable[[], dict[int, Address]]
    #: The most slots it can ever have (max_instances x a worker's connections): a front
    #: asks for no more at once, however many of its requests wait.
    most: Callable[[], int] = lambda: 1 << 30
    #: ``most()``, as of the last look.
    cap: int = 1 << 30


@dataclass(eq=False)
class _Share:
    """One front's part of one application."""

    want: int = 0
    asks: set[asyncio.Task[None]] = field(default_factory=set)
    #: Slot id -> (the source it came from, its lease, revoked).
    slots: dict[int, tuple[LeaseSource, Lease]] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)
    limit: int = NO_LIMIT


class SlotBroker:
    """Every application's slots among every front (see the module's docstring)."""

    def __init__(self, describe: Callable[[PoolError], ErrorInfo]) -> None:
        """``describe``: a ``PoolError`` for the link (the deploy gate's errors are known
        above this layer)."""
        self._describe = describe
        #: (app id, worker id) -> its address, from the last look at the ready workers.
        self._addresses: dict[tuple[int, int], Address] = {}
        self.apps: dict[int, BrokeredApp] = {}
        self._ports: dict[int, FrontPort] = {}
        self._shares: dict[tuple[int, int], _Share] = {}
        self._next_slot = 1
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    # -------------------------------------------------------------------------- membership

    def add_app(self, app: BrokeredApp) -> None:
        app.cap = app.most()
        self.apps[app.ident] = app

    def remove_app(self, ident: int) -> None:
        """An application the routing no longer reaches: no more asks for it (the slots out
        come back as their requests end)."""
        self.apps.pop(ident, None)
        for (_, app), share in self._shares.items():
            if app == ident:
                share.want = 0
                for task in share.asks:
                    task.cancel()

    def add_front(self, front: int, port: FrontPort) -> None:
        self._ports[front] = port

    def front_gone(self, front: int) -> None:
        """A front died or stopped: its asks are cancelled, its slots given back."""
        self._ports.pop(front, None)
        for key in [key for key in self._shares if key[0] == front]:
            share = self._shares.pop(key)
            for task in share.asks:
                task.cancel()
            for source, lease in share.slots.values():
                source.release(lease, False)

    def slots_held(self, front: int) -> int:
        return sum(len(s.slots) for (f, _), s in self._shares.items() if f == front)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for front in list(self._ports):
            self.front_gone(front)

    # -------------------------------------------------------------------------- messages

    def _share(self, front: int, app: int) -> _Share:
        share = self._shares.get((front, app))
        if share is None:
            share = self._shares[(front, app)] = _Share()
        return share

    def demand(self, front: int, app: int, want: int) -> None:
        """A front's requests waiting for ``app``'s slots now."""
        if front not in self._ports or app not in self.apps or self.closed:
            return
        share = self._share(front, app)
        share.want = max(want, 0)
        self._fill_asks(front, app, share)
        self._schedule()

    def _fill_asks(self, front: int, app: int, share: _Share) -> None:
        """As many asks in the pool's queue as the front wants slots, within its limit (a
        front limited to its share asks for no more: the slots others give back are theirs)."""
        wanted = share.want
        app_ = self.apps.get(app)
        if app_ is not None:
            wanted = min(wanted, app_.cap)
        if share.limit != NO_LIMIT:
            wanted = min(wanted, max(share.limit - len(share.slots), 0))
        loop = asyncio.get_running_loop()
        while len(share.asks) < wanted:
            task = loop.create_task(self._ask(front, app, share))
            share.asks.add(task)
            task.add_done_callback(share.asks.discard)
        surplus = len(share.asks) - wanted
        for task in list(share.asks)[:surplus] if surplus > 0 else ():
            task.cancel()
            share.asks.discard(task)

    def give(self, front: int, app: int, slot: int, lost: bool, stuck: bool = False) -> None:
        """A front gives a slot back (``lost``: its worker closed the connection; ``stuck``:
        its request got no answer in time, and the pool retires the worker as hung)."""
        share = self._shares.get((front, app))
        if share is None:
            return
        held = share.slots.pop(slot, None)
        share.revoked.discard(slot)
        if held is None:
            return
        source, lease = held
        upstream = lease.pooled
        if lost and isinstance(upstream, SlotUpstream):
            upstream.lost = True
        lease.stuck = stuck
        source.release(lease, not lost and not stuck)

    async def _ask(self, front: int, ident: int, share: _Share) -> None:
        while True:
            app = self.apps.get(ident)
            port = self._ports.get(front)
            if app is None or port is None:
                return
            source = app.source()
            try:
                lease = await source.acquire()
            except AcquireTimeout:
                continue  # (the front times its requests itself)
            except PoolError as exc:
                share.want = 0
                for task in share.asks:
                    if task is not asyncio.current_task():
                        task.cancel()
                port.send(Refuse(ident, self._describe(exc)))
                return
            if self._ports.get(front) is not port or ident not in self.apps:
                source.release(lease, True)
                return
            # No request timeout on a slot: it serves many requests, each timed by its front.
            lease.open_ended = True
            slot = self._next_slot
            self._next_slot += 1
            share.slots[slot] = (source, lease)
            share.want = max(share.want - 1, 0)
            address = self._address(app, lease)
            port.send(Grant(ident, slot, lease.worker_id, lease.worker_pid, address))
            self._schedule()
            return

    def _address(self, app: BrokeredApp, lease: Lease) -> Address:
        address = self._addresses.get((app.ident, lease.worker_id))
        if address is None:
            self._note(app, app.ready())
            address = self._addresses.get((app.ident, lease.worker_id), "")
        return address

    def _note(self, app: BrokeredApp, ready: dict[int, Address]) -> None:
        ident = app.ident
        for key in [key for key in self._addresses if key[0] == ident and key[1] not in ready]:
            del self._addresses[key]
        for worker, address in ready.items():
            self._addresses[(app.ident, worker)] = address

    # -------------------------------------------------------------------------- rebalancing

    def _schedule(self) -> None:
        if self._timer is None and not self.closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(REBALANCE_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._timer = None
        busy = False
        for ident, app in list(self.apps.items()):
            fronts = {key: s for key, s in self._shares.items() if key[1] == ident}
            if not any(s.slots or s.want for s in fronts.values()):
                continue
            busy = True
            self.rebalance(app, fronts)
        if busy:
            self._schedule()

    def rebalance(self, app: BrokeredApp, fronts: dict[tuple[int, int], _Share]) -> None:
        """Revoke the slots of workers no longer ready; limit fronts above their share."""
        ready = app.ready()
        app.cap = app.most()
        self._note(app, ready)
        needs: dict[int, FrontNeed] = {}
        for (front, _), share in fronts.items():
            port = self._ports.get(front)
            if port is None:
                continue
            for slot, (_, lease) in share.slots.items():
                if lease.worker_id not in ready and slot not in share.revoked:
                    share.revoked.add(slot)
                    port.send(Revoke(app.ident, slot))
            needs[front] = FrontNeed(len(share.slots) - len(share.revoked), share.want)
        for front, keep in limits(needs).items():
            share = fronts[(front, app.ident)]
            if keep != share.limit:
                share.limit = keep
                port = self._ports.get(front)
                if port is not None:
                    port.send(Limit(app.ident, keep))
                self._fill_asks(front, app.ident, share)
