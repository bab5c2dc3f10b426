"""The seam between the front and whatever gives it backends: a ``LeaseSource`` (an
application's ``Pool``, a ``ServicePool`` for a server Corral does not start, the deploy gate)
hands out ``Lease`` objects, each carrying an ``Upstream`` for one request, or raises one of the
``PoolError`` family, which the front answers with a 503.

The front knows sources only through this protocol: no ``Any``, no type tests, no attribute
look-ups by name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from corral.backends import PooledUpstream, Upstream
from corral.errors import CorralError
from corral.supervision.launch import Address


@dataclass(frozen=True, slots=True)
class WorkerTraits:
    """What a readiness probe learned about a worker (``Probe``'s answer)."""

    #: The connections it serves at once (FastCGI's ``FCGI_MAX_CONNS``), when it says.
    max_conns: int | None = None
    #: It serves requests queued on one connection one after another (Corral's worker:
    #: ``CORRAL_PIPELINE``), so the pool may queue requests on its busy connections.
    pipelining: bool = False
    #: It starts a thread per connection on demand up to ``max_conns`` (Corral's WSGI worker
    #: with ``--max-threads``: ``CORRAL_ELASTIC``), so the pool may open as few connections as
    #: the load needs (``concurrency.decide_capacity``).
    elastic: bool = False


#: Opens a connection to a worker or a service (the front's FastCGI or HTTP client).
Connect: TypeAlias = Callable[[Address], Awaitable[PooledUpstream]]
#: Readiness check: returns when the worker at ``Address`` is ready; raises otherwise. The float
#: is the time allowed, in seconds. It returns what it learned of the worker (``WorkerTraits``:
#: ``fastcgi_probe`` reads them from the FCGI_GET_VALUES answers; a port probe learns nothing):
#: a worker advertising a larger ``max_conns`` than ``connections_per_worker`` (an ASGI worker
#: serves many connections on one event loop) is given that many connections.
Probe: TypeAlias = Callable[[Address, float], Awaitable[WorkerTraits]]


class PoolError(CorralError):
    """A request could not be given a worker. Every subclass maps to 503 at the front."""

    def __init__(self, app: str, message: str) -> None:
        super().__init__(f"app {app}: {message}")
        self.app = app


class PoolOverloaded(PoolError):
    """The wait queue is full (503 + Retry-After)."""

    def __init__(self, app: str, queue_size: int) -> None:
        super().__init__(app, f"overloaded: {queue_size} requests already wait for a worker")
        self.queue_size = queue_size


class AcquireTimeout(PoolError):
    """The request waited longer than its timeout for a worker (503)."""

    def __init__(self, app: str, waited: float) -> None:
        super().__init__(app, f"no worker became free within {waited:g} s")
        self.waited = waited


class PoolUnavailable(PoolError):
    """The application cannot start (503, with ``stderr_tail``, often a traceback, on the page).

    ``failures`` counts the consecutive failed starts, ``retry_in`` says in how many seconds the
    next one is due (None: the next request tries), ``gave_up``: the app is FAILED (see
    ``backoff``)."""

    def __init__(
        self,
        app: str,
        reason: str,
        stderr_tail: str = "",
        *,
        failures: int = 0,
        retry_in: float | None = None,
        gave_up: bool = False,
    ) -> None:
        super().__init__(app, f"cannot start: {reason}")
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.failures = failures
        self.retry_in = retry_in
        self.gave_up = gave_up


class PoolClosed(PoolUnavailable):
    """The pool is shutting down."""

    def __init__(self, app: str) -> None:
        super().__init__(app, "the application is shutting down")


# ------------------------------------------------------------------------------------ leases


@dataclass(eq=False, slots=True)
class Lease:
    """One request's hold on one worker (or one connection to a service). Give it back with
    the source's ``release``."""

    #: What the front drives for this request: the pooled connection itself, or, for a request
    #: queued behind others on it (pipelining), that request's own handle (``follower()``).
    conn: Upstream
    #: The pool's connection that carries the request.
    pooled: PooledUpstream
    worker_pid: int
    worker_id: int
    released: bool = False
    #: When the lease was given (``time.monotonic()``).
    started: float = 0.0
    #: The request ran past ``request_timeout``: the pool closed its connection (answer 504).
    timed_out: bool = False
    #: A request queued behind others on a busy connection (pipelining), and whether it still
    #: waits its turn (the front calls ``began()`` when it becomes the one served).
    follower: bool = False
    queued: bool = False
    #: The front saw no sign of the request in time (its ``response_timeout``: 504): the worker
    #: is taken for stuck when the lease is released, as past ``request_timeout``.
    stuck: bool = False
    #: Its worker was found dead when the lease came back (a request it closed on may have
    #: killed it: not one to send again).
    lost: bool = False
    #: The request became a tunnel (101 Switching Protocols): it lasts as long as its client
    #: connection, with no request timeout.
    open_ended: bool = False
    #: The client left (or was answered with an error) before the worker's answer ended: the
    #: time it held the worker is no measure of the app's service time.
    abandoned: bool = False

    def began(self) -> None:
        """A queued request is now served: its time (request timeout, service time) starts."""
        self.queued = False
        self.started = time.monotonic()


#: A request waiting in a source's queue (``lease_or_wait``): give it up with ``cancel_wait``.
Waiter: TypeAlias = "asyncio.Future[object]"
#: How a waiting request gets its answer: the lease, the error ``acquire()`` would raise, or
#: None ("await ``acquire()`` instead").
Deliver: TypeAlias = Callable[["Lease | PoolError | None"], None]


class LeaseSource(Protocol):
    """Everything the front needs of a pool, a service pool or the deploy gate."""

    @property
    def name(self) -> str:
        """The application's name (logs, errors)."""

    def lease_or_wait(
        self, deliver: Deliver, queueable: bool = False, first: bool = False
    ) -> Lease | Waiter | None:
        """A lease at once; or the request waits (its ``Waiter`` returned, ``deliver`` called
        later); or None: the caller awaits ``acquire()``. ``queueable``: a request without a
        body that may be queued on a busy connection; ``first``: a request sent back, which
        waits at the head of the queue. Raises what ``acquire()`` raises at once."""

    def cancel_wait(self, waiter: Waiter) -> None:
        """Give up a wait begun by ``lease_or_wait``."""

    def try_acquire(self) -> Lease | None:
        """A lease at once when one is free and nobody waits, else None (then ``acquire``)."""

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        """A lease, waiting up to ``timeout`` seconds. Raises a ``PoolError``."""

    def release(self, lease: Lease, reusable: bool) -> None:
        """Give the lease back; ``reusable``: its connection may serve another request."""
