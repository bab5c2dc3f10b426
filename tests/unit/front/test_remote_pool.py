"""A front's lease source over granted worker slots (``front.remote.RemotePool``) and the
supervisor's broker that grants them (``supervision.broker.SlotBroker``), driven directly:
fake connections, fake pools, real event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from corral.front.linkerrors import error_info, pool_error
from corral.front.remote import RemotePool
from corral.protocol.frontlink import Demand, ErrorInfo, Give, Grant, Limit, Message, Refuse, Revoke
from corral.runtime.gate import DeployFailed
from corral.supervision.broker import BrokeredApp, SlotBroker, SlotUpstream
from corral.supervision.launch import Address
from corral.supervision.lease import Lease, PoolError, PoolOverloaded, PoolUnavailable
from corral.supervision.shares import DEMAND_INTERVAL, SLOT_HOLD


class Conn(SlotUpstream):
    """A connection as the front's client makes it (only closing matters here)."""


def remote(sent: list[Message], queue_size: int = 10) -> RemotePool:
    async def connect(address: Address) -> Conn:
        return Conn()

    return RemotePool(
        "app",
        7,
        connect,
        sent.append,
        queue_size=queue_size,
        queue_timeout=5.0,
        errors=pool_error,
        loop=asyncio.get_running_loop(),
    )


def deliveries() -> tuple[
    list[Lease | PoolError | None], Callable[[Lease | PoolError | None], None]
]:
    got: list[Lease | PoolError | None] = []
    return got, got.append


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_request_waits_asks_the_supervisor_and_gets_the_granted_slot() -> None:
    async def main() -> None:
        sent: list[Message] = []
        pool = remote(sent)
        got, deliver = deliveries()
        waiter = pool.lease_or_wait(deliver)
        assert isinstance(waiter, asyncio.Future)
        await turn()
        assert sent == [Demand(7, 1)]
        pool.granted(1, worker_id=3, pid=300, address="/w.sock")
        await turn()
        assert len(got) == 1 and isinstance(got[0], Lease) and got[0].worker_pid == 300
        # (The grant answered the demand: nothing more to say.)
        await asyncio.sleep(DEMAND_INTERVAL * 2)
        assert sent == [Demand(7, 1)]
        # Released with a waiter behind it: handed over, no message.
        got2, deliver2 = deliveries()
        pool.lease_or_wait(deliver2)
        count = len(sent)
        pool.release(got[0], True)
        await turn()
        assert isinstance(got2[0], Lease) and got2[0].worker_id == 3
        assert all(not isinstance(m, Give) for m in sent[count:])
        # Released with nobody waiting: kept SLOT_HOLD, then given back.
        pool.release(got2[0], True)
        await asyncio.sleep(SLOT_HOLD * 3)
        assert Give(7, 1, False) in sent and not pool.slots

    asyncio.run(main())


def test_an_idle_slot_serves_the_next_request_without_a_message() -> None:
    async def main() -> None:
        sent: list[Message] = []
        pool = remote(sent)
        got, deliver = deliveries()
        pool.lease_or_wait(deliver)
        pool.granted(1, 3, 300, "/w.sock")
        await turn()
        lease = got[0]
        assert isinstance(lease, Lease)
        pool.release(lease, True)
        count = len(sent)
        again = pool.try_acquire()
        assert again is not None and again.pooled is lease.pooled  # (the kept-alive connection)
        assert len(sent) == count
        pool.release(again, True)

    asyncio.run(main())


def test_revoked_and_limited_slots_go_back_once_idle() -> None:
    async def main() -> None:
        sent: list[Message] = []
        pool = remote(sent)
        got, deliver = deliveries()
        pool.lease_or_wait(deliver)
        pool.lease_or_wait(deliver)
        pool.granted(1, 3, 300, "/a.sock")
        pool.granted(2, 4, 400, "/b.sock")
        await turn()
        first, second = got
        assert isinstance(first, Lease) and isinstance(second, Lease)
        pool.revoked(1)  # its worker drains: back as soon as its request ends
        pool.lease_or_wait(deliver)  # (even with a request waiting)
        pool.release(first, True)
        assert Give(7, 1, False) in sent
        pool.limited(0)  # another front waits: hold none
        pool.release(second, True)
        assert Give(7, 2, False) in sent and not pool.slots

    asyncio.run(main())


def test_a_worker_that_closed_the_connection_is_reported_lost() -> None:
    async def main() -> None:
        sent: list[Message] = []
        pool = remote(sent)
        got, deliver = deliveries()
        pool.lease_or_wait(deliver)
        pool.granted(1, 3, 300, "/a.sock")
        await turn()
        lease = got[0]
        assert isinstance(lease, Lease)
        conn = lease.pooled
        assert isinstance(conn, SlotUpstream)
        conn.lost = True  # (closed by its peer)
        pool.release(lease, False)
        assert sent[-1] == Give(7, 1, True)
        # A request the front gave up on (its 504): the slot goes back marked stuck.
        pool.lease_or_wait(deliver)
        pool.granted(2, 3, 300, "/a.sock")
        await turn()
        stuck = got[-1]
        assert isinstance(stuck, Lease)
        stuck.stuck = True
        pool.release(stuck, False)
        assert sent[-1] == Give(7, 2, False, True)

    asyncio.run(main())


