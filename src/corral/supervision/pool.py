"""One application's backend workers: start them, lease them per request, replace, stop. Mechanism.

The front server, per request::

    lease = await pool.acquire()          # PoolOverloaded / AcquireTimeout / PoolUnavailable -> 503
    try:
        ... talk FastCGI over lease.conn ...
    finally:
        pool.release(lease, reusable=ok)  # ok: the connection is clean and may be kept alive

How the pool works (each part is its own module):

* **Lazy start.** Nothing runs until the first ``acquire``; from then on at least
  ``min_instances`` workers are kept (the floor), up to ``max_instances``. The pool's own state
  (``lifecycle.PoolState``: dormant, running, stopping, backoff, failed, closing) is one value.
* **Leasing** (``dispatch.Dispatcher``). A worker serves ``connections_per_worker`` requests at
  once, or more when its probe says so (``FCGI_MAX_CONNS``). A request goes to the least busy
  ready worker (ties: the most recently used), over a kept-alive connection when one is free,
  else over a new one from ``connect``; else it waits in a bounded FIFO queue (``queue_size``,
  ``PoolOverloaded`` beyond; ``queue_timeout``, ``AcquireTimeout``), or, without a body, is
  queued on a busy worker's connection (pipelining).
* **Scaling** (``load.LoadMeter`` samples, the pure ``scaling.decide`` decides,
  ``scaler.Scaler`` carries it out: start workers, stop idle ones, look again later).
* **Workers** (``workers.WorkerSet``, states in ``lifecycle``): spawn, readiness (the probe
  within ``start_timeout``), crashes (logged, the request in flight gets a 502, replaced if
  needed), rolling restart (``restart``: each new worker that becomes ready retires an old one,
  which finishes its requests first), stop.
* **Health** (``health.HealthMonitor``): memory and time limits, idle probes, the request
  timeout (the lease is marked ``timed_out`` and its connection closed: 504).
* **Crash loops** (``crashloop.CrashLoopTracker``): when no worker can start, the waiting
  requests get ``PoolUnavailable(reason, stderr_tail)``; starts back off
  (``backoff.StartBackoff``), the app is FAILED after ``give_up_after`` failures, and retried
  at once when its source files change.
* **Closing.** ``close(grace)`` refuses new requests, fails waiting ones, waits up to ``grace``
  seconds for leases in flight, then stops every worker (SIGTERM, ``graceful_shutdown_timeout``,
  SIGKILL) and removes the private runtime directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace

from corral.supervision.confine import Confiner
from corral.supervision.crashloop import CrashLoopTracker, source_fingerprint
from corral.supervision.dispatch import MAX_LEARNED_CAPACITY, Dispatcher
from corral.supervision.health import HealthMonitor
from corral.supervision.launch import LaunchPlan
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
    WorkerTraits,
)
from corral.supervision.lifecycle import PoolState, WorkerState, check_pool_transition
from corral.supervision.load import MIB, LoadMeter
from corral.supervision.probe import fastcgi_probe
from corral.supervision.scaler import EVALUATE_EVERY, Scaler
from corral.supervision.settings import PoolSettings
from corral.supervision.snapshot import PoolSnapshot, WorkerInfo
from corral.supervision.workers import (
    Spawn,
    Spawner,
    Worker,
    WorkerSet,
    format_address,
    spawn_process,
)

__all__ = [
    "EVALUATE_EVERY",
    "MAX_LEARNED_CAPACITY",
    "Pool",
    "PoolSnapshot",
    "WorkerInfo",
    "source_fingerprint",
]

_log = logging.getLogger("corral.supervision.pool")

_RUNNING = PoolState.RUNNING
_CLOSING = PoolState.CLOSING
_STARTING = WorkerState.STARTING


class Pool:
    """The workers of one application: a facade over its parts (``WorkerSet``, ``Dispatcher``,
    ``HealthMonitor``, ``LoadMeter``, ``Scaler``, ``CrashLoopTracker``), and the
    ``LeaseSource`` the front leases from."""

    def __init__(
        self,
        name: str,
        plan: LaunchPlan,
        settings: PoolSettings,
        connect: Connect,
        probe: Probe = fastcgi_probe,
        *,
        runtime_root: str | None = None,
        spawn: Spawn = spawn_process,
        confiner: Confiner | None = None,
        spawner: Spawner | None = None,
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
            spawn: starts one worker process (tests pass a fake).
            confiner: the application's user, cgroup and limits (docs/tenants.md).
            spawner: starts the workers instead of ``spawn``, and is told of restarts and of
                the close (preloaded workers: ``template.TemplateSpawner``).
        """
        self.name = name
        self.plan = plan
        self.settings = settings
        #: The application's user, cgroup and limits (also its deploy script's).
        self.confiner = confiner
        self._connect = connect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = PoolState.DORMANT

        def call_later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
            return self._running_loop().call_later(delay, callback)

        def create_task(
            coro: Coroutine[object, object, None], name: str | None
        ) -> asyncio.Task[None]:
            return self._running_loop().create_task(coro, name=name)

        clock = self._loop_time
        self._spawner = spawner
        if spawner is not None:
            spawn = spawner
        self._load = LoadMeter(name, settings)
        self._workers = WorkerSet(
            name,
            plan,
            settings,
            probe,
            self,
            clock=clock,
            call_later=call_later,
            create_task=create_task,
            spawn=spawn,
            runtime_root=runtime_root,
            confiner=confiner,
        )
        self._dispatcher = Dispatcher(
            settings,
            self._workers.workers,
            self._load,
            clock=clock,
            call_later=call_later,
            look_again_at=lambda when: self._scaler.wake_at(when),
            drained=self._workers.end_drain,
            worn_out=lambda worker: self._recycle(
                worker, f"served {worker.requests_served} requests (maxRequests)"
            ),
            lost=self._workers.lose,
        )
        self._health = HealthMonitor(
            name,
            settings,
            self._workers,
            self._dispatcher.leases,
            self._load,
            probe,
            clock=clock,
            create_task=create_task,
            recycle=self._recycle,
            evaluate=lambda: self._scaler.evaluate(),
        )
        self._crash = CrashLoopTracker(name, settings, plan.cwd, clock=clock)
        self._scaler = Scaler(
            name,
            settings,
            self._workers,
            self._dispatcher,
            self._load,
            self._crash,
            clock=clock,
            call_at=lambda when, callback: self._running_loop().call_at(when, callback),
            pool_state=lambda: self._state,
        )
        self._closed: asyncio.Future[None] | None = None
        #: Connections being opened for waiters served by callback (``lease_or_wait``).
        self._connecting: set[asyncio.Task[None]] = set()
        # Rolling restarts: the callers waiting for the current one, and how many completed.
        self._restart_waiters: list[asyncio.Future[bool]] = []
        self._restarts = 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the pool runs on, looked up once: on Python 3.11 every
        ``asyncio.get_running_loop()`` makes a getpid() system call, and the hot path asked
        several times per request."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _loop_time(self) -> float:
        """The loop's clock (every part's ``clock``)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._running_loop()
        return loop.time()

    def _set_state(self, state: PoolState) -> None:
        if state is not self._state:
            self._state = check_pool_transition(self._state, state)

    @property
    def state(self) -> PoolState:
        """Where the pool is (dormant, running, stopping, backoff, failed, closing)."""
        return self._state

    # -------------------------------------------------------------------------------- leasing

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        """Lease a worker for one request, waiting up to ``timeout`` (default queue_timeout) s.

        Raises:
            PoolOverloaded: the wait queue is full.
            AcquireTimeout: no worker became free in time.
            PoolUnavailable: the application cannot start (or the pool is closing:
                ``PoolClosed``).
        """
        if self._state is _CLOSING:
            raise PoolClosed(self.name)
        if self._state is not _RUNNING:
            await self._activate()
            if self._state is _CLOSING:
                raise PoolClosed(self.name)
        self._load.arrivals += 1
        dispatcher = self._dispatcher
        loop = self._running_loop()
        limit = self.settings.queue_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        retry = False
        while True:
            worker = None if dispatcher.waiters else dispatcher.pick()
            if worker is not None:
                dispatcher.reserve(worker)
            else:
                if not retry and len(dispatcher.waiters) >= self.settings.queue_size:
                    raise PoolOverloaded(self.name, self.settings.queue_size)
                worker = await self._wait_for_worker(deadline, limit, front=retry)
            conn = dispatcher.take_idle_connection(worker)
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
                dispatcher.unreserve(worker, served=False)
                raise AcquireTimeout(self.name, limit) from None
            except BaseException:
                dispatcher.unreserve(worker, served=False)
                raise
            if self._state is _CLOSING:  # close() began while we connected
                conn.close()
                dispatcher.unreserve(worker, served=False)
                raise PoolClosed(self.name)
            return dispatcher.new_lease(worker, conn)

    def try_acquire(self) -> Lease | None:
        """``acquire()``'s fast path, without waiting: a lease at once when no request waits
        and a ready worker with room has a kept-alive connection open; else None, and the
        caller awaits ``acquire()`` (which starts workers, queues, connects and raises).
        It costs no task, future or timer: the front's common case when workers keep up."""
        if self._state is not _RUNNING:
            return None
        return self._dispatcher.try_acquire()

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
        connection, see ``Dispatcher.withdraw_stuck``) waits at the head of the queue."""
        state = self._state
        if state is not _RUNNING:
            if state is _CLOSING:
                raise PoolClosed(self.name)
            return None  # waking a dormant pool may wait (see _activate): acquire() does it
        dispatcher = self._dispatcher
        lease = dispatcher.try_acquire()
        if lease is not None:
            return lease
        # Requests queued on busy connections count toward the queue's bound as waiting ones.
        waiting = dispatcher.waiting()
        if not dispatcher.waiters:
            if dispatcher.pick() is not None:
                return None
            if queueable and waiting < self.settings.queue_size:
                lease = dispatcher.try_follow()
                if lease is not None:
                    return lease
        if waiting >= self.settings.queue_size:
            raise PoolOverloaded(self.name, self.settings.queue_size)
        self._load.arrivals += 1
        waiter: Waiter = self._running_loop().create_future()
        dispatcher.enqueue(waiter, first=first, queueable=queueable)
        waiter.add_done_callback(functools.partial(self._waited, deliver))
        self._scaler.on_arrival()
        return waiter

    def cancel_wait(self, waiter: Waiter) -> None:
        """Give up a wait begun by ``lease_or_wait``: its ``deliver`` is not called, unless a
        worker was already handed to it (then it gets the lease, to release)."""
        self._dispatcher.cancel(waiter)

    def _waited(self, deliver: Deliver, waiter: Waiter) -> None:
        self._dispatcher.done_waiting(waiter)
        if waiter.cancelled():
            return
        error = waiter.exception()
        if error is not None:
            if not isinstance(error, PoolError):
                error = PoolUnavailable(self.name, str(error))
            deliver(error)
            return
        result = waiter.result()
        if isinstance(result, Lease):  # queued on a busy connection (see Dispatcher.dispatch)
            deliver(result)
            return
        assert isinstance(result, Worker)
        conn = self._dispatcher.take_idle_connection(result)
        if conn is None or self._state is _CLOSING or result.process is None:
            # No kept-alive connection to this worker yet: connect, keeping its place.
            task = self._running_loop().create_task(self._lease_reserved(result, deliver))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            return
        deliver(self._dispatcher.new_lease(result, conn))

    async def _lease_reserved(self, worker: Worker, deliver: Deliver) -> None:
        """A waiter was handed ``worker``, which has no kept-alive connection: open one (as
        ``acquire()`` does), then deliver the lease."""
        limit = self.settings.queue_timeout
        dispatcher = self._dispatcher
        try:
            if self._state is _CLOSING or worker.process is None:
                raise PoolClosed(self.name)
            async with asyncio.timeout(limit):
                conn = await self._connect(worker.process.address)
        except OSError as exc:
            self._connect_failed(worker, exc)
            deliver(None)  # another worker, through acquire()
            return
        except TimeoutError:
            dispatcher.unreserve(worker, served=False)
            deliver(AcquireTimeout(self.name, limit))
            return
        except PoolError as exc:
            dispatcher.unreserve(worker, served=False)
            deliver(exc)
            return
        except BaseException:
            dispatcher.unreserve(worker, served=False)
            raise
        if self._state is _CLOSING:
            conn.close()
            dispatcher.unreserve(worker, served=False)
            deliver(PoolClosed(self.name))
            return
        deliver(dispatcher.new_lease(worker, conn))

    async def _wait_for_worker(self, deadline: float, limit: float, *, front: bool) -> Worker:
        dispatcher = self._dispatcher
        waiter: Waiter = self._running_loop().create_future()
        dispatcher.enqueue(waiter, first=front)
        try:
            self._scaler.evaluate()
            async with asyncio.timeout_at(deadline):
                # (Only queueable waiters, from lease_or_wait, are handed leases.)
                worker = await waiter
                assert isinstance(worker, Worker)
                return worker
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # A worker was handed to us as we gave up: pass it on.
                handed = waiter.result()
                assert isinstance(handed, Worker)
                dispatcher.unreserve(handed, served=False)
            else:
                with contextlib.suppress(ValueError):
                    dispatcher.waiters.remove(waiter)
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise AcquireTimeout(self.name, limit) from None
            raise
        finally:
            dispatcher.done_waiting(waiter)

    def release(self, lease: Lease, reusable: bool) -> None:
        """Give a worker back. ``reusable``: the connection is clean and may serve another
        request (kept alive); otherwise it is closed. Releasing twice does nothing. A lease the
        front gave up on (``stuck``: its 504) retires its worker, as past the request timeout."""
        if lease.stuck and not lease.released:
            self._health.stuck(lease)
        self._dispatcher.release(lease, reusable)

    async def _activate(self) -> None:
        """Wake a dormant pool for a request: at once, unless the app failed to start and the
        next try is not due (then PoolUnavailable), or its files changed since (then try now)."""
        if self._state is _RUNNING:
            return
        await self._crash.admit()
        if self._state is not _CLOSING:
            self._set_state(_RUNNING)

    def _connect_failed(self, worker: Worker, exc: OSError) -> None:
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
            # Out of rotation at once; its exit is reaped (and logged) by the worker set.
            self._workers.kill(worker)
        self._scaler.evaluate()

    # -------------------------------------------------------------------------------- public

    async def close(self, grace: float | None = None) -> None:
        """Stop handing out workers, wait up to ``grace`` s (default graceful_shutdown_timeout)
        for leases in flight, then stop every worker and remove the runtime directory."""
        loop = self._running_loop()
        if self._closed is not None:
            await asyncio.shield(self._closed)
            return
        self._closed = loop.create_future()
        self._set_state(_CLOSING)
        dispatcher = self._dispatcher
        workers = self._workers
        dispatcher.close()
        try:
            self._scaler.cancel()
            await self._health.stop()
            dispatcher.fail_waiters(lambda: PoolClosed(self.name))
            if grace is None:
                grace = self.settings.graceful_shutdown_timeout
            if dispatcher.leases:
                dispatcher.all_released = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(dispatcher.all_released.wait(), grace)
                if dispatcher.leases:
                    _log.warning(
                        "app %s: %d request(s) still in flight after %g s; stopping anyway",
                        self.name,
                        len(dispatcher.leases),
                        grace,
                        extra={"app": self.name},
                    )
            for worker in list(workers.workers.values()):
                if worker.state is _STARTING:
                    workers.cancel_start(worker)
                elif worker.state.is_ready:
                    workers.stop(worker)
                elif worker.state.is_draining:
                    workers.end_drain(worker)
            tasks = [w.task for w in workers.workers.values() if w.task is not None]
            tasks.extend(workers.stopping)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if self._spawner is not None:
                await self._spawner.close()
        finally:
            # Even if this close was cancelled half-way: no worker outlives it.
            workers.kill_all()
            if self._spawner is not None:
                self._spawner.kill()
            workers.remove_runtime_dir()
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
        if self._state is _CLOSING:
            raise PoolClosed(self.name)
        workers = self._workers
        workers.generation += 1
        if self._spawner is not None:
            self._spawner.renew()  # a new template imports the new code first
        # The files changed: earlier start failures say nothing about the new code.
        self._crash.forget()
        ready = 0
        for worker in list(workers.workers.values()):
            if worker.state is _STARTING:
                workers.cancel_start(worker)  # still loading the old code: not worth waiting
            elif worker.state.is_ready:
                ready += 1
        wanted = ready
        if self._state is _RUNNING:
            wanted = max(
                wanted, self._scaler.limits.min_instances, 1 if self._dispatcher.waiters else 0
            )
        if wanted == 0:
            if self._state in (PoolState.BACKOFF, PoolState.FAILED):
                self._set_state(PoolState.DORMANT)
            _log.info(
                "app %s: restart (%s): no worker runs; the next request starts the new code",
                self.name,
                reason,
                extra={"app": self.name},
            )
            return True
        self._set_state(_RUNNING)
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
            workers.start()
        done: asyncio.Future[bool] = self._running_loop().create_future()
        self._restart_waiters.append(done)
        self._check_restart()
        return await asyncio.shield(done)

    def set_bounds(self, min_instances: int, max_instances: int) -> None:
        """Keep at least ``min_instances`` workers and at most ``max_instances`` from now on
        (``corral scale``; the configured ones return when the pool is made again). Workers
        above the new ceiling finish their requests and stop, idle ones first; a new floor
        starts workers at once (a dormant pool with a floor of zero stays dormant).
        ``ValueError`` for bounds the policy refuses."""
        limits = self._scaler.limits
        self._scaler.limits = replace(
            limits, min_instances=min_instances, max_instances=max_instances
        )
        self._dispatcher.min_instances = min_instances
        surplus = sum(self._workers.counts()) - max_instances
        if surplus > 0:
            for worker in sorted(
                (w for w in self._workers.workers.values() if w.state.is_ready and not w.retiring),
                key=lambda w: (w.active, -w.id),
            )[:surplus]:
                worker.retiring = f"scaled down to {max_instances}"
                self._workers.retire(worker, worker.retiring)
        _log.info(
            "app %s: workers now %d to %d",
            self.name,
            min_instances,
            max_instances,
            extra={"app": self.name},
        )
        if self._state is _RUNNING or min_instances:
            if self._state is PoolState.DORMANT:
                self._set_state(_RUNNING)
            self._scaler.evaluate()

    async def stop_workers(self, reason: str) -> None:
        """Stop every worker and go dormant; the next ``acquire`` starts fresh ones.

        Workers serving requests finish them first (as in a rolling restart); requests waiting
        for a worker get ``PoolUnavailable(reason)``. Returns when no worker process is left.
        For running an application's deploy script, which wants the application stopped.
        """
        if self._state is _CLOSING:
            return
        if self._state is _RUNNING:
            self._set_state(PoolState.STOPPING)
        if self._spawner is not None:
            self._spawner.renew()
        self._scaler.cancel()
        error = PoolUnavailable(self.name, reason)
        now = self._loop_time()
        self._dispatcher.fail_waiters(lambda: self._crash.unavailable(error, now))
        workers = self._workers
        if workers.workers:
            _log.info(
                "app %s: stopping %d worker(s): %s",
                self.name,
                len(workers.workers),
                reason,
                extra={"app": self.name},
            )
        for worker in list(workers.workers.values()):
            if worker.state is _STARTING:
                workers.cancel_start(worker)
            elif worker.state.is_ready:
                workers.retire(worker, reason)
        await workers.wait_empty()
        if self._state is PoolState.STOPPING:
            self._set_state(PoolState.DORMANT)

    def snapshot(self) -> PoolSnapshot:
        """The pool's state as typed plain data (see ``snapshot.PoolSnapshot``)."""
        try:
            now = self._loop_time()
        except RuntimeError:  # called outside the loop (a test, a status dump at exit)
            now = time.monotonic()
        workers = tuple(
            WorkerInfo(
                worker_id=w.id,
                pid=w.pid,
                state=w.state.value,
                active=w.active,
                requests_served=w.requests_served,
                address=None if w.process is None else format_address(w.process.address),
                memory_mb=None if w.rss is None else round(w.rss / MIB, 1),
                age=round(now - w.ready_at, 3) if w.ready_at else None,
                retiring=w.retiring,
                cpu_time=w.cpu_time,
                generation=w.generation,
            )
            for w in sorted(self._workers.workers.values(), key=lambda w: w.id)
        )
        state = self._state
        crash = self._crash
        load = self._load
        dispatcher = self._dispatcher
        waiting = len(dispatcher.waiters)
        queued = sum(1 for lease in dispatcher.leases if lease.queued)
        return PoolSnapshot(
            app=self.name,
            workers=workers,
            waiting=waiting,
            in_flight=len(dispatcher.leases),
            queued=queued,
            queue_length=waiting + queued,
            start_failures=crash.failures,
            failed_starts=crash.failed_total,
            last_error=None if crash.last_error is None else str(crash.last_error),
            closing=state is _CLOSING,
            min_instances=self._scaler.limits.min_instances,
            max_instances=self._scaler.limits.max_instances,
            state=state.value,
            retry_in=(
                crash.retry_in(now) if state in (PoolState.BACKOFF, PoolState.FAILED) else None
            ),
            oldest_wait=dispatcher.oldest_wait(now),
            arrival_rate=round(load.arrival_rate, 3),
            service_time=load.service_time,
            spawn_time=load.spawn_time,
            free_memory_mb=None if load.free_memory is None else load.free_memory / MIB,
            cpu_idle=load.cpu_idle,
            held_back=load.held_back,
            held_reason=load.held_reason,
            capacity=dispatcher.capacity,
            thread_ceiling=dispatcher.ceiling,
            cpu_per_request=self._scaler.tuner.cpu_per_request,
            restarts=self._restarts,
            recycled=self._workers.recycled,
            recycled_for=tuple(self._workers.recycled_for.items()),
            crashed=self._workers.crashes,
            exits=tuple(replace(e, at=round(now - e.at, 3)) for e in self._workers.exits),
            template_pid=None if self._spawner is None else self._spawner.template_pid,
        )

    def _recycle(self, worker: Worker, why: str, hung: bool = False) -> None:
        """Retire a ready worker (it finishes its requests first; ``hung``: then it is killed)
        and let the policy start its replacement at once (a retiring worker no longer counts
        toward the floor)."""
        if not worker.state.is_ready or self._state is _CLOSING:
            return
        worker.retiring = why
        self._workers.count_recycled(why)
        self._workers.retire(worker, why, hung=hung)
        self._scaler.evaluate()

    # ------------------------------------------------------------------- worker events

    def worker_ready(self, worker: Worker, traits: WorkerTraits, took: float) -> None:
        """(``WorkerEvents``) A worker became ready: it takes the waiting requests."""
        if self._dispatcher.learn(worker, traits):
            scaler = self._scaler
            scaler.limits = replace(scaler.limits, capacity=self._dispatcher.capacity)
        self._load.spawned(took)
        self._crash.started()
        self._health.start()
        if worker.generation == self._workers.generation:
            self._workers.retire_one_old()
        self._dispatcher.dispatch()
        self._scaler.evaluate()
        self._check_restart()

    def start_failed(self, worker: Worker, reason: str, stderr_tail: str) -> None:
        """(``WorkerEvents``) A worker did not start: back off; when nothing runs, the waiting
        requests get the error and the app backs off (or is FAILED)."""
        error = PoolUnavailable(self.name, reason, stderr_tail)
        if self._state is _CLOSING:
            self._crash.failed(error, nothing_runs=False)
            return
        alive = self._workers.alive()
        self._crash.failed(error, nothing_runs=not alive)
        if not alive:
            # Nothing runs: the requests that wait for this app will not be served.
            now = self._loop_time()
            self._dispatcher.fail_waiters(lambda: self._crash.unavailable(error, now))
            self._set_state(PoolState.FAILED if self._crash.gave_up else PoolState.BACKOFF)
        self._scaler.evaluate()
        self._check_restart()

    def worker_exited(self, worker: Worker) -> None:
        """(``WorkerEvents``) A worker exited: the policy replaces it if needed."""
        self._scaler.evaluate()
        self._check_restart()

    def worker_gone(self, worker: Worker, cancelled: bool) -> None:
        """(``WorkerEvents``) A worker's start was cancelled, or its supervision failed."""
        if not cancelled:
            self._scaler.evaluate()
        elif self._state is not _CLOSING:  # cancelled by a rolling restart
            self._check_restart()

    def _check_restart(self) -> None:
        """Resolve the callers of ``restart`` once it has finished or failed."""
        if not self._restart_waiters:
            return
        outcome = self._workers.restart_outcome()
        if outcome is None:
            return
        if outcome:
            self._restarts += 1
        else:
            _log.error(
                "app %s: rolling restart failed: the new workers cannot start; the old ones "
                "keep serving",
                self.name,
                extra={"app": self.name},
            )
        waiters, self._restart_waiters = self._restart_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(outcome)
