"""The dispatcher alone, with a fake clock, fake timers and fake connections: FIFO order,
least-busy choice, the queue's bound as the pool applies it, follower placement and withdrawal,
release back to the idle connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from corral.supervision.dispatch import MAX_LEARNED_CAPACITY, Dispatcher
from corral.supervision.lease import Lease, PoolOverloaded, WorkerTraits
from corral.supervision.lifecycle import WorkerState
from corral.supervision.load import LoadMeter
from corral.supervision.scaling import QUEUE_AHEAD_LIMIT
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.address = f"/tmp/{pid}.sock"
        self.dead = False

    def gone(self) -> bool:
        return self.dead


class FakeConn:
    """A kept-alive connection that may take followers (pipelining)."""

    def __init__(self, name: str, *, pipelining: bool = False) -> None:
        self.name = name
        self.is_closed = False
        self.closed_by_peer = False
        self.in_flight = 0
        self.pipelining = pipelining
        self.followers: list[FakeConn] = []
        self.withdrawn_with: list[float] = []
        self.on_drained: Callable[[Any], None] | None = None

    def close(self) -> None:
        self.is_closed = True

    def follower(self, depth: int, max_running: float) -> FakeConn | None:
        if not self.pipelining or self.in_flight >= depth:
            return None
        self.in_flight += 1
        handle = FakeConn(f"{self.name}+{len(self.followers)}")
        self.followers.append(handle)
        return handle

    def withdraw_stuck(self, limit: float) -> int:
        self.withdrawn_with.append(limit)
        return 0

    def when_drained(self, callback: Callable[[Any], None]) -> None:
        self.on_drained = callback


class Timers:
    """call_later without a loop: the test fires what is due."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        entry = (delay, callback)
        self.pending.append(entry)

        class Handle:
            def cancel(_self) -> None:
                if entry in self.pending:
                    self.pending.remove(entry)

        return Handle()

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for _, callback in due:
            callback()


class Rig:
    def __init__(self, **settings: Any) -> None:
        self.now = 100.0
        self.mono = 1000.0
        self.settings = PoolSettings(**settings)
        self.workers: dict[int, Worker] = {}
        self.load = LoadMeter("test", self.settings)
        self.timers = Timers()
        self.looks: list[float] = []
        self.drained: list[int] = []
        self.worn: list[int] = []
        self.lost: list[int] = []
        self.dispatcher = Dispatcher(
            self.settings,
            self.workers,
            self.load,
            clock=lambda: self.now,
            call_later=self.timers.call_later,
            look_again_at=self.looks.append,
            drained=lambda w: self.drained.append(w.id),
            worn_out=lambda w: self.worn.append(w.id),
            lost=self.lose,
            monotonic=lambda: self.mono,
        )

    def lose(self, worker: Worker) -> None:
        self.lost.append(worker.id)
        worker.state = WorkerState.LOST

    def worker(
        self, worker_id: int, *, conns: int = 1, pipelining: bool = False, last_used: float = 0.0
    ) -> Worker:
        worker = Worker(id=worker_id, state=WorkerState.IDLE, last_used=last_used)
        worker.process = FakeProcess(4000 + worker_id)  # type: ignore[assignment]
        worker.pipelining = pipelining
        for n in range(conns):
            worker.idle_conns.append(FakeConn(f"w{worker_id}c{n}", pipelining=pipelining))  # type: ignore[arg-type]
        self.workers[worker_id] = worker
        return worker


def test_the_least_busy_ready_worker_is_picked_ties_to_the_most_recently_used() -> None:
    rig = Rig(connections_per_worker=2)
    a = rig.worker(1, last_used=5.0)
    b = rig.worker(2, last_used=9.0)
    starting = Worker(id=3)  # not ready: never picked
    rig.workers[3] = starting
    assert rig.dispatcher.pick() is b  # tie on load: the most recently used
    rig.dispatcher.reserve(b)
    assert b.state is WorkerState.BUSY and b.idle_since is None
    assert rig.dispatcher.pick() is a  # now the least busy
    rig.dispatcher.reserve(a)
    rig.dispatcher.reserve(a)
    assert rig.dispatcher.pick() is b
    rig.dispatcher.reserve(b)
    assert rig.dispatcher.pick() is None  # both at capacity


def test_try_acquire_leases_a_kept_alive_connection_and_release_keeps_it() -> None:
    rig = Rig()
    worker = rig.worker(1)
    conn = worker.idle_conns[0]
    lease = rig.dispatcher.try_acquire()
    assert lease is not None and lease.conn is conn and lease.worker_pid == 4001
    assert lease.started == rig.mono and rig.load.arrivals == 1
    assert worker.state is WorkerState.BUSY and lease in rig.dispatcher.leases
    rig.mono += 0.25
    rig.now = 200.0
    rig.dispatcher.release(lease, reusable=True)
    assert worker.idle_conns == [conn] and worker.state is WorkerState.IDLE
    assert worker.requests_served == 1 and worker.last_used == 200.0 == worker.idle_since
    assert rig.load.service_time == 0.25
    assert rig.looks == []  # one worker, the floor: never stoppable
    rig.dispatcher.release(lease, reusable=True)  # twice: nothing
    assert worker.requests_served == 1


