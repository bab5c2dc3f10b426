"""The concurrency tuner's mechanism, driven by hand: CPU readings with the requests each worker
completed become the CPU per request, the workers' CPU use, the machine's idle CPU and the app's
base; its decisions reach the dispatcher (capacity, idle connections closed) and the scaler."""

from __future__ import annotations

import asyncio
import os

import pytest
from tests.unit.supervision.test_dispatch import FakeConn, Rig

from corral.supervision.adaptive import ConcurrencyTuner, CpuReading, read_cpu_times
from corral.supervision.concurrency import Base
from corral.supervision.lease import WorkerTraits
from corral.supervision.workers import Worker


class Tuned:
    def __init__(self) -> None:
        self.rig = Rig(connections_per_worker=1)
        self.changes: list[int] = []
        self.tuner = ConcurrencyTuner(
            "test",
            self.rig.dispatcher,
            self.rig.workers,
            self.rig.load,
            limits=lambda: self.rig.settings.limits(),
            clock=lambda: self.rig.now,
            changed=self.changes.append,
        )
        self.a = self.rig.worker(1, conns=1)
        self.b = self.rig.worker(2, conns=1)
        for worker in (self.a, self.b):
            self.rig.dispatcher.learn(worker, WorkerTraits(128, pipelining=True, elastic=True))

    def serve(self, worker: Worker, requests: int) -> None:
        worker.requests_served += requests

    def read(self, cpu: dict[int, float], *, waited: dict[int, float] | None = None) -> None:
        self.tuner.observe(
            CpuReading(cpu, waited or {}, idle=50.0 + self.rig.now, total=100.0 + 2 * self.rig.now),
            self.rig.now,
        )


def test_an_elastic_worker_sets_the_ceiling_not_the_capacity() -> None:
    tuned = Tuned()
    assert (tuned.rig.dispatcher.capacity, tuned.rig.dispatcher.ceiling) == (1, 128)


def test_cpu_per_request_and_worker_cpu_from_two_readings() -> None:
    tuned = Tuned()
    tuned.read({1: 1.0, 2: 2.0})
    tuned.rig.now += 0.5
    tuned.serve(tuned.a, 20)
    tuned.serve(tuned.b, 20)
    tuned.read({1: 1.1, 2: 2.1})
    assert tuned.tuner.cpu_per_request == pytest.approx(0.005)
    assert tuned.tuner.worker_cpu == pytest.approx(0.2)
    # The machine: 0.5 s of idle in 1 s of CPU time between the readings.
    assert tuned.tuner.cpu_idle == pytest.approx(0.5)


def test_a_few_cheap_requests_wait_for_a_precise_reading() -> None:
    tuned = Tuned()
    tuned.read({1: 1.0, 2: 2.0})
    tuned.rig.now += 0.25
    tuned.serve(tuned.a, 5)
    tuned.serve(tuned.b, 5)
    tuned.read({1: 1.0, 2: 2.01})  # a tick of 10 ms over 10 requests: not yet
    assert tuned.tuner.cpu_per_request is None
    tuned.rig.now += 0.25
    tuned.serve(tuned.a, 12)
    tuned.serve(tuned.b, 12)
    tuned.read({1: 1.0, 2: 2.01})
    assert tuned.tuner.cpu_per_request == pytest.approx(0.01 / 34)


def test_an_idle_workers_cpu_is_no_requests() -> None:
    # Between two bursts the workers' waiting threads burn a little CPU and serve nothing:
    # counted into the next burst's first requests, it read as a CPU-bound app.
    tuned = Tuned()
    tuned.read({1: 1.0, 2: 2.0})
    for step in range(1, 41):  # 10 s of quiet, 10 ms of CPU a second each
        tuned.rig.now += 0.25
        tuned.read({1: 1.0 + step * 0.0025, 2: 2.0 + step * 0.0025})
    assert tuned.tuner.cpu_per_request is None
    tuned.rig.now += 0.25
    tuned.serve(tuned.a, 20)
    tuned.serve(tuned.b, 20)
    tuned.read({1: 1.1 + 0.002, 2: 2.1 + 0.002})
    assert tuned.tuner.cpu_per_request == pytest.approx(0.002 * 2 / 40)


