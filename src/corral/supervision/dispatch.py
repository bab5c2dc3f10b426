"""Who gets which worker: ``Dispatcher`` keeps one pool's wait queue (a bounded FIFO of
waiters), hands the least busy ready worker to the request at its head, and keeps the leases
out. It also owns the pool's side of pipelining: when every worker is busy, a request without a
body may be queued on a busy worker's connection (``try_follow``, as deep as the pure
``scaling.queue_depth`` allows), and requests queued behind one that runs too long are sent
back to the queue (``withdraw_stuck``, every ``QUEUE_AHEAD_LIMIT`` s while any are queued).
Nothing else in ``corral.supervision`` knows about pipelining.

Its collaborators are injected (the clock, ``call_later``, and what to do when a worker goes
idle, drains or reaches its request limit), so that it can be driven directly in tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Final

from corral.backends import PooledUpstream, Upstream
from corral.supervision.lease import Lease, PoolError, Waiter, WorkerTraits
from corral.supervision.lifecycle import READY_STATES, WorkerState
from corral.supervision.load import SERVICE_WEIGHT, LoadMeter
from corral.supervision.scaling import QUEUE_AHEAD_LIMIT, queue_depth
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker

#: The most connections per worker the pool takes from a worker's FCGI_MAX_CONNS.
MAX_LEARNED_CAPACITY: Final = 1000

# _CALLED_ATTRIBUTES: the injected clocks are instance attributes, not methods; on Python 3.11
# ``self._clock()`` is a method call the interpreter cannot specialize for them (the generic
# attribute look-up each time), while reading the attribute and then calling it is cheap.

_IDLE: Final = WorkerState.IDLE
_BUSY: Final = WorkerState.BUSY
_PROBING: Final = WorkerState.PROBING
#: ``WorkerState.is_ready`` as lifecycle's set: on the request path a membership test in C,
#: not a property's Python call (three per request).
_READY: Final = READY_STATES


class Dispatcher:
    """One pool's queue, choice of worker, leases, and pipelining placement."""

    def __init__(
        self,
        settings: PoolSettings,
        workers: dict[int, Worker],
        load: LoadMeter,
        *,
        clock: Callable[[], float],
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle],
        look_again_at: Callable[[float], None],
        drained: Callable[[Worker], None],
        worn_out: Callable[[Worker], None],
        lost: Callable[[Worker], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            workers: the worker set's workers (shared, read here).
            load: where arrivals and service times are counted.
            clock: the loop's clock.
            call_later: the loop's ``call_later`` (the withdrawal timer).
            look_again_at: have the scaling policy look again at this time (a worker went
                idle: it may be stoppable once the idle timeout has passed).
            drained: a DRAINING or HUNG worker's last request ended.
            worn_out: a worker served its ``max_requests``.
            lost: a worker was seen dead (its connection closed by it, the process gone).
            monotonic: the clock of ``Lease.started``.
        """
        self.settings = settings
        self.workers = workers
        self._load = load
        self._clock = clock
        self._call_later = call_later
        self._look_again_at = look_again_at
        self._idle_timeout = settings.idle_timeout
        self.min_instances = settings.min_instances
        self._drained = drained
        self._worn_out = worn_out
        self._lost = lost
        self._monotonic = monotonic
        #: Connections one worker takes at once: connections_per_worker, or more when the
        #: workers advertise more (their probe's ``max_conns``).
        self.capacity = settings.connections_per_worker
        #: The most connections the elastic workers take (their FCGI_MAX_CONNS, when they
        #: start threads on demand: ``WorkerTraits.elastic``); 0: the workers are not elastic
        #: and ``capacity`` is fixed. Between 1 and this, ``capacity`` is the concurrency
        #: policy's (``adaptive.ConcurrencyTuner``).
        self.ceiling = 0
        #: No more connections are kept or requests queued on connections (the pool closes).
        self.closing = False
        self.waiters: collections.deque[Waiter] = collections.deque()
        self.wait_started: dict[Waiter, float] = {}
        #: Waiters that may be queued on a busy connection (requests without a body).
        self.queueable: set[Waiter] = set()
        self.leases: set[Lease] = set()
        #: Leases of requests queued on busy connections, and the withdrawal timer.
        self.followers = 0
        self._withdraw_timer: asyncio.TimerHandle | None = None
        #: Set when the last lease is released (``close`` waits for it).
        self.all_released: asyncio.Event | None = None

    def learn(self, worker: Worker, traits: WorkerTraits) -> bool:
        """A worker became ready and its probe said what it is: whether requests may be queued
        on its connections (``pipelining``), and how many connections it serves at once
        (``max_conns``), taken as the per-worker capacity when larger than
        connections_per_worker (never above MAX_LEARNED_CAPACITY). True when the capacity
        changed."""
        worker.pipelining = traits.pipelining
        if traits.max_conns is None:
            return False
        if traits.elastic:  # its threads follow the connections: the policy sets capacity
            self.ceiling = max(self.ceiling, min(traits.max_conns, MAX_LEARNED_CAPACITY))
            return False
        capacity = max(
            self.settings.connections_per_worker, min(traits.max_conns, MAX_LEARNED_CAPACITY)
        )
        if capacity == self.capacity:
            return False
        self.capacity = capacity
        return True

    def set_capacity(self, capacity: int) -> None:
        """The concurrency policy's connections per worker: more lets waiting requests go at
        once; fewer closes the idle connections above it (their worker threads end)."""
        self.capacity = capacity
        for worker in self.workers.values():
            while len(worker.idle_conns) > capacity:
                worker.idle_conns.pop(0).close()
        self.dispatch()

    # ---------------------------------------------------------------------- choosing

    def pick(self) -> Worker | None:
        """The least busy ready worker with room; ties go to the most recently used."""
        best: Worker | None = None
        capacity = self.capacity
        for worker in self.workers.values():
            if worker.state not in _READY or worker.active >= capacity:
                continue
            if best is None or (worker.active, -worker.last_used) < (
                best.active,
                -best.last_used,
            ):
                best = worker
        return best

    def reserve(self, worker: Worker) -> None:
        worker.active += 1
        worker.idle_since = None
        state = worker.state
        if state is _IDLE or state is _PROBING:
            worker.state = _BUSY  # (both moves are in lifecycle.TRANSITIONS: a test says so)

    def unreserve(self, worker: Worker, *, served: bool) -> None:
        worker.active -= 1
        if served:
            worker.requests_served += 1
            if worker.max_requests and worker.requests_served >= worker.max_requests:
                self._worn_out(worker)
        if worker.state is _BUSY and worker.active == 0:
            clock = self._clock  # (read, then called: see _CALLED_ATTRIBUTES)
            now = clock()
            worker.last_used = now
            worker.idle_since = now
            worker.state = _IDLE  # (in lifecycle.TRANSITIONS: a test says so)
            # A worker going idle never calls for a start; it may be stoppable once the idle
            # timeout has passed: look again then (the policy decides).
            idle_timeout = self._idle_timeout
            if idle_timeout is not None and len(self.workers) > self.min_instances:
                self._look_again_at(now + idle_timeout)
        if worker.state in _READY:
            if self.waiters:
                self.dispatch()
        elif worker.active <= 0 and worker.state.is_draining:
            self._drained(worker)

    def take_idle_connection(self, worker: Worker) -> PooledUpstream | None:
        """A kept-alive connection to ``worker`` that is still open, if any."""
        while worker.idle_conns:
            conn = worker.idle_conns.pop()
            if not conn.is_closed:
                return conn
        return None

    def try_acquire(self) -> Lease | None:
        """A lease at once when nobody waits and a ready worker with room has a kept-alive
        connection open; else None. (The pool checks that it is running.)"""
        if self.waiters:
            return None
        worker = self.pick()
        if worker is None or worker.process is None:
            return None
        conn = self.take_idle_connection(worker)
        if conn is None:
            return None
        self.reserve(worker)
        self._load.arrivals += 1
        return self.new_lease(worker, conn)

    def new_lease(self, worker: Worker, conn: PooledUpstream) -> Lease:
        assert worker.process is not None
        monotonic = self._monotonic  # (read, then called: see _CALLED_ATTRIBUTES)
        lease = Lease(
            conn=conn,
            pooled=conn,
            worker_pid=worker.process.pid,
            worker_id=worker.id,
            started=monotonic(),
        )
        self.leases.add(lease)
        if worker.pipelining:
            worker.busy_conns.append(conn)
        return lease

    # ---------------------------------------------------------------------- the queue

    def enqueue(self, waiter: Waiter, *, first: bool = False, queueable: bool = False) -> None:
        """A request waits (``first``: at the head: one sent back from a connection)."""
        self.wait_started[waiter] = self._clock()
        if first:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)
        if queueable:
            self.queueable.add(waiter)

    def done_waiting(self, waiter: Waiter) -> None:
        """Forget ``waiter``'s bookkeeping (it was answered, or gave up)."""
        self.wait_started.pop(waiter, None)
        self.queueable.discard(waiter)

    def cancel(self, waiter: Waiter) -> None:
        """A waiter gives up (its answer, if any comes, is not delivered)."""
        if waiter.done():
            return
        self.done_waiting(waiter)
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)
        waiter.cancel()

    def waiting(self) -> int:
        """Requests that count toward the queue's bound: waiting ones, and those queued on
        busy connections."""
        return len(self.waiters) + self.followers

    def queued(self) -> int:
        """Leases of requests queued on busy connections, not begun yet."""
        return sum(1 for lease in self.leases if lease.queued) if self.followers else 0

    def oldest_wait(self, now: float) -> float:
        if not self.waiters:
            return 0.0
        started = self.wait_started.get(self.waiters[0])
        return 0.0 if started is None else max(now - started, 0.0)

    def dispatch(self) -> None:
        """Hand free workers to waiting requests, first come first served."""
        waiters = self.waiters
        while waiters:
            worker = self.pick()
            if worker is None:
                # Every worker is busy: the first in line may queue on a busy connection.
                head = waiters[0]
                if head.done():
                    waiters.popleft()
                    self.queueable.discard(head)
                    continue
                if head not in self.queueable:
                    return
                lease = self.try_follow()
                if lease is None:
                    return
                waiters.popleft()
                self.queueable.discard(head)
                head.set_result(lease)
                continue
            waiter = waiters.popleft()
            if waiter.done():
                continue
            self.reserve(worker)
            waiter.set_result(worker)

    def fail_waiters(self, error: Callable[[], PoolError]) -> None:
        """Every waiting request gets ``error()`` (a fresh exception each: tracebacks must not
        pile up on one instance)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error())

    # ---------------------------------------------------------------------- release

    def release(self, lease: Lease, reusable: bool) -> None:
        """Give a worker back (see ``Pool.release``)."""
        if lease.released:
            return
        lease.released = True
        self.leases.discard(lease)
        if not (lease.abandoned or lease.open_ended):
            # Only answers that ended count: a request cut short when its client left (wrk's
            # last requests as it stops) or a tunnel (a WebSocket's minutes) would make the
            # app's service time read shorter or longer than its requests take.
            monotonic = self._monotonic  # (read, then called: see _CALLED_ATTRIBUTES)
            held = monotonic() - lease.started
            load = self._load
            service = load.service_time
            load.service_time = (
                held if service is None else service + SERVICE_WEIGHT * (held - service)
            )
        worker = self.workers.get(lease.worker_id)
        conn = lease.pooled
        if lease.follower:  # a request that was queued on a busy connection
            self.followers -= 1
            lease.conn.close()  # its own handle: see Follower.close (the connection stays
            # open unless the request was being served and is given up)
            reusable = not conn.is_closed
        # (The connection's in_flight, a property, only for a pipelining worker's.)
        if reusable and worker is not None and worker.pipelining and conn.in_flight:
            pass  # requests queued on the connection are still to be served: it stays busy
        else:
            if worker is not None and worker.busy_conns:
                try:  # (not contextlib.suppress: no object per request)
                    worker.busy_conns.remove(conn)
                except ValueError:
                    pass
            if (
                reusable
                and worker is not None
                and worker.state in _READY
                and not self.closing
                and not conn.is_closed
                and len(worker.idle_conns) < self.capacity
            ):
                worker.idle_conns.append(conn)
            else:
                conn.close()
        if worker is not None:
            if (
                not reusable
                and worker.state.is_ready
                and conn.closed_by_peer
                and worker.process is not None
                and worker.process.gone()
            ):
                # It died and is not reaped yet: no more requests for it meanwhile (those sent
                # back from its connection would be handed to it again, and wait on its
                # listening socket until the pool reaps it).
                lease.lost = True
                self._lost(worker)
            elif not reusable and conn.closed_by_peer and worker.idle_conns:
                # It closed a connection itself (a keep-alive timeout?): those idle as long
                # may be closing too, and a request sent on one would race that. Fresh ones.
                for idle in worker.idle_conns:
                    idle.close()
                worker.idle_conns.clear()
            self.unreserve(worker, served=True)
        if self.all_released is not None and not self.leases:
            self.all_released.set()

    # ---------------------------------------------------------------------- pipelining

    def try_follow(self) -> Lease | None:
        """When every worker is busy: a lease for a request (without a body) queued on a busy
        connection of the least busy worker that takes such requests, as deep as the policy
        allows (``queue_depth``: a few ms of work ahead at most, ``pipeline_depth`` requests
        at most), and never behind a request that has run that long already. None when there
        is no room."""
        depth = queue_depth(self._load.service_time, self.settings.pipeline_depth)
        if depth < 2 or self.closing:
            return None
        best: Worker | None = None
        handle: Upstream | None = None
        base: PooledUpstream | None = None
        tried: list[Worker] = []
        while True:  # the least busy worker with room first
            worker = None
            for candidate in self.workers.values():
                if (
                    candidate.busy_conns
                    and candidate.state.is_ready
                    and (worker is None or candidate.active < worker.active)
                    and candidate not in tried
                ):
                    worker = candidate
            if worker is None:
                break
            for conn in worker.busy_conns:
                handle = conn.follower(depth, QUEUE_AHEAD_LIMIT)
                if handle is not None:
                    best, base = worker, conn
                    break
            if best is not None:
                break
            tried.append(worker)
        if best is None or best.process is None or base is None or handle is None:
            if handle is not None:
                handle.close()
            return None
        self.reserve(best)
        self._load.arrivals += 1
        # (A connection that gives out followers says when it is free again: drained_conn.)
        base.when_drained(self.drained_conn)
        lease = Lease(
            conn=handle,
            pooled=base,
            worker_pid=best.process.pid,
            worker_id=best.id,
            started=self._monotonic(),
            follower=True,
            queued=True,
        )
        self.leases.add(lease)
        self.followers += 1
        if self._withdraw_timer is None:
            self._withdraw_timer = self._call_later(QUEUE_AHEAD_LIMIT, self._on_withdraw_timer)
        return lease

    def drained_conn(self, conn: PooledUpstream) -> None:
        """A connection carried only answers nobody waited for (requests withdrawn, or whose
        clients left) after its last lease was given back: it is free again."""
        for worker in self.workers.values():
            if conn in worker.busy_conns:
                worker.busy_conns.remove(conn)
                if (
                    worker.state.is_ready
                    and not self.closing
                    and not conn.is_closed
                    and len(worker.idle_conns) < self.capacity
                ):
                    worker.idle_conns.append(conn)
                    self.dispatch()
                else:
                    conn.close()
                return
        conn.close()

    def _on_withdraw_timer(self) -> None:
        """Every QUEUE_AHEAD_LIMIT s while requests are queued on busy connections: those
        behind a request that has run longer go back to the queue (``withdraw_stuck``)."""
        self._withdraw_timer = None
        if not self.followers or self.closing:
            return
        self.withdraw_stuck()
        self._withdraw_timer = self._call_later(QUEUE_AHEAD_LIMIT, self._on_withdraw_timer)

    def withdraw_stuck(self) -> None:
        """Requests queued behind one that has run past QUEUE_AHEAD_LIMIT go back to the queue
        (``withdraw_stuck``), when another worker may take them (with one worker and no room,
        they are as well where they are)."""
        ready = [w for w in self.workers.values() if w.state.is_ready]
        if len(ready) < 2 and not any(w.active < self.capacity for w in ready):
            return
        for worker in ready:
            for conn in worker.busy_conns:
                conn.withdraw_stuck(QUEUE_AHEAD_LIMIT)

    def close(self) -> None:
        """The pool closes: no more idle connections kept, no more followers."""
        self.closing = True
        if self._withdraw_timer is not None:
            self._withdraw_timer.cancel()
            self._withdraw_timer = None