def test_a_refusal_answers_the_waiting_requests_as_a_single_host_would() -> None:
    async def main() -> None:
        sent: list[Message] = []
        pool = remote(sent)
        got, deliver = deliveries()
        for _ in range(3):
            pool.lease_or_wait(deliver)
        await turn()
        pool.refused(ErrorInfo("overloaded", queue_size=2))
        await turn()
        assert len(got) == 1 and isinstance(got[0], PoolOverloaded)
        pool.refused(ErrorInfo("unavailable", "boom", "Traceback..."))
        await asyncio.sleep(DEMAND_INTERVAL * 2)
        assert len(got) == 3 and all(isinstance(e, PoolUnavailable) for e in got[1:])
        assert sent[-1] == Demand(7, 0)

    asyncio.run(main())


def test_the_front_queue_is_bounded() -> None:
    async def main() -> None:
        pool = remote([], queue_size=1)
        _got, deliver = deliveries()
        pool.lease_or_wait(deliver)
        with pytest.raises(PoolOverloaded):
            pool.lease_or_wait(deliver)

    asyncio.run(main())


def test_errors_cross_the_link_unchanged() -> None:
    failed = DeployFailed("app", "exit 1", "tail", public=True)
    again = pool_error("app", error_info(failed))
    assert isinstance(again, DeployFailed) and again.public and again.stderr_tail == "tail"
    unavailable = PoolUnavailable("app", "import error", "tb", failures=3, retry_in=2.0)
    back = pool_error("app", error_info(unavailable))
    assert isinstance(back, PoolUnavailable)
    assert (back.reason, back.stderr_tail, back.failures, back.retry_in) == (
        "import error", "tb", 3, 2.0)  # fmt: skip


# ----------------------------------------------------------------------------- the broker


class FakeSource:
    """A pool of ``slots`` slots on worker 1 (then worker 2...)."""

    name = "app"

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.waiting: list[asyncio.Future[None]] = []
        self.released: list[tuple[Lease, bool]] = []

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        while self.free <= 0:
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            await waiter
        self.free -= 1
        conn = SlotUpstream()
        return Lease(conn=conn, pooled=conn, worker_pid=100, worker_id=1)

    def release(self, lease: Lease, reusable: bool) -> None:
        self.released.append((lease, reusable))
        self.free += 1
        while self.waiting:
            waiter = self.waiting.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break

    def lease_or_wait(self, deliver: object, queueable: bool = False, first: bool = False) -> None:
        return None

    def cancel_wait(self, waiter: object) -> None:
        """(Not used by the broker.)"""

    def try_acquire(self) -> None:
        return None


class Port:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


def test_the_broker_grants_asks_revokes_draining_workers_and_limits_a_greedy_front() -> None:
    async def main() -> None:
        source = FakeSource(2)
        ready = {1: "/w1.sock"}
        broker = SlotBroker(error_info)
        broker.add_app(BrokeredApp(5, lambda: source, lambda: dict(ready)))  # type: ignore[arg-type, return-value]
        a, b = Port(), Port()
        broker.add_front(1, a)
        broker.add_front(2, b)
        broker.demand(1, 5, 3)
        await turn()
        grants = [m for m in a.sent if isinstance(m, Grant)]
        assert [g.address for g in grants] == ["/w1.sock", "/w1.sock"]
        # Front 2 waits while front 1 holds both: front 1 is limited to its share.
        broker.demand(2, 5, 2)
        await asyncio.sleep(0.05)
        assert Limit(5, 1) in a.sent
        # (Its asks beyond its share are withdrawn: the slot it gives back goes to front 2.)
        broker.give(1, 5, grants[0].slot, False)
        await turn()
        assert any(isinstance(m, Grant) for m in b.sent)
        assert len([m for m in a.sent if isinstance(m, Grant)]) == 2
        # Worker 1 stops being ready (a rolling restart): its slots are revoked.
        ready.clear()
        await asyncio.sleep(0.05)
        assert Revoke(5, grants[1].slot) in a.sent
        # A front that dies gives everything back.
        broker.front_gone(2)
        assert source.released and source.free >= 1
        broker.close()

    asyncio.run(main())


def test_a_pool_error_becomes_a_refusal() -> None:
    async def main() -> None:
        class Failing(FakeSource):
            async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
                raise PoolUnavailable("app", "cannot import", "Traceback")

        broker = SlotBroker(error_info)
        broker.add_app(BrokeredApp(5, lambda: Failing(0), dict))  # type: ignore[arg-type, return-value]
        port = Port()
        broker.add_front(1, port)
        broker.demand(1, 5, 2)
        await turn()
        refusals = [m for m in port.sent if isinstance(m, Refuse)]
        assert refusals and refusals[0].error.kind == "unavailable"
        assert refusals[0].error.stderr_tail == "Traceback"
        broker.close()

    asyncio.run(main())


def test_a_request_waiting_right_after_a_grant_is_asked_for_again() -> None:
    """The supervisor counts a grant against the demand: a new waiter after it, with the same
    count as the last Demand sent, is still told (else it would wait for nothing)."""

    async def main() -> None:
        sent: list[Message] = []
        pool = remote(sent)
        got, deliver = deliveries()
        pool.lease_or_wait(deliver)
        await turn()
        pool.granted(1, 3, 300, "/w.sock")
        await turn()
        assert isinstance(got[0], Lease)
        pool.lease_or_wait(deliver)  # (the first still holds the only slot)
        await asyncio.sleep(DEMAND_INTERVAL * 3)
        assert [m for m in sent if isinstance(m, Demand)] == [Demand(7, 1), Demand(7, 1)]

    asyncio.run(main())
