"""PoolSettings: defaults, validation, and the limits handed to the policy."""

from __future__ import annotations

import os
from typing import Any

import pytest

from corral.supervision.scaling import ScalingLimits
from corral.supervision.settings import PoolSettings


def test_defaults() -> None:
    settings = PoolSettings()
    assert (settings.min_instances, settings.max_instances) == (1, 0)
    assert settings.connections_per_worker == 1
    assert settings.queue_size == 100
    assert settings.queue_timeout == 30.0
    assert settings.start_timeout == 30.0
    assert settings.graceful_shutdown_timeout == 10.0


def test_max_zero_means_one_worker_per_cpu() -> None:
    limits = PoolSettings(min_instances=0, max_instances=0, idle_timeout=5.0).limits()
    assert limits == ScalingLimits(
        min_instances=0,
        max_instances=os.cpu_count() or 1,
        idle_timeout=5.0,
        capacity=1,
        memory_reserve=64 * 1024 * 1024,
        cpu_count=os.cpu_count() or 1,
    )


def test_max_zero_never_goes_below_min() -> None:
    limits = PoolSettings(min_instances=500, max_instances=0).limits()
    assert limits.max_instances == 500


def test_connections_per_worker_is_the_policy_capacity() -> None:
    assert PoolSettings(connections_per_worker=8).limits().capacity == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_instances": -1},
        {"max_instances": -1},
        {"queue_size": -1},
        {"connections_per_worker": 0},
        {"queue_timeout": 0},
        {"start_timeout": -1},
        {"graceful_shutdown_timeout": 0},
        {"idle_timeout": -1.0},
        {"min_instances": 3, "max_instances": 2},
        {"memory_limit_mb": -1},
        {"memory_reserve_mb": -1},
        {"max_requests": -1},
        {"max_requests_jitter": 1.5},
        {"request_timeout": 0},
        {"time_limit": -5.0},
        {"health_interval": 0},
        {"probe_interval": 0},
        {"probe_timeout": 0},
    ],
)
def test_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PoolSettings(**kwargs)
