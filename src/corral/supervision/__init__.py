"""Backend worker supervision: pure policies (lifecycle, scaling, backoff) and the mechanisms that
carry them out (process, probe, pool).

The front uses ``Pool``: ``lease = await pool.acquire()``, talk over ``lease.conn``, then
``pool.release(lease, reusable=...)``. See ``pool`` for the whole story.
"""

from corral.supervision.backoff import StartBackoff
from corral.supervision.launch import (
    LIVENESS_FD,
    Address,
    LaunchPlan,
    Transport,
    corral_package_parent,
    python_worker_plan,
)
from corral.supervision.lease import (
    AcquireTimeout,
    Connect,
    Lease,
    LeaseSource,
    PoolClosed,
    PoolError,
    PoolOverloaded,
    PoolUnavailable,
    Probe,
)
from corral.supervision.lifecycle import (
    READY_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    WorkerState,
    check_transition,
)
from corral.supervision.pool import Pool, PoolSnapshot, WorkerInfo
from corral.supervision.probe import ProbeFailed, fastcgi_probe, get_values
from corral.supervision.process import SpawnError, WorkerProcess, describe_returncode
from corral.supervision.scaling import (
    LoadSample,
    ScalingDecision,
    ScalingLimits,
    WorkerLoad,
    decide,
)
from corral.supervision.settings import PoolSettings

__all__ = [
    "LIVENESS_FD",
    "READY_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AcquireTimeout",
    "Address",
    "Connect",
    "IllegalTransition",
    "LaunchPlan",
    "Lease",
    "LeaseSource",
    "LoadSample",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolOverloaded",
    "PoolSettings",
    "PoolSnapshot",
    "PoolUnavailable",
    "Probe",
    "ProbeFailed",
    "ScalingDecision",
    "ScalingLimits",
    "SpawnError",
    "StartBackoff",
    "Transport",
    "WorkerInfo",
    "WorkerLoad",
    "WorkerProcess",
    "WorkerState",
    "check_transition",
    "corral_package_parent",
    "decide",
    "describe_returncode",
    "fastcgi_probe",
    "get_values",
    "python_worker_plan",
]
