"""The worker set alone, with fake processes, a fake probe and a fake clock: spawn, readiness,
exits, retiring and draining, and the lifecycle table refusing what it does not allow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from tests.unit.supervision.fakes import FakeProcess

from corral.errors import ExitCode
from corral.supervision.launch import LaunchPlan
from corral.supervision.lease import WorkerTraits
from corral.supervision.lifecycle import IllegalTransition, WorkerState
from corral.supervision.probe import ProbeFailed
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker, WorkerSet

S = WorkerState


class Conn:
    closed = False

    def close(self) -> None:
        self.closed = True


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, int, Any]] = []

    def worker_ready(self, worker: Worker, traits: WorkerTraits, took: float) -> None:
        self.log.append(("ready", worker.id, (traits, took)))

    def start_failed(self, worker: Worker, reason: str, stderr_tail: str) -> None:
        self.log.append(("failed", worker.id, (reason, stderr_tail)))

    def worker_exited(self, worker: Worker) -> None:
        self.log.append(("exited", worker.id, None))

    def worker_gone(self, worker: Worker, cancelled: bool) -> None:
        self.log.append(("gone", worker.id, cancelled))


class Rig:
    def __init__(self, probe: Callable[[Any, float], Coroutine[Any, Any, WorkerTraits]]) -> None:
        self.now = 50.0
        self.events = Events()
        self.processes: list[FakeProcess] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        loop = asyncio.get_running_loop()

        async def spawn(plan: LaunchPlan, app: str, path: str | None, wid: int) -> FakeProcess:
            process = FakeProcess(7000 + wid)
            self.processes.append(process)
            self.now += 0.5  # spawning takes a while
            return process

        def call_later(delay: float, callback: Callable[[], None]) -> Any:
            self.timers.append((delay, callback))
            return loop.call_later(3600, lambda: None)

        self.set = WorkerSet(
            "test",
            LaunchPlan(argv=("app",), env={}, cwd="."),
            PoolSettings(graceful_shutdown_timeout=7.0, start_timeout=2.0),
            probe,
            self.events,
            clock=lambda: self.now,
            call_later=call_later,
            create_task=lambda coro, name: loop.create_task(coro, name=name),
            spawn=spawn,
        )

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


async def pipelining_probe(address: Any, within: float) -> WorkerTraits:
    return WorkerTraits(max_conns=8, pipelining=True)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def test_a_worker_becomes_ready_then_crashes() -> None:
    async def main() -> None:
        rig = Rig(pipelining_probe)
        worker = rig.set.start()
        assert worker.state is S.STARTING and rig.set.counts() == (1, 0)
        await rig.settle()
        assert worker.state is S.IDLE and worker.ready_at == rig.now
        ((kind, wid, (traits, took)),) = rig.events.log
        assert (kind, wid, traits) == ("ready", worker.id, WorkerTraits(8, pipelining=True))
        assert took == 0.0  # the fake clock did not move between spawn and ready
        rig.processes[0].end(-11)
        await rig.settle()
        assert rig.events.log[-1] == ("exited", worker.id, None)
        assert worker.state is S.EXITED and rig.set.workers == {} and rig.set.crashes == 1
        (exit_info,) = rig.set.exits
        assert (
            not exit_info.expected
            and exit_info.pid == 7001
            and exit_info.reason == "killed by signal SIGSEGV"
        )

    run(main)


def test_an_app_that_cannot_load_fails_to_start_with_its_reason_and_tail() -> None:
    async def never(address: Any, within: float) -> WorkerTraits:
        await asyncio.sleep(3600)
        raise AssertionError

    async def main() -> None:
        rig = Rig(never)
        worker = rig.set.start()
        await rig.settle()
        rig.processes[0].end(ExitCode.APP_LOAD_FAILED)
        await rig.settle()
        ((kind, wid, (reason, tail)),) = rig.events.log
        assert (kind, wid) == ("failed", worker.id)
        assert "the application could not be loaded" in reason and tail == "Traceback: boom"
        assert worker.state is S.FAILED_TO_START and not rig.set.workers

    run(main)


def test_a_failed_probe_is_a_failed_start() -> None:
    async def refuses(address: Any, within: float) -> WorkerTraits:
        raise ProbeFailed("bad bytes")

    async def main() -> None:
        rig = Rig(refuses)
        rig.set.start()
        # The process stays up: the probe's own error is the reason (after a short wait).
        for _ in range(200):
            await asyncio.sleep(0.01)
            if rig.events.log:
                break
        ((kind, _, (reason, _)),) = rig.events.log
        assert kind == "failed" and reason == "the readiness probe failed: bad bytes"

    run(main)


def test_retiring_with_requests_in_flight_drains_then_stops() -> None:
    async def main() -> None:
        rig = Rig(pipelining_probe)
        worker = rig.set.start()
        await rig.settle()
        worker.active = 2
        conn = Conn()
        worker.idle_conns.append(conn)  # type: ignore[arg-type]
        rig.set.retire(worker, "rolling restart")
        assert worker.state is S.DRAINING and worker.idle_conns == [] and conn.closed
        assert [delay for delay, _ in rig.timers] == [7.0]  # graceful_shutdown_timeout
        with pytest.raises(IllegalTransition):
            rig.set.set_state(worker, S.BUSY)  # out of rotation for good
        worker.active = 0
        rig.set.end_drain(worker)
        assert worker.state is S.STOPPING and worker.drain_timer is None
        await rig.settle()
        assert rig.processes[0].signals == ["TERM"]
        assert rig.set.exits[-1].expected and rig.set.crashes == 0

    run(main)


def test_a_hung_worker_is_killed_once_drained_and_an_idle_one_is_stopped_at_once() -> None:
    async def main() -> None:
        rig = Rig(pipelining_probe)
        hung, idle = rig.set.start(), rig.set.start()
        await rig.settle()
        hung.active = 1
        rig.set.retire(hung, "a request ran past the request timeout", hung=True)
        assert hung.state is S.HUNG
        rig.set.retire(idle, "memory")
        assert idle.state is S.STOPPING  # nothing in flight: SIGTERM now
        _, callback = rig.timers[0]
        callback()  # the grace period is over, the request still hangs
        assert hung.state is S.STOPPING
        await asyncio.sleep(0.4)  # the stack dump's grace, then SIGKILL
        assert rig.processes[0].signals == ["KILL"] and rig.processes[1].signals == ["TERM"]

    run(main)


def test_a_lost_worker_exits_unexpectedly_and_restart_outcomes_follow_generations() -> None:
    async def main() -> None:
        rig = Rig(pipelining_probe)
        old = rig.set.start()
        await rig.settle()
        rig.set.generation += 1
        assert rig.set.restart_outcome() is False  # old ones left, no new one alive
        new = rig.set.start()
        assert rig.set.restart_outcome() is None  # going on
        await rig.settle()
        rig.set.retire_one_old()
        assert old.state is S.STOPPING
        await rig.settle()
        assert rig.set.restart_outcome() is True
        rig.set.lose(new)
        assert new.state is S.LOST
        rig.processes[1].end(-9)
        await rig.settle()
        assert rig.set.crashes == 1 and not rig.set.exits[-1].expected

    run(main)


def test_a_start_cancelled_is_gone_and_waiting_for_empty_returns() -> None:
    async def slow(address: Any, within: float) -> WorkerTraits:
        await asyncio.sleep(3600)
        raise AssertionError

    async def main() -> None:
        rig = Rig(slow)
        worker = rig.set.start()
        await rig.settle()
        rig.set.cancel_start(worker)
        await asyncio.wait_for(rig.set.wait_empty(), 5)
        assert rig.events.log == [("gone", worker.id, True)]

    run(main)
