"""The scaler alone, with a fake clock and fake timers: one timer, the earliest look wins, the
policy asked at most every EVALUATE_EVERY s under a stream of arrivals, starts only while the
pool runs and not while the crash-loop back-off says wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.supervision.crashloop import CrashLoopTracker
from corral.supervision.dispatch import Dispatcher
from corral.supervision.launch import LaunchPlan
from corral.supervision.lease import PoolUnavailable, WorkerTraits
from corral.supervision.lifecycle import PoolState, WorkerState
from corral.supervision.load import LoadMeter
from corral.supervision.scaler import EVALUATE_EVERY, Scaler
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker, WorkerSet


class Handle:
    def __init__(self, timers: list[Handle], when: float, callback: Callable[[], None]) -> None:
        self.timers, self.when, self.callback = timers, when, callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.timers.remove(self)


class Events:
    def worker_ready(self, worker: Worker, traits: WorkerTraits, took: float) -> None: ...

    def start_failed(self, worker: Worker, reason: str, stderr_tail: str) -> None: ...

    def worker_exited(self, worker: Worker) -> None: ...

    def worker_gone(self, worker: Worker, cancelled: bool) -> None: ...


class FakeWorkers(WorkerSet):
    """Starting records a worker instead of spawning one; stopping records it too."""

    def start(self) -> Worker:
        worker = Worker(id=100 + len(self.workers))
        self.workers[worker.id] = worker
        return worker

    def stop(self, worker: Worker) -> None:
        self.stopped.append(worker.id)


class Rig:
    def __init__(self, **settings: Any) -> None:
        self.now = 10.0
        self.state = PoolState.RUNNING
        self.timers: list[Handle] = []
        self.settings = PoolSettings(memory_reserve_mb=0, **settings)
        clock = lambda: self.now  # noqa: E731
        self.load = LoadMeter("test", self.settings)
        self.workers = FakeWorkers(
            "test",
            LaunchPlan(argv=("app",), env={}, cwd="."),
            self.settings,
            None,  # type: ignore[arg-type]
            Events(),
            clock=clock,
            call_later=None,  # type: ignore[arg-type]
            create_task=None,  # type: ignore[arg-type]
        )
        self.workers.stopped = []  # type: ignore[attr-defined]
        self.dispatcher = Dispatcher(
            self.settings,
            self.workers.workers,
            self.load,
            clock=clock,
            call_later=None,  # type: ignore[arg-type]
            look_again_at=lambda when: None,
            drained=lambda w: None,
            worn_out=lambda w: None,
            lost=lambda w: None,
        )
        self.crash = CrashLoopTracker("test", self.settings, ".", clock=clock)
        self.scaler = Scaler(
            "test",
            self.settings,
            self.workers,
            self.dispatcher,
            self.load,
            self.crash,
            clock=clock,
            call_at=self.call_at,
            pool_state=lambda: self.state,
        )

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        handle = Handle(self.timers, when, callback)
        self.timers.append(handle)
        return handle


def test_the_floor_is_started_only_while_the_pool_runs() -> None:
    rig = Rig(min_instances=2, max_instances=4)
    rig.state = PoolState.DORMANT
    rig.scaler.evaluate()
    assert rig.workers.workers == {}
    rig.state = PoolState.RUNNING
    rig.scaler.evaluate()
    assert len(rig.workers.workers) == 2
    assert all(w.state is WorkerState.STARTING for w in rig.workers.workers.values())


def test_starts_wait_for_the_back_off_and_a_timer_looks_again_then() -> None:
    rig = Rig(min_instances=1, max_instances=2)
    rig.crash.failed(PoolUnavailable("test", "boom"), nothing_runs=False)
    due = rig.crash.next_start_at
    rig.scaler.evaluate()
    assert rig.workers.workers == {}
    assert [t.when for t in rig.timers] == [due]
    rig.now = due
    rig.timers[0].callback()
    assert len(rig.workers.workers) == 1


def test_one_timer_and_the_earliest_look_wins_and_nothing_once_closing() -> None:
    rig = Rig()
    rig.scaler.wake_at(20.0)
    rig.scaler.wake_at(30.0)  # later: the 20.0 look covers it
    assert [t.when for t in rig.timers] == [20.0]
    rig.scaler.wake_at(15.0)  # sooner: replaces it
    assert [t.when for t in rig.timers] == [15.0]
    rig.scaler.cancel()
    assert rig.timers == []
    rig.state = PoolState.CLOSING
    rig.scaler.wake_at(12.0)
    assert rig.timers == []


def test_arrivals_ask_the_policy_at_most_every_evaluate_every() -> None:
    rig = Rig(min_instances=0, max_instances=1)
    asked: list[float] = []
    evaluate = rig.scaler.evaluate

    def counting() -> None:
        asked.append(rig.now)
        evaluate()

    rig.scaler.evaluate = counting  # type: ignore[method-assign]
    rig.scaler.on_arrival()
    rig.now += EVALUATE_EVERY / 4
    rig.scaler.on_arrival()  # too soon: a timer makes the look up
    assert asked == [10.0]
    assert [t.when for t in rig.timers] == [10.0 + EVALUATE_EVERY]
    rig.now += EVALUATE_EVERY
    rig.scaler.on_arrival()
    assert len(asked) == 2


def test_idle_workers_past_the_timeout_are_stopped_down_to_the_floor() -> None:
    rig = Rig(min_instances=1, max_instances=3, idle_timeout=5.0)
    for wid, idle_since in ((1, 1.0), (2, 2.0), (3, 9.0)):
        rig.workers.workers[wid] = Worker(id=wid, state=WorkerState.IDLE, idle_since=idle_since)
    rig.now = 8.0
    rig.scaler.evaluate()
    assert sorted(rig.workers.stopped) == [1, 2]  # type: ignore[attr-defined]
