"""The health monitor alone, with a fake clock, fake processes, connections and probe: the
request timeout marks the lease and closes its connection, limits recycle workers, idle workers
are probed (and killed when they do not answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from corral.supervision.health import HealthMonitor, MachineSample
from corral.supervision.launch import LaunchPlan
from corral.supervision.lease import Lease, WorkerTraits
from corral.supervision.lifecycle import WorkerState
from corral.supervision.load import MIB, LoadMeter
from corral.supervision.probe import ProbeFailed
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker, WorkerSet

S = WorkerState


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.address = f"/run/{pid}.sock"
        self.signals: list[str] = []

    def dump_stack(self) -> bool:
        self.signals.append("USR1")
        return True

    def kill(self) -> None:
        self.signals.append("KILL")


class Conn:
    def __init__(self) -> None:
        self.closed = False

    @property
    def is_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Events:
    def worker_ready(self, worker: Worker, traits: WorkerTraits, took: float) -> None: ...

    def start_failed(self, worker: Worker, reason: str, stderr_tail: str) -> None: ...

    def worker_exited(self, worker: Worker) -> None: ...

    def worker_gone(self, worker: Worker, cancelled: bool) -> None: ...


class Rig:
    def __init__(
        self,
        probe: Callable[[Any, float], Coroutine[Any, Any, WorkerTraits]] | None = None,
        **settings: Any,
    ) -> None:
        self.now = 1000.0
        self.mono = 500.0
        self.settings = PoolSettings(**settings)
        self.recycled: list[tuple[int, str, bool]] = []
        self.evaluations = 0
        self.leases: set[Lease] = set()
        self.load = LoadMeter("test", self.settings)

        async def no_probe(address: Any, within: float) -> WorkerTraits:
            return WorkerTraits()

        def create_task(coro: Coroutine[object, object, None], name: str | None) -> Any:
            return asyncio.get_running_loop().create_task(coro, name=name)

        self.workers = WorkerSet(
            "test",
            LaunchPlan(argv=("app",), env={}, cwd="."),
            self.settings,
            probe or no_probe,
            Events(),
            clock=lambda: self.now,
            call_later=lambda delay, cb: asyncio.get_running_loop().call_later(delay, cb),
            create_task=create_task,
        )
        self.monitor = HealthMonitor(
            "test",
            self.settings,
            self.workers,
            self.leases,
            self.load,
            probe or no_probe,
            clock=lambda: self.now,
            create_task=create_task,
            recycle=lambda w, why, hung: self.recycled.append((w.id, why, hung)),
            evaluate=self.evaluate,
            monotonic=lambda: self.mono,
        )

    def evaluate(self) -> None:
        self.evaluations += 1

    def worker(self, wid: int, state: WorkerState = S.IDLE, **fields: Any) -> Worker:
        worker = Worker(id=wid, state=state, ready_at=self.now - 10, **fields)
        worker.process = FakeProcess(9000 + wid)  # type: ignore[assignment]
        self.workers.workers[wid] = worker
        return worker

    def lease(self, worker: Worker, started: float, *, queued: bool = False) -> Lease:
        conn: Any = Conn()
        lease = Lease(conn, conn, 9000 + worker.id, worker.id, started=started, queued=queued)
        self.leases.add(lease)
        return lease


def test_a_request_past_the_timeout_is_cut_and_its_worker_recycled_as_hung() -> None:
    rig = Rig(request_timeout=30.0)
    busy = rig.worker(1, S.BUSY, active=2)
    late = rig.lease(busy, started=rig.mono - 31)
    fresh = rig.lease(busy, started=rig.mono - 29)
    queued = rig.lease(busy, started=rig.mono - 60, queued=True)  # not begun: not timed
    rig.monitor.sweep()
    assert late.timed_out and late.conn.is_closed
    assert not fresh.timed_out and not fresh.conn.is_closed and not queued.timed_out
    assert rig.recycled == [(1, "a request ran past the request timeout", True)]
    assert busy.process.signals == ["USR1"]  # type: ignore[union-attr]
    rig.monitor.sweep()  # cut once
    assert len(rig.recycled) == 1


def test_a_timeout_on_a_draining_worker_makes_it_hung() -> None:
    rig = Rig(request_timeout=5.0)
    draining = rig.worker(1, S.DRAINING, active=1)
    rig.lease(draining, started=rig.mono - 6)
    rig.monitor.sweep()
    assert draining.state is S.HUNG and rig.recycled == []


def test_memory_and_time_limits_recycle_and_the_machine_sample_is_kept() -> None:
    rig = Rig(memory_limit_mb=200, time_limit=60.0, probe_interval=1e6)
    fat = rig.worker(1, rss=None)
    old_a = rig.worker(2)
    old_b = rig.worker(3)
    old_a.ready_at = old_b.ready_at = rig.now - 61
    young = rig.worker(4)
    sample = MachineSample(
        free_memory=900 * MIB,
        cpu_idle=0.5,
        rss={1: 300 * MIB, 2: 50 * MIB, 4: 10 * MIB},
        cpu_time={1: 2.5, 4: 0.1},
    )
    rig.monitor.apply(sample, rig.now)
    assert fat.rss == 300 * MIB and fat.cpu_time == 2.5 and young.cpu_time == 0.1
    assert (rig.load.free_memory, rig.load.cpu_idle) == (900 * MIB, 0.5)
    assert [(wid, hung) for wid, _, hung in rig.recycled] == [(1, False), (2, False)]
    assert "above the limit of 200 MiB (memoryLimit)" in rig.recycled[0][1]
    assert "(timeLimit)" in rig.recycled[1][1]  # one per round: old_b waits for the next
    assert rig.evaluations == 1


def test_an_idle_worker_is_probed_and_killed_when_it_does_not_answer() -> None:
    async def refuses(address: Any, within: float) -> WorkerTraits:
        raise ProbeFailed("no answer")

    async def main() -> None:
        rig = Rig(refuses, probe_interval=30.0)
        idle = rig.worker(1, last_used=rig.now - 31)
        recent = rig.worker(2, last_used=rig.now - 5)
        conn: Any = Conn()
        idle.idle_conns.append(conn)
        rig.monitor.apply(MachineSample(), rig.now)
        assert idle.state is S.PROBING and conn.closed  # its kept-alive connection freed
        assert recent.state is S.IDLE
        await asyncio.sleep(0.01)
        assert idle.state is S.STOPPING and idle.process.signals == ["KILL"]  # type: ignore[union-attr]
        assert idle.retiring == "it did not answer the health probe"
        assert rig.workers.recycled == 1 and rig.evaluations == 2
        await rig.monitor.stop()

    asyncio.run(main())


def test_an_idle_worker_that_answers_is_idle_again_and_a_leased_one_is_left_alone() -> None:
    answered: list[float] = []

    async def slow_answer(address: Any, within: float) -> WorkerTraits:
        await asyncio.sleep(0.01)
        answered.append(within)
        return WorkerTraits()

    async def main() -> None:
        rig = Rig(slow_answer, probe_interval=30.0, probe_timeout=3.0)
        idle = rig.worker(1, last_used=rig.now - 31)
        leased = rig.worker(2, last_used=rig.now - 31)
        rig.monitor.apply(MachineSample(), rig.now)
        assert idle.state is leased.state is S.PROBING
        rig.workers.set_state(leased, S.BUSY)  # leased during its probe
        rig.now += 1
        await asyncio.sleep(0.05)
        assert answered == [3.0, 3.0]
        assert idle.state is S.IDLE and idle.last_probe == rig.now
        assert leased.state is S.BUSY
        await rig.monitor.stop()

    asyncio.run(main())