@pytest.mark.parametrize("kind", ["abandoned", "open_ended"])
def test_an_abandoned_request_or_a_tunnel_is_no_service_time(kind: str) -> None:
    rig = Rig()
    rig.worker(1)
    lease = rig.dispatcher.try_acquire()
    assert lease is not None
    rig.mono += 0.05
    rig.dispatcher.release(lease, reusable=True)
    measured = rig.load.service_time
    assert measured == pytest.approx(0.05)
    other = rig.dispatcher.try_acquire()
    assert other is not None
    setattr(other, kind, True)  # the client left at once / a WebSocket that lasted minutes
    rig.mono += 0.001 if kind == "abandoned" else 300.0
    rig.dispatcher.release(other, reusable=False)
    assert rig.load.service_time == measured


def test_a_connection_released_unusable_is_closed_and_a_dead_worker_is_lost() -> None:
    rig = Rig()
    worker = rig.worker(1)
    lease = rig.dispatcher.try_acquire()
    assert lease is not None
    conn = lease.pooled
    conn.closed_by_peer = True  # type: ignore[misc]
    worker.process.dead = True  # type: ignore[union-attr]
    rig.dispatcher.release(lease, reusable=False)
    assert conn.is_closed and worker.idle_conns == []
    assert rig.lost == [1]


def test_waiters_are_served_first_come_first_served_and_a_sent_back_one_first() -> None:
    async def main() -> None:
        rig = Rig()
        worker = rig.worker(1)
        held = rig.dispatcher.try_acquire()
        assert held is not None
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(3)]
        for waiter in waiters:
            rig.dispatcher.enqueue(waiter)
        back = loop.create_future()
        rig.dispatcher.enqueue(back, first=True)
        assert rig.dispatcher.waiting() == 4
        rig.now += 2.0
        assert rig.dispatcher.oldest_wait(rig.now) == 2.0
        order: list[Any] = []
        for _ in range(4):
            rig.dispatcher.release(held, reusable=True)  # hands the worker to the next one
            handed = next(w for w in [back, *waiters] if w.done() and w not in order)
            order.append(handed)
            assert handed.result() is worker
            held = rig.dispatcher.new_lease(worker, rig.dispatcher.take_idle_connection(worker))  # type: ignore[arg-type]
        assert order == [back, *waiters]
        assert not rig.dispatcher.waiters

    asyncio.run(main())


def test_a_cancelled_waiter_is_skipped_and_failing_gives_each_a_fresh_error() -> None:
    async def main() -> None:
        rig = Rig()
        loop = asyncio.get_running_loop()
        gone, stays = loop.create_future(), loop.create_future()
        rig.dispatcher.enqueue(gone, queueable=True)
        rig.dispatcher.enqueue(stays)
        rig.dispatcher.cancel(gone)
        assert gone.cancelled() and list(rig.dispatcher.waiters) == [stays]
        assert gone not in rig.dispatcher.queueable
        errors: list[BaseException] = []
        rig.dispatcher.fail_waiters(lambda: PoolOverloaded("test", 1))
        errors.append(stays.exception())  # type: ignore[arg-type]
        assert isinstance(errors[0], PoolOverloaded) and not rig.dispatcher.waiters

    asyncio.run(main())


def test_followers_go_to_the_least_busy_pipelining_worker_and_withdrawal_runs_on_a_timer() -> None:
    async def main() -> None:
        rig = Rig(connections_per_worker=1, pipeline_depth=4)
        rig.load.service_time = 0.0001  # fast requests: the policy allows queueing
        a = rig.worker(1, pipelining=True)
        b = rig.worker(2, pipelining=True)
        first = rig.dispatcher.try_acquire()
        second = rig.dispatcher.try_acquire()
        assert first is not None and second is not None
        assert rig.dispatcher.pick() is None  # every worker busy
        follower = rig.dispatcher.try_follow()
        assert follower is not None and follower.follower and follower.queued
        busy_first = {1: a, 2: b}[first.worker_id]
        assert follower.pooled is busy_first.busy_conns[0] or follower.pooled in (
            a.busy_conns + b.busy_conns
        )
        assert rig.dispatcher.followers == 1 and rig.dispatcher.queued() == 1
        assert rig.dispatcher.waiting() == 1  # counts toward the queue's bound
        # The next follower goes to the other worker: it is less busy now.
        other = rig.dispatcher.try_follow()
        assert other is not None and other.worker_id != follower.worker_id
        # One timer for withdrawal, every QUEUE_AHEAD_LIMIT s while followers are queued.
        assert [delay for delay, _ in rig.timers.pending] == [QUEUE_AHEAD_LIMIT]
        rig.timers.fire()
        for worker in (a, b):
            assert [c.withdrawn_with for c in worker.busy_conns] == [[QUEUE_AHEAD_LIMIT]]  # type: ignore[attr-defined]
        assert [delay for delay, _ in rig.timers.pending] == [QUEUE_AHEAD_LIMIT]
        for lease in (follower, other):
            lease.began()
            rig.dispatcher.release(lease, reusable=True)
        assert rig.dispatcher.followers == 0
        rig.timers.fire()  # nothing queued any more: the timer stops
        assert rig.timers.pending == []

    asyncio.run(main())


