"""A ``PoolError`` across the supervisor-front link (``front_processes`` > 1): what the
supervisor's lease source raised for a front's requests (``error_info``), and the same
exception again in the front (``pool_error``), so that a front answers exactly as a
single-process host does (the 503 page, its Retry-After, a worker's traceback for loopback
clients, the deploy pages).

The one thing that does not cross: a deploy script's live output, streamed by a single host to
the request that started the script; a front answers that request with the "deployment in
progress" page, which reloads itself.
"""

from __future__ import annotations

from corral.protocol.frontlink import ErrorInfo
from corral.runtime.gate import DeployFailed, DeployInProgress
from corral.supervision.lease import PoolClosed, PoolError, PoolOverloaded, PoolUnavailable


def error_info(exc: PoolError) -> ErrorInfo:
    if isinstance(exc, PoolOverloaded):
        return ErrorInfo("overloaded", queue_size=exc.queue_size)
    if isinstance(exc, PoolClosed):
        return ErrorInfo("closed")
    if isinstance(exc, DeployInProgress):
        return ErrorInfo("deploying")
    if isinstance(exc, DeployFailed):
        return ErrorInfo("deploy_failed", exc.reason, exc.stderr_tail, public=exc.public)
    if isinstance(exc, PoolUnavailable):
        return ErrorInfo(
            "unavailable",
            exc.reason,
            exc.stderr_tail,
            exc.failures,
            exc.retry_in,
            exc.gave_up,
        )
    return ErrorInfo("unavailable", str(exc))


def pool_error(app: str, info: ErrorInfo) -> PoolError:
    kind = info.kind
    if kind == "overloaded":
        return PoolOverloaded(app, info.queue_size)
    if kind == "closed":
        return PoolClosed(app)
    if kind == "deploying":
        return DeployInProgress(app)
    if kind == "deploy_failed":
        return DeployFailed(app, info.reason, info.stderr_tail, public=info.public)
    return PoolUnavailable(
        app,
        info.reason,
        info.stderr_tail,
        failures=info.failures,
        retry_in=info.retry_in,
        gave_up=info.gave_up,
    )
