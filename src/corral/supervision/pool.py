"""One application's backend workers: start them, lease them per request, replace, stop. Mechanism.

The front server, per request::

    lease = await pool.acquire()          # PoolOverloaded / AcquireTimeout / PoolUnavailable -> 503
    try:
        ... talk FastCGI over lease.conn ...
    finally:
        pool.release(lease, reusable=ok)  # ok: the connection is clean and may be kept alive

How the pool works:

* **Lazy start.** Nothing runs until the first ``acquire``; from then on at least
  ``min_instances`` workers are kept (the floor), up to ``max_instances``.
* **Leasing.** A worker serves ``connections_per_worker`` requests at once (its threads), one per
  connection, or more when its readiness probe says so (``FCGI_MAX_CONNS``: an ASGI worker
  serves many connections on one event loop). A request goes to the least busy ready worker
  (ties: the most recently used, so that surplus workers go idle and can be stopped), over a
  kept-alive connection when one is free, else over a new one from ``connect``. When no worker
  has room the request waits in a bounded FIFO queue: ``queue_size`` waiting requests at most
  (``PoolOverloaded`` beyond), each for ``queue_timeout`` seconds at most (``AcquireTimeout``).
* **Scaling.** The pool samples its load and asks the pure policy (``scaling.decide``) what to
  do: start workers when requests wait, stop workers idle longer than ``idle_timeout``. The
  policy decides, the pool executes.
* **Readiness.** A worker is READY when it answers the probe (FCGI_GET_VALUES) within
  ``start_timeout``. If it exits first (exit code 4: the app cannot be loaded), times out or
  fails the probe, it has failed to start. When no worker is left running, every waiting
  request gets ``PoolUnavailable(reason, stderr_tail)`` (the traceback for the error page) and
  the next request tries again. When others still run, further starts back off
  (``backoff.StartBackoff``).
* **Crashes.** A worker that exits unexpectedly is logged ("worker pid X exited with code N /
  killed by signal S"), its kept-alive connections are closed, the request in flight on it sees
  its connection break (the front answers 502), and the policy replaces it if the floor or
  waiting requests need it.
* **Rolling restart.** ``restart(reason)`` (watched files changed, restart.txt touched, the
  configuration changed) starts a new generation of workers next to the old one. Each new
  worker that becomes ready retires one old worker: out of rotation at once, it finishes the
  requests it holds (up to ``graceful_shutdown_timeout``) and only then gets SIGTERM. No request
  is refused meanwhile. If the new code cannot start, the old workers keep serving.
* **Health.** Every ``health_interval`` seconds the pool samples the machine (available memory,
  idle CPU) and each worker's resident memory (psutil, in a thread), recycles workers past
  ``memory_limit_mb`` or ``time_limit`` (retired as above, one per round for the time limit so
  that workers started together do not all go at once), and probes workers idle for
  ``probe_interval``: one that does not answer within ``probe_timeout`` is killed and replaced. A
  worker is recycled after ``max_requests`` requests, plus a random jitter of up to
  ``max_requests_jitter`` of that, so that workers do not all recycle together.
* **Request timeout.** A request holding a worker longer than ``request_timeout``
  (WORKER_REQUEST_TIMEOUT) is cut: its lease is marked ``timed_out`` and its connection closed
  (the front answers 504), the worker is asked for its Python stack (``STACK_DUMP_SIGNAL``: it
  lands in the app's log) and is retired, then killed once its other requests are done.
* **Crash loops.** When no worker can start, starts are retried after growing delays
  (``StartBackoff``); meanwhile requests get ``PoolUnavailable`` at once, with the traceback,
  the failure count and when the next try is due. After ``give_up_after`` failures the app is
  FAILED: retried once per ``backoff.maximum`` seconds, or as soon as its source files
  (``source_suffixes`` under the app's folder) change: a fixed app recovers by itself.
* **Closing.** ``close(grace)`` refuses new requests, fails waiting ones, waits up to ``grace``
  seconds for leases in flight, then stops every worker (SIGTERM, ``graceful_shutdown_timeout``,
  SIGKILL) and removes the private runtime directory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import cast

import psutil  # type: ignore[import-untyped]

from corral.backends import PooledUpstream, Upstream
from corral.errors import ExitCode
from corral.protocol.fastcgi.constants import CORRAL_PIPELINE, FCGI_MAX_CONNS
from corral.supervision.launch import Address, LaunchPlan, Transport
from corral.supervision.lease import (
    AcquireTimeout,
    Connect,
    Deliver,
    Lease,
    PoolClosed,
    PoolError,
    PoolOverloaded,
    PoolUnavailable,
    Probe,
    Waiter,
)
from corral.supervision.lifecycle import WorkerState, check_transition
from corral.supervision.probe import ProbeFailed, fastcgi_probe
from corral.supervision.process import SpawnError, WorkerProcess, describe_returncode
from corral.supervision.scaling import (
    HELD_BY_MEMORY,
    QUEUE_AHEAD_LIMIT,
    LoadSample,
    ScalingDecision,
    WorkerLoad,
    decide,
    queue_depth,
)
from corral.supervision.settings import PoolSettings

_log = logging.getLogger("corral.supervision.pool")

#: The most connections per worker the pool takes from a worker's FCGI_MAX_CONNS.
MAX_LEARNED_CAPACITY = 1000

#: After a failed probe, how long to wait for the process to exit (its exit code and traceback
#: explain the failure better than "connection reset").
_EXIT_AFTER_PROBE_FAILURE = 1.0
#: After asking a worker for its stack, how long to let it write before it is killed.
_STACK_DUMP_GRACE = 0.3
#: Smoothing of the arrival rate (time constant, seconds) and of the service time (weight).
_RATE_WINDOW = 5.0
_SERVICE_WEIGHT = 0.05
#: A held-back start is logged again at most this often (seconds).
_HELD_LOG_INTERVAL = 10.0
#: A failed app's source files are scanned at most this often (seconds), and so many at most.
_FINGERPRINT_INTERVAL = 1.0
_FINGERPRINT_MAX_FILES = 20000
_MIB = 1024 * 1024
#: Under a stream of queued requests, the policy is asked at most this often (seconds): its
#: decisions (start a worker) take far longer to carry out than this.
EVALUATE_EVERY = 0.002


# ------------------------------------------------------------------------------------ data out


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker, for the status page."""

    worker_id: int
    pid: int | None
    state: str
    active: int
    requests_served: int
    address: str | None
    #: Resident memory at the last health round, in MiB (None before the first).
    memory_mb: float | None = None
    #: Seconds since it became ready (None while starting).
    age: float | None = None
    #: Why it is being retired, if it is.
    retiring: str | None = None


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One pool, for the status page: plain data."""

    app: str
    workers: tuple[WorkerInfo, ...]
    waiting: int
    in_flight: int
    start_failures: int
    last_error: str | None
    closing: bool
    #: The bounds in force (``max_instances == 0`` already resolved to the CPU count).
    min_instances: int
    max_instances: int
    #: "dormant" (nothing started yet, or scaled to zero), "running", "backoff" (the app failed
    #: to start; retried in ``retry_in`` s), "failed" (gave up: retried when its files change
    #: or after the backoff ceiling), "closing".
    state: str = "running"
    retry_in: float | None = None
    #: Requests queued on busy workers' connections, not yet begun (pipelining; not counted in
    #: ``waiting``).
    queued: int = 0
    #: Seconds the oldest waiting request has waited.
    oldest_wait: float = 0.0
    #: Recent requests per second, and seconds a request holds a worker (smoothed).
    arrival_rate: float = 0.0
    service_time: float | None = None
    #: Recent seconds from spawn to ready (smoothed).
    spawn_time: float | None = None
    #: The machine at the last sample: available memory (MiB) and idle CPU (0..1).
    free_memory_mb: float | None = None
    cpu_idle: float | None = None
    #: Starts the policy wanted but held back, and why ("free memory 40 MiB is below...").
    held_back: int = 0
    held_reason: str | None = None


@dataclass(eq=False)
class _Worker:
    id: int
    state: WorkerState = WorkerState.STARTING
    process: WorkerProcess | None = None
    active: int = 0
    requests_served: int = 0
    idle_since: float | None = None
    last_used: float = 0.0
    idle_conns: list[PooledUpstream] = field(default_factory=list)
    #: It serves requests queued on a connection (probe: CORRAL_PIPELINE), and its leased
    #: connections (the ones such requests may queue on).
    pipelining: bool = False
    busy_conns: list[PooledUpstream] = field(default_factory=list)
    #: Seen dead (its connection closed, the process a zombie) before its exit was reaped.
    died: bool = False
    task: asyncio.Task[None] | None = None
    spawned_at: float = 0.0
    #: The restart generation this worker belongs to (``Pool.restart`` starts a new one).
    generation: int = 0
    #: Retired while requests were in flight: SIGTERM once they are done (or at the deadline).
    draining: asyncio.TimerHandle | None = None
    #: When it became ready (loop clock); its request limit (0 = none), with jitter.
    ready_at: float = 0.0
    max_requests: int = 0
    #: Resident memory at the last health round (bytes), and the last successful probe.
    rss: int | None = None
    last_probe: float = 0.0
    probing: bool = False
    #: Why it is retired; kill it (rather than SIGTERM) once drained: a request hung in it.
    retiring: str | None = None
    kill_when_drained: bool = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


def _format_address(address: Address) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


# ------------------------------------------------------------------------------------ the pool


class Pool:
    """The workers of one application."""

    def __init__(
        self,
        name: str,
        plan: LaunchPlan,
        settings: PoolSettings,
        connect: Connect,
        probe: Probe = fastcgi_probe,
        *,
        runtime_root: str | None = None,
    ) -> None:
        """
        Args:
            name: the application's name (logs, errors, status).
            plan: how to start one worker.
            settings: limits and timeouts.
            connect: opens a connection to a worker's address (the front's backend client).
            probe: readiness check; default: FCGI_GET_VALUES answered.
            runtime_root: where the pool makes its private (0700) directory for Unix sockets;
                default ``$XDG_RUNTIME_DIR`` if set, else the system temporary directory.
        """
        self.name = name
        self.plan = plan
        self.settings = settings
        self._limits = settings.limits()
        #: Connections one worker takes at once: connections_per_worker, or more when the
        #: workers advertise more (FCGI_MAX_CONNS, learned from the readiness probe).
        self._capacity = settings.connections_per_worker
        self._connect = connect
        self._probe = probe
        self._runtime_root = runtime_root
        self._runtime_dir: str | None = None
        self._workers: dict[int, _Worker] = {}
        self._next_id = 1
        self._waiters: collections.deque[Waiter] = collections.deque()
        self._leases: set[Lease] = set()
        self._drained: asyncio.Event | None = None
        # Dormant until the first acquire, and again after the app failed to start.
        self._active = False
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._start_failures = 0
        self._next_start_at = 0.0
        self._last_error: PoolUnavailable | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._stopping: set[asyncio.Task[None]] = set()
        #: Connections being opened for waiters served by callback (``lease_or_wait``).
        self._connecting: set[asyncio.Task[None]] = set()
        # Rolling restarts: the current generation and the callers waiting for it to finish.
        self._generation = 0
        self._restart_waiters: list[asyncio.Future[bool]] = []
        # Set when the last worker is gone (``stop_workers`` waits for it).
        self._emptied: asyncio.Event | None = None
        # What the scaling policy observes (see _sample).
        self._wait_started: dict[Waiter, float] = {}
        #: Waiters from lease_or_wait(queueable=True): they may be queued on a busy connection.
        self._queueable: set[Waiter] = set()
        #: Leases of requests queued on busy connections, and when to look for stuck ones next.
        self._followers = 0
        self._withdraw_timer: asyncio.TimerHandle | None = None
        #: When the policy was last asked (loop clock).
        self._evaluated_at = -1e9
        self._arrivals = 0
        self._arrival_rate = 0.0
        self._rate_at = 0.0
        self._service_time: float | None = None
        self._spawn_time: float | None = None
        self._free_memory: int | None = None
        self._cpu_idle: float | None = None
        self._memory_at = -1e9
        self._held_back = 0
        self._held_reason: str | None = None
        self._held_logged = -1e9
        # Health rounds and the request-timeout sweep.
        self._health_task: asyncio.Task[None] | None = None
        self._health_at = -1e9
        self._tasks: set[asyncio.Task[None]] = set()
        # Crash loops: the app's files when it last failed to start, and the last scan.
        self._fingerprint: asyncio.Future[object] | None = None
        self._fingerprint_checked = -1e9
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the pool runs on, looked up once: on Python 3.11 every
        ``asyncio.get_running_loop()`` makes a getpid() system call, and the hot path asked
        several times per request."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # -------------------------------------------------------------------------------- public

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        """Lease a worker for one request, waiting up to ``timeout`` (default queue_timeout) s.

        Raises:
            PoolOverloaded: the wait queue is full.
            AcquireTimeout: no worker became free in time.
            PoolUnavailable: the application cannot start (or the pool is closing:
                ``PoolClosed``).
        """
        if self._closing:
            raise PoolClosed(self.name)
        if not self._active:
            await self._activate()
            if self._closing:
                raise PoolClosed(self.name)
        self._arrivals += 1
        loop = self._running_loop()
        limit = self.settings.queue_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        retry = False
        while True:
            worker = None if self._waiters else self._pick()
            if worker is not None:
                self._reserve(worker)
            else:
                if not retry and len(self._waiters) >= self.settings.queue_size:
                    raise PoolOverloaded(self.name, self.settings.queue_size)
                worker = await self._wait_for_worker(deadline, limit, front=retry)
            conn = self._take_idle_connection(worker)
            try:
                if conn is None:
                    assert worker.process is not None
                    async with asyncio.timeout_at(deadline):
                        conn = await self._connect(worker.process.address)
            except OSError as exc:
                self._connect_failed(worker, exc)
                retry = True
                continue
            except TimeoutError:
                self._unreserve(worker, served=False)
                raise AcquireTimeout(self.name, limit) from None
            except BaseException:
                self._unreserve(worker, served=False)
                raise
            if self._closing:  # close() began while we connected
                conn.close()
                self._unreserve(worker, served=False)
                raise PoolClosed(self.name)
            return self._new_lease(worker, conn)

    def try_acquire(self) -> Lease | None:
        """``acquire()``'s fast path, without waiting: a lease at once when no request waits
        and a ready worker with room has a kept-alive connection open; else None, and the
        caller awaits ``acquire()`` (which starts workers, queues, connects and raises).
        It costs no task, future or timer: the front's common case when workers keep up."""
        if self._closing or not self._active or self._waiters:
            return None
        worker = self._pick()
        if worker is None or worker.process is None:
            return None
        conn = self._take_idle_connection(worker)
        if conn is None:
            return None
        self._reserve(worker)
        self._arrivals += 1
        return self._new_lease(worker, conn)

    def _new_lease(self, worker: _Worker, conn: PooledUpstream) -> Lease:
        assert worker.process is not None
        lease = Lease(
            conn=conn,
            pooled=conn,
            worker_pid=worker.process.pid,
            worker_id=worker.id,
            started=time.monotonic(),
        )
        self._leases.add(lease)
        if worker.pipelining:
            worker.busy_conns.append(conn)
        return lease

    def _drained_conn(self, conn: PooledUpstream) -> None:
        """A connection carried only answers nobody waited for (requests withdrawn, or whose
        clients left) after its last lease was given back: it is free again."""
        for worker in self._workers.values():
            if conn in worker.busy_conns:
                worker.busy_conns.remove(conn)
                if (
                    worker.state.is_ready
                    and not self._closing
                    and not conn.is_closed
                    and len(worker.idle_conns) < self._capacity
                ):
                    worker.idle_conns.append(conn)
                    self._dispatch()
                else:
                    conn.close()
                return
        conn.close()

    def _on_withdraw_timer(self) -> None:
        """Every QUEUE_AHEAD_LIMIT s while requests are queued on busy connections: those
        behind a request that has run longer go back to the queue (``_withdraw_stuck``)."""
        self._withdraw_timer = None
        if not self._followers or self._closing:
            return
        self._withdraw_stuck()
        self._withdraw_timer = self._running_loop().call_later(
            QUEUE_AHEAD_LIMIT, self._on_withdraw_timer
        )

    def _withdraw_stuck(self) -> None:
        """Requests queued behind one that has run past QUEUE_AHEAD_LIMIT go back to the queue
        (``withdraw_stuck``), when another worker may take them (with one worker and no room,
        they are as well where they are)."""
        ready = [w for w in self._workers.values() if w.state.is_ready]
        if len(ready) < 2 and not any(w.active < self._capacity for w in ready):
            return
        for worker in ready:
            for conn in worker.busy_conns:
                conn.withdraw_stuck(QUEUE_AHEAD_LIMIT)

    def _try_follow(self) -> Lease | None:
        """When every worker is busy: a lease for a request (without a body) queued on a busy
        connection of the least busy worker that takes such requests, as deep as the policy
        allows (``queue_depth``: a few ms of work ahead at most, ``pipeline_depth`` requests
        at most), and never behind a request that has run that long already. None when there
        is no room."""
        depth = queue_depth(self._service_time, self.settings.pipeline_depth)
        if depth < 2 or self._closing:
            return None
        best: _Worker | None = None
        handle: Upstream | None = None
        base: PooledUpstream | None = None
        tried: list[_Worker] = []
        while True:  # the least busy worker with room first
            worker = None
            for candidate in self._workers.values():
                if (
                    candidate.busy_conns
                    and candidate.state.is_ready
                    and (worker is None or candidate.active < worker.active)
                    and candidate not in tried
                ):
                    worker = candidate
            if worker is None:
                break
            for conn in worker.busy_conns:
                handle = conn.follower(depth, QUEUE_AHEAD_LIMIT)
                if handle is not None:
                    best, base = worker, conn
                    break
            if best is not None:
                break
            tried.append(worker)
        if best is None or best.process is None or base is None or handle is None:
            if handle is not None:
                handle.close()
            return None
        self._reserve(best)
        self._arrivals += 1
        # (A connection that gives out followers says when it is free again: _drained_conn.)
        base.when_drained(self._drained_conn)
        lease = Lease(
            conn=handle,
            pooled=base,
            worker_pid=best.process.pid,
            worker_id=best.id,
            started=time.monotonic(),
            follower=True,
            queued=True,
        )
        self._leases.add(lease)
        self._followers += 1
        if self._withdraw_timer is None:
            self._withdraw_timer = self._running_loop().call_later(
                QUEUE_AHEAD_LIMIT, self._on_withdraw_timer
            )
        return lease

    # ---------------------------------------------------------------- leasing by callback

    def lease_or_wait(
        self,
        deliver: Deliver,
        queueable: bool = False,
        first: bool = False,
    ) -> Lease | Waiter | None:
        """``acquire()`` for a caller driven by callbacks (the front): no task, coroutine or
        timer per request, so that a request that has to queue costs little more than one
        that does not.

        Returns a lease at once when ``try_acquire`` has one. Otherwise, when the request
        has to wait, queues it like ``acquire()`` and returns its waiter: ``deliver`` is
        called later, from the event loop, with the lease, or with the error ``acquire()``
        would raise (``PoolUnavailable``, ``PoolClosed``, ``AcquireTimeout`` while
        connecting), or with None, which like a None returned here means "await
        ``acquire()`` instead" (a worker has room but first needs a connection, or the one
        handed over could not be reached). The caller times the wait itself and gives up
        with ``cancel_wait(waiter)``. Raises at once what ``acquire()`` raises at once
        (``PoolClosed``, ``PoolUnavailable`` while starts back off, ``PoolOverloaded``).

        ``queueable``: the request has no body, so when every worker is busy it may be queued
        on a busy worker's connection (``pipeline_depth``); its lease is then ``queued`` until
        the front calls ``lease.began()``. ``first``: a request sent back (withdrawn from a
        connection, see ``_withdraw_stuck``) waits at the head of the queue."""
        if self._closing:
            raise PoolClosed(self.name)
        if not self._active:
            return None  # waking a dormant pool may wait (see _activate): acquire() does it
        lease = self.try_acquire()
        if lease is not None:
            return lease
        # Requests queued on busy connections count toward the queue's bound as waiting ones.
        waiting = len(self._waiters) + self._followers
        if not self._waiters:
            if self._pick() is not None:
                return None
            if queueable and waiting < self.settings.queue_size:
                lease = self._try_follow()
                if lease is not None:
                    return lease
        if waiting >= self.settings.queue_size:
            raise PoolOverloaded(self.name, self.settings.queue_size)
        self._arrivals += 1
        loop = self._running_loop()
        waiter: Waiter = loop.create_future()
        self._wait_started[waiter] = loop.time()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        if queueable:
            self._queueable.add(waiter)
        waiter.add_done_callback(functools.partial(self._waited, deliver))
        self._evaluate_on_arrival()
        return waiter

    def cancel_wait(self, waiter: Waiter) -> None:
        """Give up a wait begun by ``lease_or_wait``: its ``deliver`` is not called, unless a
        worker was already handed to it (then it gets the lease, to release)."""
        if waiter.done():
            return
        self._wait_started.pop(waiter, None)
        self._queueable.discard(waiter)
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        waiter.cancel()

    def _waited(
        self,
        deliver: Deliver,
        waiter: Waiter,
    ) -> None:
        self._wait_started.pop(waiter, None)
        self._queueable.discard(waiter)
        if waiter.cancelled():
            return
        error = waiter.exception()
        if error is not None:
            if not isinstance(error, PoolError):
                error = PoolUnavailable(self.name, str(error))
            deliver(error)
            return
        result = waiter.result()
        if type(result) is Lease:  # queued on a busy connection (see _dispatch)
            deliver(result)
            return
        worker = cast(_Worker, result)
        conn = self._take_idle_connection(worker)
        if conn is None or self._closing or worker.process is None:
            # No kept-alive connection to this worker yet: connect, keeping its place.
            task = self._running_loop().create_task(self._lease_reserved(worker, deliver))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            return
        deliver(self._new_lease(worker, conn))

    async def _lease_reserved(
        self,
        worker: _Worker,
        deliver: Deliver,
    ) -> None:
        """A waiter was handed ``worker``, which has no kept-alive connection: open one (as
        ``acquire()`` does), then deliver the lease."""
        limit = self.settings.queue_timeout
        try:
            if self._closing or worker.process is None:
                raise PoolClosed(self.name)
            async with asyncio.timeout(limit):
                conn = await self._connect(worker.process.address)
        except OSError as exc:
            self._connect_failed(worker, exc)
            deliver(None)  # another worker, through acquire()
            return
        except TimeoutError:
            self._unreserve(worker, served=False)
            deliver(AcquireTimeout(self.name, limit))
            return
        except PoolError as exc:
            self._unreserve(worker, served=False)
            deliver(exc)
            return
        except BaseException:
            self._unreserve(worker, served=False)
            raise
        if self._closing:
            conn.close()
            self._unreserve(worker, served=False)
            deliver(PoolClosed(self.name))
            return
        assert worker.process is not None
        deliver(self._new_lease(worker, conn))

    def release(self, lease: Lease, reusable: bool) -> None:
        """Give a worker back. ``reusable``: the connection is clean and may serve another
        request (kept alive); otherwise it is closed. Releasing twice does nothing."""
        if lease.released:
            return
        lease.released = True
        self._leases.discard(lease)
        held = time.monotonic() - lease.started
        if lease.follower:
            self._followers -= 1
        service = self._service_time
        self._service_time = (
            held if service is None else service + _SERVICE_WEIGHT * (held - service)
        )
        worker = self._workers.get(lease.worker_id)
        conn = lease.pooled
        if lease.follower:  # a request that was queued on a busy connection
            lease.conn.close()  # its own handle: see Follower.close (the connection stays
            # open unless the request was being served and is given up)
            reusable = not conn.is_closed
        queued_on = conn.in_flight
        if reusable and queued_on and worker is not None and worker.pipelining:
            pass  # requests queued on the connection are still to be served: it stays busy
        else:
            if worker is not None and worker.busy_conns:
                with contextlib.suppress(ValueError):
                    worker.busy_conns.remove(conn)
            if (
                reusable
                and worker is not None
                and worker.state.is_ready
                and not self._closing
                and not conn.is_closed
                and len(worker.idle_conns) < self._capacity
            ):
                worker.idle_conns.append(conn)
            else:
                conn.close()
        if (
            not reusable
            and worker is not None
            and worker.state.is_ready
            and conn.closed_by_peer
            and worker.process is not None
            and worker.process.gone()
        ):
            # It died and is not reaped yet: no more requests for it meanwhile (those sent back
            # from its connection would be handed to it again, and wait on its listening
            # socket until the pool reaps it).
            worker.died = True
            self._set_state(worker, WorkerState.STOPPING)
            self._close_idle_connections(worker)
        if worker is not None:
            self._unreserve(worker, served=True)
        if self._drained is not None and not self._leases:
            self._drained.set()

    async def close(self, grace: float | None = None) -> None:
        """Stop handing out workers, wait up to ``grace`` s (default graceful_shutdown_timeout)
        for leases in flight, then stop every worker and remove the runtime directory."""
        loop = self._running_loop()
        if self._closed is not None:
            await asyncio.shield(self._closed)
            return
        self._closed = loop.create_future()
        self._closing = True
        try:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._withdraw_timer is not None:
                self._withdraw_timer.cancel()
                self._withdraw_timer = None
            background = [t for t in (self._health_task, *self._tasks) if t is not None]
            self._health_task = None
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._fail_waiters(PoolClosed(self.name))
            if grace is None:
                grace = self.settings.graceful_shutdown_timeout
            if self._leases:
                self._drained = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), grace)
                if self._leases:
                    _log.warning(
                        "app %s: %d request(s) still in flight after %g s; stopping anyway",
                        self.name,
                        len(self._leases),
                        grace,
                        extra={"app": self.name},
                    )
            for worker in list(self._workers.values()):
                if worker.state is WorkerState.STARTING:
                    self._set_state(worker, WorkerState.STOPPING)
                    if worker.task is not None:
                        worker.task.cancel()
                elif worker.state.is_ready:
                    self._stop_worker(worker)
                elif worker.draining is not None:
                    self._end_drain(worker)
            tasks = [w.task for w in self._workers.values() if w.task is not None]
            tasks.extend(self._stopping)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            # Even if this close was cancelled half-way: no worker outlives it.
            for worker in self._workers.values():
                if worker.process is not None:
                    worker.process.kill()
            if self._runtime_dir is not None:
                shutil.rmtree(self._runtime_dir, ignore_errors=True)
                self._runtime_dir = None
            waiters, self._restart_waiters = self._restart_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(False)
            self._closed.set_result(None)

    async def restart(self, reason: str) -> bool:
        """Replace every worker with a fresh one, rolling: no request is refused meanwhile.

        A new generation of workers is started (as many as are ready now, at least the floor);
        each one that becomes ready retires one worker of an older generation, which finishes
        the requests it holds before it is stopped. Old workers still starting are cancelled.
        A dormant pool (nothing started yet, or idle at zero) has nothing to replace: its next
        request starts the new code.

        Returns True once no worker of an older generation is left; False when the new workers
        could not start (the old ones keep serving; the next restart or scaling start tries
        again). A later ``restart`` supersedes this one (both then return its result).

        Raises:
            PoolClosed: the pool is closing.
        """
        if self._closing:
            raise PoolClosed(self.name)
        loop = self._running_loop()
        self._generation += 1
        # The files changed: earlier start failures say nothing about the new code.
        self._start_failures = 0
        self._next_start_at = 0.0
        self._last_error = None
        ready = 0
        for worker in list(self._workers.values()):
            if worker.state is WorkerState.STARTING:
                # Still loading the old code: not worth waiting for.
                self._set_state(worker, WorkerState.STOPPING)
                if worker.task is not None:
                    worker.task.cancel()
            elif worker.state.is_ready:
                ready += 1
        wanted = ready
        if self._active:
            wanted = max(wanted, self._limits.min_instances, 1 if self._waiters else 0)
        if wanted == 0:
            _log.info(
                "app %s: restart (%s): no worker runs; the next request starts the new code",
                self.name,
                reason,
                extra={"app": self.name},
            )
            return True
        self._active = True
        _log.info(
            "app %s: rolling restart (%s): starting %d new worker(s); %d old worker(s) serve "
            "until the new ones are ready",
            self.name,
            reason,
            wanted,
            ready,
            extra={"app": self.name},
        )
        for _ in range(wanted):
            self._start_worker()
        done: asyncio.Future[bool] = loop.create_future()
        self._restart_waiters.append(done)
        self._check_restart()
        return await asyncio.shield(done)

    async def stop_workers(self, reason: str) -> None:
        """Stop every worker and go dormant; the next ``acquire`` starts fresh ones.

        Workers serving requests finish them first (as in a rolling restart); requests waiting
        for a worker get ``PoolUnavailable(reason)``. Returns when no worker process is left.
        For running an application's deploy script, which wants the application stopped.
        """
        if self._closing:
            return
        self._active = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fail_waiters(PoolUnavailable(self.name, reason))
        if self._workers:
            _log.info(
                "app %s: stopping %d worker(s): %s",
                self.name,
                len(self._workers),
                reason,
                extra={"app": self.name},
            )
        for worker in list(self._workers.values()):
            if worker.state is WorkerState.STARTING:
                self._set_state(worker, WorkerState.STOPPING)
                if worker.task is not None:
                    worker.task.cancel()
            elif worker.state.is_ready:
                self._retire(worker, reason)
        while self._workers:
            self._emptied = asyncio.Event()
            await self._emptied.wait()

    def snapshot(self) -> PoolSnapshot:
        """The pool's state as plain data (for a status page)."""
        try:
            now = self._running_loop().time()
        except RuntimeError:  # called outside the loop (a test, a status dump at exit)
            now = time.monotonic()
        workers = tuple(
            WorkerInfo(
                worker_id=w.id,
                pid=w.pid,
                state=w.state.value,
                active=w.active,
                requests_served=w.requests_served,
                address=None if w.process is None else _format_address(w.process.address),
                memory_mb=None if w.rss is None else round(w.rss / _MIB, 1),
                age=round(now - w.ready_at, 3) if w.ready_at else None,
                retiring=w.retiring,
            )
            for w in sorted(self._workers.values(), key=lambda w: w.id)
        )
        retry_in: float | None = None
        if self._closing:
            state = "closing"
        elif self._last_error is not None and not self._active:
            state = "failed" if self.settings.backoff.gave_up(self._start_failures) else "backoff"
            retry_in = max(self._next_start_at - now, 0.0)
        elif not self._active and not self._workers:
            state = "dormant"
        else:
            state = "running"
        return PoolSnapshot(
            app=self.name,
            workers=workers,
            waiting=len(self._waiters),
            in_flight=len(self._leases),
            queued=sum(1 for lease in self._leases if lease.queued),
            start_failures=self._start_failures,
            last_error=None if self._last_error is None else str(self._last_error),
            closing=self._closing,
            min_instances=self._limits.min_instances,
            max_instances=self._limits.max_instances,
            state=state,
            retry_in=retry_in,
            oldest_wait=self._oldest_wait(now),
            arrival_rate=round(self._arrival_rate, 3),
            service_time=self._service_time,
            spawn_time=self._spawn_time,
            free_memory_mb=None if self._free_memory is None else self._free_memory / _MIB,
            cpu_idle=self._cpu_idle,
            held_back=self._held_back,
            held_reason=self._held_reason,
        )

    # -------------------------------------------------------------------------------- leasing

    async def _activate(self) -> None:
        """Wake a dormant pool for a request: at once, unless the app failed to start and the
        next try is not due (then PoolUnavailable), or its files changed since (then try now)."""
        if self._active:
            return
        backoff = self.settings.backoff
        last = self._last_error
        if last is not None and not backoff.retry_on_demand:
            now = self._running_loop().time()
            if now < self._next_start_at:
                if not await self._sources_changed():
                    raise self._unavailable(last, now)
                _log.info(
                    "app %s: its files changed since it failed to start; trying again",
                    self.name,
                    extra={"app": self.name},
                )
                self._next_start_at = 0.0
        self._active = True
        if backoff.retry_on_demand:
            self._next_start_at = 0.0

    def _unavailable(self, last: PoolUnavailable, now: float) -> PoolUnavailable:
        """A fresh error for one request (tracebacks must not pile up on one instance)."""
        failures = self._start_failures
        retry_in = None
        if not self.settings.backoff.retry_on_demand:
            retry_in = max(self._next_start_at - now, 0.0)
        return PoolUnavailable(
            self.name,
            last.reason,
            last.stderr_tail,
            failures=failures,
            retry_in=retry_in,
            gave_up=self.settings.backoff.gave_up(failures),
        )

    async def _sources_changed(self) -> bool:
        """Whether the app's source files changed since its last failed start (scanned in a
        thread, at most once per ``_FINGERPRINT_INTERVAL``)."""
        baseline = self._fingerprint
        if baseline is None:
            return False
        now = time.monotonic()
        if now - self._fingerprint_checked < _FINGERPRINT_INTERVAL:
            return False
        self._fingerprint_checked = now
        try:
            before = await asyncio.shield(baseline)
            current = await asyncio.to_thread(
                source_fingerprint, self.plan.cwd, self.settings.source_suffixes
            )
        except OSError:
            return False
        return current != before

    def _pick(self) -> _Worker | None:
        """The least busy ready worker with room; ties go to the most recently used."""
        best: _Worker | None = None
        capacity = self._capacity
        for worker in self._workers.values():
            if not worker.state.is_ready or worker.active >= capacity:
                continue
            if best is None or (worker.active, -worker.last_used) < (
                best.active,
                -best.last_used,
            ):
                best = worker
        return best

    def _reserve(self, worker: _Worker) -> None:
        worker.active += 1
        worker.idle_since = None
        if worker.state is WorkerState.IDLE:
            self._set_state(worker, WorkerState.BUSY)

    def _unreserve(self, worker: _Worker, *, served: bool) -> None:
        worker.active -= 1
        if served:
            worker.requests_served += 1
            if worker.max_requests and worker.requests_served >= worker.max_requests:
                self._recycle(worker, f"served {worker.requests_served} requests (maxRequests)")
        if worker.state is WorkerState.BUSY and worker.active == 0:
            now = self._running_loop().time()
            worker.last_used = now
            worker.idle_since = now
            self._set_state(worker, WorkerState.IDLE)
            # A worker going idle never calls for a start; it may be stoppable once the idle
            # timeout has passed: look again then (the policy decides, see _evaluate).
            idle_timeout = self._limits.idle_timeout
            if idle_timeout is not None and len(self._workers) > self._limits.min_instances:
                self._wake_at(now + idle_timeout)
        if worker.state.is_ready:
            self._dispatch()
        elif worker.draining is not None and worker.active <= 0:
            self._end_drain(worker)

    async def _wait_for_worker(self, deadline: float, limit: float, *, front: bool) -> _Worker:
        waiter: Waiter = self._running_loop().create_future()
        self._wait_started[waiter] = self._running_loop().time()
        if front:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            self._evaluate()
            async with asyncio.timeout_at(deadline):
                # (Only queueable waiters, from lease_or_wait, are handed leases.)
                return cast(_Worker, await waiter)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # A worker was handed to us as we gave up: pass it on.
                self._unreserve(cast(_Worker, waiter.result()), served=False)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise AcquireTimeout(self.name, limit) from None
            raise
        finally:
            self._wait_started.pop(waiter, None)

    def _oldest_wait(self, now: float) -> float:
        if not self._waiters:
            return 0.0
        started = self._wait_started.get(self._waiters[0])
        return 0.0 if started is None else max(now - started, 0.0)

    def _dispatch(self) -> None:
        """Hand free workers to waiting requests, first come first served."""
        waiters = self._waiters
        while waiters:
            worker = self._pick()
            if worker is None:
                # Every worker is busy: the first in line may queue on a busy connection.
                head = waiters[0]
                if head.done():
                    waiters.popleft()
                    self._queueable.discard(head)
                    continue
                if head not in self._queueable:
                    return
                lease = self._try_follow()
                if lease is None:
                    return
                waiters.popleft()
                self._queueable.discard(head)
                head.set_result(lease)
                continue
            waiter = waiters.popleft()
            if waiter.done():
                continue
            self._reserve(worker)
            waiter.set_result(worker)

    def _fail_waiters(self, error: PoolUnavailable) -> None:
        now = self._running_loop().time()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # A fresh exception per request: tracebacks must not pile up on one instance.
                waiter.set_exception(
                    PoolClosed(self.name)
                    if isinstance(error, PoolClosed)
                    else self._unavailable(error, now)
                )

    def _take_idle_connection(self, worker: _Worker) -> PooledUpstream | None:
        """A kept-alive connection to ``worker`` that is still open, if any."""
        while worker.idle_conns:
            conn = worker.idle_conns.pop()
            if not conn.is_closed:
                return conn
        return None

    def _connect_failed(self, worker: _Worker, exc: OSError) -> None:
        """A ready worker refused a connection: it is broken; kill it (the policy replaces it)."""
        pid = worker.pid
        _log.warning(
            "app %s: cannot connect to worker pid %s: %s; stopping it",
            self.name,
            pid,
            exc,
            extra={"app": self.name, "pid": pid},
        )
        worker.active -= 1
        if worker.state.is_ready:
            # Out of rotation at once; its exit is reaped (and logged) by _run_worker.
            self._set_state(worker, WorkerState.STOPPING)
            self._close_idle_connections(worker)
            if worker.process is not None:
                worker.process.kill()
        self._evaluate()

    # -------------------------------------------------------------------------------- scaling

    def _evaluate_on_arrival(self) -> None:
        """A request joined the queue: ask the policy, at most every EVALUATE_EVERY s while
        requests pour in (a look skipped is made up by the timer, that much later)."""
        now = self._running_loop().time()
        if now - self._evaluated_at >= EVALUATE_EVERY:
            self._evaluate()
        else:
            self._wake_at(self._evaluated_at + EVALUATE_EVERY)

    def _evaluate(self) -> None:
        """Sample the load, ask the policy, carry out its decision."""
        if self._closing:
            return
        loop = self._running_loop()
        now = loop.time()
        self._evaluated_at = now
        sample = self._sample(now)
        decision = decide(sample, self._limits, now)
        self._note_held_back(decision, sample, now)
        start = decision.start if self._active else 0
        wake = decision.recheck_at
        if decision.reason == HELD_BY_MEMORY and not sample.workers and not sample.starting:
            # Nothing runs and nothing may start: the waiting requests would only time out.
            self._fail_waiters(PoolUnavailable(self.name, self._held_reason or "low memory"))
            wake = now + min(self.settings.health_interval, 1.0)
        if start and now < self._next_start_at:
            start = 0
            wake = self._next_start_at if wake is None else min(wake, self._next_start_at)
        for _ in range(start):
            self._start_worker()
        for worker_id in decision.stop:
            idle = self._workers.get(worker_id)
            if idle is not None and idle.state is WorkerState.IDLE and idle.active == 0:
                _log.info(
                    "app %s: stopping worker pid %s, idle for %.1f s",
                    self.name,
                    idle.pid,
                    now - (idle.idle_since or now),
                    extra={"app": self.name, "pid": idle.pid},
                )
                self._stop_worker(idle)
        if wake is not None:
            self._wake_at(wake)

    def _sample(self, now: float) -> LoadSample:
        """What the policy sees: the pool's counters, and the machine (memory read at most
        once a second; CPU from the last health round)."""
        starting = 0
        ready: list[WorkerLoad] = []
        rss: list[int] = []
        for worker in self._workers.values():
            if worker.state is WorkerState.STARTING:
                starting += 1
            elif worker.state.is_ready:
                ready.append(WorkerLoad(worker.id, worker.active, worker.idle_since))
                if worker.rss:
                    rss.append(worker.rss)
        self._update_rate(now)
        if self._limits.memory_reserve and now - self._memory_at >= 1.0:
            self._memory_at = now
            try:
                self._free_memory = int(psutil.virtual_memory().available)
            except (OSError, RuntimeError):  # pragma: no cover - /proc unreadable
                self._free_memory = None
        # Requests queued on busy workers' connections wait as much as those in the queue.
        queued = sum(1 for lease in self._leases if lease.queued) if self._followers else 0
        return LoadSample(
            waiting=len(self._waiters) + queued,
            starting=starting,
            workers=tuple(ready),
            oldest_wait=self._oldest_wait(now),
            arrival_rate=self._arrival_rate,
            service_time=self._service_time,
            spawn_time=self._spawn_time,
            free_memory=self._free_memory,
            worker_memory=sum(rss) // len(rss) if rss else None,
            cpu_idle=self._cpu_idle,
        )

    def _update_rate(self, now: float) -> None:
        """Fold the arrivals counted since the last update into the smoothed rate."""
        if self._rate_at == 0.0:  # the first look: count from here
            self._rate_at = now
            return
        elapsed = now - self._rate_at
        if elapsed < 0.25:
            return
        instant = self._arrivals / elapsed
        weight = 1.0 - math.exp(-elapsed / _RATE_WINDOW)
        self._arrival_rate += weight * (instant - self._arrival_rate)
        self._arrivals = 0
        self._rate_at = now

    def _note_held_back(self, decision: ScalingDecision, sample: LoadSample, now: float) -> None:
        """Say (in the status, and in the log at most every few seconds) why starts wait."""
        if not decision.held_back:
            if self._held_back and decision.start:
                _log.info("app %s: starting workers again", self.name, extra={"app": self.name})
            self._held_back = 0
            self._held_reason = None
            return
        if decision.reason == HELD_BY_MEMORY:
            free = (sample.free_memory or 0) / _MIB
            reason = (
                f"free memory {free:.0f} MiB is below the reserve of "
                f"{self.settings.memory_reserve_mb} MiB (memoryReserve)"
            )
            if sample.worker_memory and free > self.settings.memory_reserve_mb:
                reason = (
                    f"free memory {free:.0f} MiB leaves room above the reserve of "
                    f"{self.settings.memory_reserve_mb} MiB for no more workers of "
                    f"{sample.worker_memory / _MIB:.0f} MiB"
                )
        else:
            reason = (
                f"the CPU is saturated ({(sample.cpu_idle or 0.0) * 100:.0f}% idle) and "
                f"{len(sample.workers)} workers already run on {self._limits.cpu_count} cores"
            )
        self._held_back = decision.held_back
        self._held_reason = reason
        if now - self._held_logged >= _HELD_LOG_INTERVAL:
            self._held_logged = now
            level = logging.WARNING if decision.reason == HELD_BY_MEMORY else logging.INFO
            _log.log(
                level,
                "app %s: not starting %d worker(s): %s",
                self.name,
                decision.held_back,
                reason,
                extra={"app": self.name},
            )

    def _wake_at(self, when: float) -> None:
        if self._closing:
            return
        if self._timer is not None:
            # (Its time is kept here: uvloop's call_at of a time already past returns a plain
            # Handle, which has no when().)
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._evaluate()

    # -------------------------------------------------------------------------------- workers

    def _set_state(self, worker: _Worker, state: WorkerState) -> None:
        worker.state = check_transition(worker.state, state)

    def _socket_path(self, worker_id: int) -> str | None:
        if self.plan.transport is not Transport.UNIX:
            return None
        if self._runtime_dir is None or not os.path.isdir(self._runtime_dir):
            # (Re)created on demand: a tmp cleaner may have removed it while the app was idle.
            root = self._runtime_root or os.environ.get("XDG_RUNTIME_DIR") or None
            if root is not None and not os.path.isdir(root):
                root = None
            self._runtime_dir = tempfile.mkdtemp(prefix="corral-", dir=root)  # mode 0700
        return os.path.join(self._runtime_dir, f"{worker_id}.sock")

    def _start_worker(self) -> None:
        worker: _Worker = _Worker(id=self._next_id, generation=self._generation)
        self._next_id += 1
        self._workers[worker.id] = worker
        worker.task = self._running_loop().create_task(
            self._run_worker(worker), name=f"corral-worker-{self.name}-{worker.id}"
        )

    async def _run_worker(self, worker: _Worker) -> None:
        """The whole life of one worker: spawn, readiness, serve until exit."""
        try:
            try:
                process = await WorkerProcess.spawn(
                    self.plan,
                    app=self.name,
                    socket_path=self._socket_path(worker.id),
                    instance_id=worker.id,
                )
            except (SpawnError, OSError) as exc:
                self._start_failed(worker, str(exc), "")
                return
            worker.process = process
            worker.spawned_at = self._running_loop().time()
            _log.info(
                "app %s: started worker pid %d on %s",
                self.name,
                process.pid,
                _format_address(process.address),
                extra={"app": self.name, "pid": process.pid},
            )
            failure = await self._await_ready(worker, process)
            if failure is not None:
                await process.close()
                self._start_failed(worker, failure, process.stderr_tail())
                return
            self._worker_ready(worker)
            code = await process.wait()
            self._worker_exited(worker, code)
            await process.finish()
        except asyncio.CancelledError:
            # The pool is closing while this worker starts: take it down with us.
            if worker.process is not None:
                await worker.process.close()
            self._forget(worker)
            if not self._closing:  # cancelled by a rolling restart
                self._check_restart()
            raise
        except Exception as exc:
            # A bug here must not leave a worker STARTING forever and the pool wedged.
            _log.exception(
                "app %s: internal error supervising worker pid %s",
                self.name,
                worker.pid,
                extra={"app": self.name, "pid": worker.pid},
            )
            if worker.process is not None:
                await worker.process.close()
            if worker.state is WorkerState.STARTING:
                self._start_failed(worker, f"internal error: {exc!r}", "")
            else:
                self._forget(worker)
                self._evaluate()

    async def _await_ready(self, worker: _Worker, process: WorkerProcess) -> str | None:
        """None when the worker answered the probe in time; else why it did not."""
        timeout = self.settings.start_timeout
        probe = asyncio.ensure_future(self._probe(process.address, timeout))
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait(
                {probe, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if probe in done and probe.exception() is None and process.running:
                values = probe.result()
                self._learn_capacity(values)
                worker.pipelining = isinstance(values, dict) and values.get(CORRAL_PIPELINE) == b"1"
                return None
            if probe in done and not exited.done():
                # Prefer the exit status (and its traceback) to "connection reset".
                await asyncio.wait({exited}, timeout=_EXIT_AFTER_PROBE_FAILURE)
            if exited.done():
                return _exit_reason(exited.result())
            if probe in done:
                error = probe.exception()
                return f"the readiness probe failed: {error}"
            # Where is it stuck? Corral's worker writes its stack to stderr (the error page's
            # tail and the app's log).
            if process.dump_stack():
                await asyncio.sleep(_STACK_DUMP_GRACE)
            return f"it did not answer the readiness probe within {timeout:g} s"
        finally:
            for task in (probe, exited):
                task.cancel()
            await asyncio.gather(probe, exited, return_exceptions=True)

    def _learn_capacity(self, values: object) -> None:
        """Take a worker's FCGI_MAX_CONNS (from the probe) as the pool's per-worker capacity
        when it is larger than connections_per_worker (never above MAX_LEARNED_CAPACITY)."""
        if not isinstance(values, dict):
            return
        advertised = values.get(FCGI_MAX_CONNS)
        if not isinstance(advertised, bytes) or not advertised.isdigit():
            return
        capacity = max(
            self.settings.connections_per_worker, min(int(advertised), MAX_LEARNED_CAPACITY)
        )
        if capacity != self._capacity:
            self._capacity = capacity
            self._limits = replace(self._limits, capacity=capacity)

    def _worker_ready(self, worker: _Worker) -> None:
        if worker.state is WorkerState.STOPPING:  # the pool closed meanwhile
            return
        now = self._running_loop().time()
        worker.idle_since = now
        worker.last_used = now
        worker.ready_at = now
        worker.last_probe = now
        settings = self.settings
        if settings.max_requests:
            jitter = int(settings.max_requests * settings.max_requests_jitter)
            worker.max_requests = settings.max_requests + random.randint(0, jitter)
        took = now - worker.spawned_at
        spawn = self._spawn_time
        self._spawn_time = took if spawn is None else spawn + 0.3 * (took - spawn)
        self._set_state(worker, WorkerState.IDLE)
        self._start_failures = 0
        self._next_start_at = 0.0
        self._last_error = None
        self._fingerprint = None
        self._ensure_health_rounds()
        _log.info(
            "app %s: worker pid %s is ready (%.2f s after spawn)",
            self.name,
            worker.pid,
            now - worker.spawned_at,
            extra={"app": self.name, "pid": worker.pid},
        )
        if worker.generation == self._generation:
            self._retire_one_old()
        self._dispatch()
        self._evaluate()
        self._check_restart()

    def _start_failed(self, worker: _Worker, reason: str, stderr_tail: str) -> None:
        if worker.state is WorkerState.STOPPING:  # the pool closed meanwhile
            self._forget(worker)
            return
        self._set_state(worker, WorkerState.FAILED_TO_START)
        self._forget(worker)
        loop = self._running_loop()
        now = loop.time()
        self._start_failures += 1
        error = PoolUnavailable(self.name, reason, stderr_tail)
        self._last_error = error
        _log.error(
            "app %s: worker pid %s cannot start: %s%s",
            self.name,
            worker.pid,
            reason,
            f"\n{stderr_tail}" if stderr_tail else "",
            extra={"app": self.name, "pid": worker.pid},
        )
        if self._closing:
            return
        backoff = self.settings.backoff
        self._next_start_at = backoff.next_start_at(self._start_failures, now)
        alive = any(
            w.state is WorkerState.STARTING or w.state.is_ready for w in self._workers.values()
        )
        if not alive:
            # Nothing runs: the requests that wait for this app will not be served.
            self._fail_waiters(error)
            self._active = False
            if not backoff.retry_on_demand:
                # What the app's files look like now: a change lets the next request retry.
                self._fingerprint = asyncio.ensure_future(
                    asyncio.to_thread(
                        source_fingerprint, self.plan.cwd, self.settings.source_suffixes
                    )
                )
                self._fingerprint.add_done_callback(_consume_exception)
                self._fingerprint_checked = -1e9
                if backoff.gave_up(self._start_failures):
                    _log.error(
                        "app %s: FAILED after %d failed starts; trying again in %g s, or as "
                        "soon as its files change",
                        self.name,
                        self._start_failures,
                        backoff.delay(self._start_failures),
                        extra={"app": self.name},
                    )
                else:
                    _log.warning(
                        "app %s: next start in %g s (or as soon as its files change)",
                        self.name,
                        backoff.delay(self._start_failures),
                        extra={"app": self.name},
                    )
        self._evaluate()
        self._check_restart()

    def _worker_exited(self, worker: _Worker, code: int) -> None:
        expected = worker.state is WorkerState.STOPPING and not worker.died
        self._set_state(worker, WorkerState.EXITED)
        self._forget(worker)
        if expected:
            _log.info(
                "app %s: worker pid %s stopped (%s)",
                self.name,
                worker.pid,
                describe_returncode(code),
                extra={"app": self.name, "pid": worker.pid},
            )
        else:
            _log.warning(
                "app %s: worker pid %s %s%s",
                self.name,
                worker.pid,
                describe_returncode(code),
                f" ({worker.active} request(s) in flight on it fail)" if worker.active else "",
                extra={"app": self.name, "pid": worker.pid},
            )
        self._evaluate()
        self._check_restart()

    def _forget(self, worker: _Worker) -> None:
        self._close_idle_connections(worker)
        if worker.draining is not None:
            worker.draining.cancel()
            worker.draining = None
        self._workers.pop(worker.id, None)
        if not self._workers and self._emptied is not None:
            self._emptied.set()

    # -------------------------------------------------------------------------------- restarts

    def _retire_one_old(self) -> None:
        """A worker of the current generation is ready: retire one older one, idle first."""
        old = [
            w
            for w in self._workers.values()
            if w.generation < self._generation and w.state.is_ready
        ]
        if old:
            self._retire(min(old, key=lambda w: (w.active, w.id)), "rolling restart")

    def _retire(self, worker: _Worker, why: str) -> None:
        """Take a ready worker out of rotation now; stop it once its requests are done.

        It gets SIGTERM when its last lease is released, or after ``graceful_shutdown_timeout``
        if requests are still in flight then (Corral's worker still finishes them on SIGTERM,
        within a second grace period, before SIGKILL)."""
        _log.info(
            "app %s: retiring worker pid %s (%s)%s",
            self.name,
            worker.pid,
            why,
            f"; it finishes its {worker.active} request(s) first" if worker.active else "",
            extra={"app": self.name, "pid": worker.pid},
        )
        if worker.active <= 0:
            self._stop_worker(worker)
            return
        self._set_state(worker, WorkerState.STOPPING)
        self._close_idle_connections(worker)
        worker.draining = self._running_loop().call_later(
            self.settings.graceful_shutdown_timeout, self._end_drain, worker
        )

    def _end_drain(self, worker: _Worker) -> None:
        """A draining worker's requests are done (or its time is up): SIGTERM it."""
        if worker.draining is None:
            return
        worker.draining.cancel()
        worker.draining = None
        if worker.active > 0:
            _log.warning(
                "app %s: retiring worker pid %s still has %d request(s) in flight after %g s; "
                "stopping it anyway",
                self.name,
                worker.pid,
                worker.active,
                self.settings.graceful_shutdown_timeout,
                extra={"app": self.name, "pid": worker.pid},
            )
        if worker.process is not None and worker.id in self._workers:
            stop = (
                self._kill_process(worker.process)
                if worker.kill_when_drained
                else self._stop_process(worker.process)
            )
            task = self._running_loop().create_task(stop)
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _kill_process(self, process: WorkerProcess) -> None:
        """A worker with a hung request: give its stack dump a moment, then SIGKILL (SIGTERM
        would wait for the hung request)."""
        await asyncio.sleep(_STACK_DUMP_GRACE)
        process.kill()
        await process.wait()
        await process.finish()

    # -------------------------------------------------------------------------------- health

    def _recycle(self, worker: _Worker, why: str) -> None:
        """Retire a ready worker (it finishes its requests first) and let the policy start its
        replacement at once (a retiring worker no longer counts toward the floor)."""
        if not worker.state.is_ready or self._closing:
            return
        worker.retiring = why
        self._retire(worker, why)
        self._evaluate()

    def _ensure_health_rounds(self) -> None:
        if self._health_task is None and not self._closing:
            self._health_task = self._running_loop().create_task(
                self._health_rounds(), name=f"corral-health-{self.name}"
            )

    async def _health_rounds(self) -> None:
        """Forever (until close): sweep request timeouts often, and every ``health_interval``
        sample memory and CPU, apply memory and time limits, probe idle workers."""
        settings = self.settings
        tick = settings.health_interval
        if settings.request_timeout is not None:
            tick = min(tick, max(settings.request_timeout / 4, 0.05))
        loop = self._running_loop()
        while not self._closing:
            await asyncio.sleep(tick)
            try:
                self._sweep_request_timeouts()
                now = loop.time()
                if now - self._health_at >= settings.health_interval:
                    self._health_at = now
                    await self._health_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end health checking for good
                _log.exception("app %s: health round failed", self.name, extra={"app": self.name})

    def _sweep_request_timeouts(self) -> None:
        timeout = self.settings.request_timeout
        if timeout is None or not self._leases:
            return
        now = time.monotonic()
        for lease in [
            lease for lease in self._leases if now - lease.started > timeout and not lease.queued
        ]:
            if not lease.timed_out:
                self._request_timed_out(lease, now - lease.started)

    def _request_timed_out(self, lease: Lease, held: float) -> None:
        """Cut the request (the front answers 504), log the worker's stack, replace it."""
        lease.timed_out = True
        worker = self._workers.get(lease.worker_id)
        _log.error(
            "app %s: a request on worker pid %s ran %.1f s, past the request timeout of %g s "
            "(WORKER_REQUEST_TIMEOUT): answered 504; the worker's stack follows in its log, "
            "and it is replaced",
            self.name,
            lease.worker_pid,
            held,
            self.settings.request_timeout,
            extra={"app": self.name, "pid": lease.worker_pid},
        )
        if worker is not None and worker.process is not None:
            worker.process.dump_stack()
            worker.kill_when_drained = True
            if worker.state.is_ready:
                self._recycle(worker, "a request ran past the request timeout")
        lease.conn.close()

    async def _health_round(self) -> None:
        workers = [w for w in self._workers.values() if w.process is not None]
        pids = {w.id: w.process.pid for w in workers if w.process is not None}
        free, cpu_idle, rss = await asyncio.to_thread(_sample_machine, pids)
        if self._closing:
            return
        loop = self._running_loop()
        now = loop.time()
        self._free_memory, self._cpu_idle = free, cpu_idle
        self._memory_at = now
        settings = self.settings
        limit = settings.memory_limit_mb * _MIB
        aged_out = False
        for worker in list(self._workers.values()):
            if worker.id in rss:
                worker.rss = rss[worker.id]
            if not worker.state.is_ready:
                continue
            if limit and worker.rss is not None and worker.rss > limit:
                self._recycle(
                    worker,
                    f"memory {worker.rss / _MIB:.0f} MiB is above the limit of "
                    f"{settings.memory_limit_mb} MiB (memoryLimit)",
                )
            elif (
                settings.time_limit is not None
                and not aged_out
                and now - worker.ready_at >= settings.time_limit
            ):
                aged_out = True  # one per round: workers started together leave in turn
                self._recycle(worker, f"ran {(now - worker.ready_at) / 60:.1f} min (timeLimit)")
            elif (
                worker.state is WorkerState.IDLE
                and not worker.probing
                and now - max(worker.last_used, worker.last_probe) >= settings.probe_interval
            ):
                self._probe_idle(worker, now)
        self._evaluate()

    def _probe_idle(self, worker: _Worker, now: float) -> None:
        """Check that an idle worker still answers; kill it (and let it be replaced) if not."""
        process = worker.process
        if process is None:
            return
        worker.probing = True
        # A kept-alive connection may hold a worker's only thread (php-cgi): free it first.
        self._close_idle_connections(worker)

        async def probe() -> None:
            try:
                await self._probe(process.address, self.settings.probe_timeout)
                failure = None
            except (OSError, ProbeFailed) as exc:
                failure = str(exc) or type(exc).__name__
            worker.probing = False
            if failure is None:
                worker.last_probe = self._running_loop().time()
                return
            # Leased meanwhile: a busy worker answers late; that says nothing about its health.
            if worker.state is not WorkerState.IDLE or worker.last_used > now or self._closing:
                return
            _log.warning(
                "app %s: idle worker pid %s did not answer the health probe (%s); replacing it",
                self.name,
                worker.pid,
                failure,
                extra={"app": self.name, "pid": worker.pid},
            )
            worker.retiring = "it did not answer the health probe"
            self._set_state(worker, WorkerState.STOPPING)
            process.kill()  # its exit is reaped and logged by _run_worker, then replaced
            self._evaluate()

        task = self._running_loop().create_task(probe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_restart(self) -> None:
        """Resolve the callers of ``restart`` once it has finished or failed."""
        if not self._restart_waiters:
            return
        current = self._generation
        old_left = any(w.generation < current for w in self._workers.values())
        new_alive = any(
            w.generation == current and (w.state is WorkerState.STARTING or w.state.is_ready)
            for w in self._workers.values()
        )
        if old_left and new_alive:
            return
        if not old_left:
            result = True
        else:
            result = False
            _log.error(
                "app %s: rolling restart failed: the new workers cannot start; the old ones "
                "keep serving",
                self.name,
                extra={"app": self.name},
            )
        waiters, self._restart_waiters = self._restart_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)

    def _stop_worker(self, worker: _Worker) -> None:
        """STOPPING: close its idle connections, SIGTERM, grace, SIGKILL. ``_run_worker`` sees
        the exit and forgets it."""
        self._set_state(worker, WorkerState.STOPPING)
        self._close_idle_connections(worker)
        if worker.process is None:
            return
        task = self._running_loop().create_task(self._stop_process(worker.process))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop_process(self, process: WorkerProcess) -> None:
        await process.stop(self.settings.graceful_shutdown_timeout)

    def _close_idle_connections(self, worker: _Worker) -> None:
        for conn in worker.idle_conns:
            conn.close()
        worker.idle_conns.clear()


_EXIT_MEANINGS: dict[int, str] = {
    ExitCode.APP_LOAD_FAILED: "the application could not be loaded",
    ExitCode.BIND_FAILED: "the worker could not use its listening socket",
    ExitCode.USAGE: "the worker rejected its command line",
}


def _consume_exception(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def _sample_machine(pids: dict[int, int]) -> tuple[int | None, float | None, dict[int, int]]:
    """(available memory in bytes, idle CPU 0..1 since the last call, {worker id: RSS bytes}).
    Blocking (/proc reads): called in a thread."""
    try:
        free: int | None = int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):  # pragma: no cover - /proc unreadable
        free = None
    try:
        cpu_idle: float | None = float(psutil.cpu_times_percent(interval=None).idle) / 100.0
    except (OSError, RuntimeError, AttributeError):  # pragma: no cover
        cpu_idle = None
    rss: dict[int, int] = {}
    for worker_id, pid in pids.items():
        try:
            rss[worker_id] = int(psutil.Process(pid).memory_info().rss)
        except (psutil.Error, OSError):
            continue
    return free, cpu_idle, rss


#: Folders never scanned for an application's source files.
_SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "venv", "env", "log", "logs"}
)


def source_fingerprint(root: str, suffixes: tuple[str, ...]) -> object:
    """What the application's source files under ``root`` look like: every (path, mtime, size)
    of a file ending in one of ``suffixes``, skipping hidden folders, virtualenvs and log
    folders, at most ``_FINGERPRINT_MAX_FILES`` files. Blocking: call it in a thread."""
    lowered = tuple(suffix.lower() for suffix in suffixes)
    seen: list[tuple[str, int, int]] = []
    stack = [root]
    while stack and len(seen) < _FINGERPRINT_MAX_FILES:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        if folder != root and any(e.name == "pyvenv.cfg" for e in entries):
            continue  # a virtualenv
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith(".") and entry.name.lower() not in _SKIP_DIRS:
                        stack.append(entry.path)
                elif entry.name.lower().endswith(lowered):
                    info = entry.stat()
                    seen.append((entry.path, info.st_mtime_ns, info.st_size))
            except OSError:
                continue
    return hash(tuple(sorted(seen)))


def _exit_reason(code: int) -> str:
    meaning = _EXIT_MEANINGS.get(code)
    if meaning is not None:
        return f"{meaning} (worker exited with code {code})"
    return f"the worker {describe_returncode(code)} before it was ready"
