"""What the front gets instead of a worker while an application is held back by its deploy script.

While an application's deploy script has to run, runs, or has failed, its route points at a
``DeployGate`` instead of its pool. The gate has the pool's two methods: ``acquire`` asks the
application's controller, which answers by raising

* ``DeployInProgress``: 503 with Retry-After and a page that reloads itself. For the request
  that started the run, when DEPLOY_LOG is unset, ``output`` carries the script's output, which
  the front streams to that browser as it comes (Helicon Zoo's behaviour);
* ``DeployFailed`` (a ``PoolUnavailable``): 503 with the end of the script's output. The output
  is shown to every client when DEPLOY_LOG is unset (it was meant for the browser), else to
  loopback clients only, like a traceback.

``release`` hands leases back to the real pool (a request that got its worker before the gate
went up finishes normally).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from corral.supervision.lease import Deliver, Lease, PoolError, PoolUnavailable, Waiter


class DeployInProgress(PoolError):
    """The deploy script runs: 503, Retry-After, a self-refreshing page (or its live output)."""

    def __init__(self, app: str, output: AsyncIterator[bytes] | None = None) -> None:
        super().__init__(app, "deployment in progress")
        #: The script's output for the one request that streams it; else None.
        self.output = output


class DeployFailed(PoolUnavailable):
    """The deploy script failed: the application stays stopped until its files change."""

    def __init__(self, app: str, reason: str, output_tail: str, *, public: bool) -> None:
        super().__init__(app, reason, output_tail)
        #: Show the output to every client (DEPLOY_LOG unset), not only to loopback ones.
        self.public = public


class DeployGate:
    """Stands in for a pool on a route (a ``LeaseSource``)."""

    def __init__(
        self,
        name: str,
        acquire: Callable[[float | None], Awaitable[Lease]],
        release: Callable[[Lease, bool], None],
    ) -> None:
        self.name = name
        self._acquire = acquire
        self._release = release

    def lease_or_wait(
        self, deliver: Deliver, queueable: bool = False, first: bool = False
    ) -> Lease | Waiter | None:
        """No fast path while the application is held back: always ``acquire()`` (None)."""
        return None

    def cancel_wait(self, waiter: Waiter) -> None:
        """(Nothing waits by callback here.)"""

    def try_acquire(self) -> Lease | None:
        """No fast path while the application is held back: always ``acquire()``."""
        return None

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        return await self._acquire(timeout)

    def release(self, lease: Lease, reusable: bool) -> None:
        self._release(lease, reusable)