def test_no_follower_when_the_requests_run_long_or_the_dispatcher_closes() -> None:
    rig = Rig(connections_per_worker=1, pipeline_depth=4)
    rig.worker(1, pipelining=True)
    assert rig.dispatcher.try_acquire() is not None
    rig.load.service_time = 1.0  # seconds per request: no queueing behind it
    assert rig.dispatcher.try_follow() is None
    rig.load.service_time = 0.0001
    rig.dispatcher.close()
    assert rig.dispatcher.try_follow() is None


def test_a_drained_connection_goes_back_to_the_idle_ones_and_serves_the_queue() -> None:
    async def main() -> None:
        rig = Rig(connections_per_worker=2)
        worker = rig.worker(1, pipelining=True)
        lease = rig.dispatcher.try_acquire()
        assert lease is not None
        conn = lease.pooled
        assert worker.busy_conns == [conn]
        conn.in_flight = 1  # type: ignore[misc]  # answers nobody waits for still come
        rig.dispatcher.release(lease, reusable=True)
        assert worker.busy_conns == [conn] and worker.idle_conns == []  # stays busy
        rig.dispatcher.drained_conn(conn)
        assert worker.busy_conns == [] and worker.idle_conns == [conn]

    asyncio.run(main())


def test_max_requests_and_draining_are_reported() -> None:
    rig = Rig()
    worker = rig.worker(1)
    worker.max_requests = 2
    for _ in range(2):
        lease = rig.dispatcher.try_acquire()
        assert lease is not None
        rig.dispatcher.release(lease, reusable=True)
    assert rig.worn == [1]
    lease = rig.dispatcher.try_acquire()
    assert lease is not None
    worker.state = WorkerState.DRAINING
    rig.dispatcher.release(lease, reusable=True)
    assert rig.drained == [1] and lease.pooled.is_closed  # not kept: out of rotation


def test_the_probes_traits_set_pipelining_and_the_bounded_capacity() -> None:
    rig = Rig(connections_per_worker=4)
    worker = rig.worker(1)
    assert not rig.dispatcher.learn(worker, WorkerTraits(None, pipelining=True))
    assert worker.pipelining
    assert not rig.dispatcher.learn(worker, WorkerTraits(2))  # smaller: the setting stays
    assert not worker.pipelining and rig.dispatcher.capacity == 4
    assert rig.dispatcher.learn(worker, WorkerTraits(100)) and rig.dispatcher.capacity == 100
    assert rig.dispatcher.learn(worker, WorkerTraits(10**6))
    assert rig.dispatcher.capacity == MAX_LEARNED_CAPACITY


@pytest.mark.parametrize("reusable", [True, False])
def test_the_last_release_sets_all_released(reusable: bool) -> None:
    async def main() -> None:
        rig = Rig()
        rig.worker(1)
        lease = rig.dispatcher.try_acquire()
        assert isinstance(lease, Lease)
        rig.dispatcher.all_released = asyncio.Event()
        rig.dispatcher.release(lease, reusable=reusable)
        assert rig.dispatcher.all_released.is_set()

    asyncio.run(main())


def test_a_worker_going_idle_above_the_floor_asks_for_a_look_after_the_idle_timeout() -> None:
    rig = Rig(min_instances=1, max_instances=2, idle_timeout=30.0)
    rig.worker(1)
    rig.worker(2)
    lease = rig.dispatcher.try_acquire()
    assert lease is not None
    rig.now = 150.0
    rig.dispatcher.release(lease, reusable=True)
    assert rig.looks == [180.0]


def test_the_moves_the_request_path_makes_unchecked_are_legal() -> None:
    """``Dispatcher.reserve``/``unreserve`` set IDLE/PROBING -> BUSY -> IDLE without asking
    ``check_transition`` (per request), and test readiness with a set: both must agree with
    the lifecycle's table and property."""
    from corral.supervision import dispatch
    from corral.supervision.lifecycle import TRANSITIONS, WorkerState

    assert WorkerState.BUSY in TRANSITIONS[WorkerState.IDLE]
    assert WorkerState.BUSY in TRANSITIONS[WorkerState.PROBING]
    assert WorkerState.IDLE in TRANSITIONS[WorkerState.BUSY]
    assert {s for s in WorkerState if s.is_ready} == dispatch._READY
