"""Backend worker supervision: pure policies (lifecycle, scaling, backoff) and the mechanisms that
carry them out (process, probe, and the pool's parts: workers, dispatch, health, load,
crashloop).

The front uses ``Pool``: ``lease = await pool.acquire()``, talk over ``lease.conn``, then
``pool.release(lease, reusable=...)``. See ``pool`` for the whole story.
"""

from corral.supervision.backoff import StartBackoff
from corral.supervision.launch import (
    LIVENESS_FD,
    Address,
    LaunchPlan,
    WorkerSocket,
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
    WorkerTraits,
)
from corral.supervision.lifecycle import (
    READY_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    PoolState,
    WorkerState,
    check_transition,
)
from corral.supervision.pool import Pool
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
from corral.supervision.snapshot import ExitInfo, PoolSnapshot, WorkerInfo

__all__ = [
    "LIVENESS_FD",
    "READY_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AcquireTimeout",
    "Address",
    "Connect",
    "ExitInfo",
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
    "PoolState",
    "PoolUnavailable",
    "Probe",
    "ProbeFailed",
    "ScalingDecision",
    "ScalingLimits",
    "SpawnError",
    "StartBackoff",
    "WorkerInfo",
    "WorkerLoad",
    "WorkerProcess",
    "WorkerSocket",
    "WorkerState",
    "WorkerTraits",
    "check_transition",
    "corral_package_parent",
    "decide",
    "describe_returncode",
    "fastcgi_probe",
    "get_values",
    "python_worker_plan",
]