def test_the_base_leaves_out_the_wait_for_a_core() -> None:
    tuned = Tuned()
    tuned.rig.load.service_time = 0.040
    tuned.read({1: 1.0, 2: 2.0}, waited={1: 0.0, 2: 0.0})
    tuned.rig.now += 1.0
    tuned.serve(tuned.a, 50)
    tuned.serve(tuned.b, 50)
    # 10 ms of CPU and 30 ms in the run queue per request: a CPU-bound app on a busy machine.
    tuned.read({1: 1.5, 2: 2.5}, waited={1: 1.5, 2: 1.5})
    assert tuned.tuner.cpu_wait == pytest.approx(0.030)
    assert tuned.tuner.base == Base(pytest.approx(0.010), pytest.approx(0.010), net=True)  # type: ignore[arg-type]


def test_an_idle_sample_measures_no_base() -> None:
    # The requests stopped (the end of a burst): the smoothed service time is an old one
    # (here cut short by the last, cheap requests), and no request completes to correct it.
    tuned = Tuned()
    tuned.rig.load.service_time = 0.050
    tuned.read({1: 1.0, 2: 2.0})
    tuned.rig.now += 1.0
    tuned.serve(tuned.a, 20)
    tuned.serve(tuned.b, 20)
    tuned.read({1: 1.004, 2: 2.004})
    tuned.rig.now += 0.25
    tuned.read({1: 1.004, 2: 2.004})
    assert tuned.tuner.base == Base(pytest.approx(0.050), pytest.approx(0.0002))  # type: ignore[arg-type]
    tuned.rig.load.service_time = 0.010
    for _ in range(4):
        tuned.rig.now += 0.25
        tuned.read({1: 1.004, 2: 2.004})
    assert tuned.tuner.base == Base(pytest.approx(0.050), pytest.approx(0.0002))  # type: ignore[arg-type]


def test_a_decision_reaches_the_dispatcher_and_the_scaler() -> None:
    tuned = Tuned()
    tuned.tuner.cpu_per_request = 0.0002
    tuned.tuner.base = Base(0.050, 0.0002)
    tuned.rig.load.service_time = 0.050
    loop = asyncio.new_event_loop()
    try:
        waiters = [loop.create_future() for _ in range(40)]
        for waiter in waiters:
            tuned.rig.dispatcher.enqueue(waiter)
        tuned.tuner.decide(tuned.rig.now)
        # 40 waiting on 2 workers at 80 %: 25 connections each; the waiting requests go at once.
        assert tuned.rig.dispatcher.capacity == 25 and tuned.changes == [25]
        assert sum(w.done() for w in waiters) == 40 and not tuned.rig.dispatcher.waiters
    finally:
        loop.close()
    # The load goes: halved after SHRINK_AFTER, and the idle connections above it are closed.
    for worker in (tuned.a, tuned.b):
        worker.active = 0
    tuned.rig.dispatcher.leases.clear()
    tuned.a.idle_conns.extend(FakeConn(f"extra{n}") for n in range(24))  # type: ignore[misc]
    kept_alive = list(tuned.a.idle_conns)
    tuned.rig.now += 5.0
    tuned.tuner.decide(tuned.rig.now)
    assert tuned.rig.dispatcher.capacity == 12 and tuned.changes == [25, 12]
    assert len(tuned.a.idle_conns) == 12
    assert sum(conn.is_closed for conn in kept_alive) == len(kept_alive) - 12


def test_a_fixed_pool_is_left_alone() -> None:
    tuned = Tuned()
    tuned.rig.dispatcher.ceiling = 0
    tuned.tuner.cpu_per_request = 0.0002
    tuned.tuner.base = Base(0.050, 0.0002)
    tuned.tuner.decide(tuned.rig.now)
    assert tuned.changes == []


def test_read_cpu_times_of_this_process() -> None:
    reading = read_cpu_times({7: os.getpid()}, True)
    assert reading.workers[7] > 0
    assert reading.total is not None and reading.idle is not None
    if os.path.exists(f"/proc/{os.getpid()}/task"):
        assert reading.waited[7] >= 0
