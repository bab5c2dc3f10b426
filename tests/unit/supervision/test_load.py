"""The load meter alone, with a fake clock and a fake memory reader: rate smoothing, service
and spawn times, the sample the policy reads, and why starts are held back."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import pytest

from corral.supervision.lifecycle import WorkerState
from corral.supervision.load import MIB, RATE_WINDOW, SERVICE_WEIGHT, LoadMeter
from corral.supervision.scaling import HELD_BY_CPU, HELD_BY_MEMORY, ScalingDecision
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker


def meter(reads: list[int | None] | None = None, **settings: int) -> LoadMeter:
    values = iter(reads or [])
    return LoadMeter("test", PoolSettings(**settings), read_free_memory=lambda: next(values))


def test_the_arrival_rate_is_smoothed_over_the_window() -> None:
    load = meter()
    load.update_rate(10.0)  # the first look only starts counting
    assert load.arrival_rate == 0.0
    load.arrivals = 50
    load.update_rate(10.1)  # too soon to fold (under a quarter second)
    assert load.arrivals == 50 and load.arrival_rate == 0.0
    load.update_rate(11.0)  # 50 in 1 s
    weight = 1.0 - math.exp(-1.0 / RATE_WINDOW)
    assert load.arrival_rate == pytest.approx(50 * weight)
    assert load.arrivals == 0
    for second in range(12, 60):  # a steady 50/s: the rate converges to it
        load.arrivals = 50
        load.update_rate(float(second))
    assert load.arrival_rate == pytest.approx(50.0, rel=1e-3)
    load.update_rate(90.0)  # then 30 s of nothing
    assert load.arrival_rate < 0.2


def test_service_and_spawn_times_are_smoothed() -> None:
    load = meter()
    load.served(0.5)
    assert load.service_time == 0.5
    load.served(1.5)
    assert load.service_time == pytest.approx(0.5 + SERVICE_WEIGHT * 1.0)
    load.spawned(2.0)
    load.spawned(1.0)
    assert load.spawn_time == pytest.approx(2.0 - 0.3)


def test_the_sample_counts_workers_and_reads_memory_at_most_once_a_second() -> None:
    load = meter([800 * MIB, 700 * MIB], memory_reserve_mb=100)
    limits = load.settings.limits()
    starting = Worker(id=1)
    busy = Worker(id=2, state=WorkerState.BUSY, active=3, rss=100 * MIB)
    idle = Worker(id=3, state=WorkerState.IDLE, idle_since=4.0, rss=300 * MIB)
    draining = Worker(id=4, state=WorkerState.DRAINING, active=1)
    workers = [starting, busy, idle, draining]
    sample = load.sample(5.0, workers, limits, waiting=7, oldest_wait=0.25)
    assert (sample.starting, sample.waiting, sample.oldest_wait) == (1, 7, 0.25)
    assert [(w.worker_id, w.active, w.idle_since) for w in sample.workers] == [
        (2, 3, None),
        (3, 0, 4.0),
    ]
    assert sample.worker_memory == 200 * MIB and sample.free_memory == 800 * MIB
    assert load.sample(5.5, workers, limits, waiting=0, oldest_wait=0).free_memory == 800 * MIB
    assert load.sample(6.0, workers, limits, waiting=0, oldest_wait=0).free_memory == 700 * MIB
    load.machine(500 * MIB, 0.25, 6.5)  # a health round's sample counts as a read
    sample = load.sample(7.0, workers, limits, waiting=0, oldest_wait=0)
    assert (sample.free_memory, sample.cpu_idle) == (500 * MIB, 0.25)


def test_held_back_starts_say_why_and_are_logged_at_most_every_ten_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    load = meter([100 * MIB], memory_reserve_mb=256)
    sample = load.sample(1.0, [], load.settings.limits(), waiting=3, oldest_wait=0.0)
    low = ScalingDecision(start=0, stop=(), held_back=2, reason=HELD_BY_MEMORY)
    with caplog.at_level(logging.INFO, logger="corral.supervision.pool"):
        load.note_held_back(low, sample, 1.0, cpu_count=4)
        load.note_held_back(low, sample, 5.0, cpu_count=4)
        assert load.held_back == 2
        assert (
            load.held_reason
            == "free memory 100 MiB is below the reserve of 256 MiB (memoryReserve)"
        )
        cpu = ScalingDecision(start=1, stop=(), held_back=1, reason=HELD_BY_CPU)
        sample = replace(sample, cpu_idle=0.02)
        load.note_held_back(cpu, sample, 11.5, cpu_count=4)
        assert (
            load.held_reason
            == "the CPU is saturated (2% idle) and 0 workers already run on 4 cores"
        )
        load.note_held_back(ScalingDecision(start=1, stop=()), sample, 12.0, cpu_count=4)
    assert load.held_back == 0 and load.held_reason is None
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "not starting" in m]) == 2  # 1.0 and 11.5, not 5.0
    assert messages[-1] == "app test: starting workers again"
