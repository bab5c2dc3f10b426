"""Pipelining end to end: a real ``Pool`` of Corral's real Python worker, driven through the
front's real FastCGI client (``corral.backends.fastcgi``), the way the front drives it: requests
queued on a busy worker's connection, withdrawn from behind a slow one, sent again when their
connection dies, and the depth the pool allows.

The sinks below do what the front's ``HTTPConnection`` does with a lease (release it on the end
or the error, ``lease.began()`` when a queued request starts), so the pool sees the same calls
in the same order as under the front.

A queued lease is only given behind a request that began less than ``QUEUE_AHEAD_LIMIT`` (5 ms)
ago, so each test asks for it in the same event-loop step as it begins that request; a machine
stalled for longer than that between two lines of Python (a loaded CI box) makes the scenario
start again (``ATTEMPTS``), it never passes a test that should fail.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from pool_testkit import LOOPS, pid_alive, run_closing

from corral.backends import (
    BODY_NONE,
    BackendError,
    BackendNotStarted,
    Upstream,
    fastcgi,
)
from corral.backends.fastcgi import FastCGIClientConnection, encode_pairs
from corral.supervision import Pool, PoolSettings, python_worker_plan
from corral.supervision.launch import Address
from corral.supervision.lease import Lease
from corral.supervision.scaling import queue_depth

#: The app: ``/fast``; ``/sleep?S`` (or ``/sleep?S&TAG``) sleeps S seconds; ``/mark?X``
#: appends ``/mark?X`` to ``ran.log`` next to it (one line per run: a withdrawn request must
#: never run twice). Every answer is ``PID PATH?QUERY`` with a Content-Length.
APP = textwrap.dedent(
    """
    import os, time

    MARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran.log")

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        query = environ.get("QUERY_STRING", "")
        if path == "/sleep":
            time.sleep(float(query.partition("&")[0]))
        elif path == "/mark":
            with open(MARKS, "a") as marks:
                marks.write(f"{path}?{query}\\n")
        body = f"{os.getpid()} {path}?{query}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    """
)

#: The CGI variables the front sends for every request of this app (encoded once).
STATIC = encode_pairs(
    [
        (b"SCRIPT_NAME", b""),
        (b"SERVER_NAME", b"localhost"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"40000"),
    ]
)
#: How often a scenario starts again when the machine stalled past the 5 ms window.
ATTEMPTS = 5
#: Upper bound for any one wait (seconds).
WAIT = 20.0

FCGIPool = Pool
FCGILease = Lease


class Connector:
    """The front's real ``connect`` (``corral.backends.fastcgi.connect``), counting the
    connections the pool opens."""

    def __init__(self) -> None:
        self.opened = 0
        self._connect = functools.partial(fastcgi.connect, name="app")

    async def __call__(self, address: Address) -> FastCGIClientConnection:
        self.opened += 1
        return await self._connect(address)


class Request:
    """One request's ``ResponseSink``: what it heard, in order (also into the shared
    ``order``), and a future set on the end or the error. Releases its lease as the front
    does."""

    def __init__(self, pool: FCGIPool, target: str, order: list[tuple[str, str]]) -> None:
        self.pool = pool
        self.target = target
        self.order = order
        self.events: list[str] = []
        self.status = 0
        self.body = b""
        self.reusable: bool | None = None
        self.error: BackendError | None = None
        self.lease: FCGILease | None = None
        self.handle: Upstream | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished_at = 0.0

    def start(self, lease: FCGILease) -> None:
        """Begin the request on the lease's connection (a queued lease's handle included)."""
        self.lease = lease
        self.start_on(lease.conn)

    def start_on(self, handle: Upstream) -> None:
        """Begin the request on a connection (or a ``Follower``), without a lease."""
        self.handle = handle
        path, _, query = self.target.partition("?")
        params = [
            (b"REQUEST_METHOD", b"GET"),
            (b"PATH_INFO", path.encode()),
            (b"QUERY_STRING", query.encode()),
        ]
        handle.begin(STATIC, params, self, BODY_NONE)

    def _note(self, event: str) -> None:
        self.events.append(event)
        self.order.append((self.target, event))

    def _finish(self) -> None:
        self.finished_at = time.monotonic()
        if not self.done.done():
            self.done.set_result(None)

    # -- ResponseSink ------------------------------------------------------------------------

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self._note("head")

    def backend_body(self, data: bytes | memoryview) -> None:
        self.body += bytes(data)
        self._note("body")

    def backend_end(self, reusable: bool) -> None:
        self.reusable = reusable
        self._note("end")
        if self.lease is not None:
            self.pool.release(self.lease, reusable)
        self._finish()

    def backend_error(self, exc: BackendError) -> None:
        self.error = exc
        self._note("error")
        assert self.handle is not None
        self.handle.abort()
        if self.lease is not None:
            self.pool.release(self.lease, False)
        self._finish()

    def backend_flush(self) -> None:
        pass

    def backend_pause_writing(self) -> None:
        pass

    def backend_resume_writing(self) -> None:
        pass

    def backend_started(self) -> None:
        self._note("started")
        if self.lease is not None:
            self.lease.began()

    # -- checks ------------------------------------------------------------------------------

    def answered_by(self) -> int:
        """The pid of the worker that answered, after checking the answer is whole."""
        assert self.error is None, (self.target, self.error)
        assert self.status == 200 and self.events[-1] == "end", (self.target, self.events)
        pid, _, echoed = self.body.decode().partition(" ")
        assert echoed == self.target, (self.target, self.body)
        return int(pid)


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def make_pool(
    tmp_path: Path, connector: Connector, *, workers: int = 1, **overrides: Any
) -> FCGIPool:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wsgi.py").write_text(APP)
    plan = python_worker_plan(root, threads=1, app_env={})
    values: dict[str, Any] = {
        "min_instances": workers,
        "max_instances": workers,
        "connections_per_worker": 1,
        "start_timeout": 20.0,
        "graceful_shutdown_timeout": 5.0,
        "idle_timeout": None,
    }
    values.update(overrides)
    return Pool("app", plan, PoolSettings(**values), connector)


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "app" / "ran.log"
    return path.read_text().splitlines() if path.exists() else []


async def lease(pool: FCGIPool, *, queueable: bool = False, first: bool = False) -> FCGILease:
    """A lease the way the front gets one (``lease_or_wait``), waiting when it has to."""
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def deliver(result: object) -> None:
        if not got.done():
            got.set_result(result)

    answer = pool.lease_or_wait(deliver, queueable, first)
    if isinstance(answer, Lease):
        return answer
    result = None if answer is None else await asyncio.wait_for(got, WAIT)
    if result is None:
        return await pool.acquire()
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, Lease)
    return result


async def fetch(pool: FCGIPool, target: str, order: list[tuple[str, str]]) -> Request:
    """One request, from lease to release."""
    request = Request(pool, target, order)
    request.start(await lease(pool, queueable=True))
    await asyncio.wait_for(request.done, WAIT)
    return request


async def warm_up(pool: FCGIPool, order: list[tuple[str, str]], *, below: float = 0.002) -> None:
    """Wait until every worker the pool keeps is ready, then send fast requests until the
    pool's smoothed service time is short enough that requests queue on a busy connection
    (``queue_depth`` of at least 3)."""
    deadline = time.monotonic() + WAIT
    (await fetch(pool, "/fast?first", order)).answered_by()
    while True:
        snapshot = pool.snapshot()
        ready = [w for w in snapshot.workers if w.state in ("idle", "busy")]
        if len(ready) >= snapshot.min_instances:
            break
        assert time.monotonic() < deadline, snapshot
        await asyncio.sleep(0.02)
    for n in range(1000):
        (await fetch(pool, f"/fast?warm{n}", order)).answered_by()
        service = pool.snapshot().service_time
        if n >= 20 and service is not None and service < below:
            return
        assert time.monotonic() < deadline, f"the service time stays at {service} s"
    raise AssertionError("the service time never settled")


async def idle_lease(pool: FCGIPool) -> FCGILease:
    """A lease on a free worker (not queued): at once, or after connecting to it when it has
    no kept-alive connection yet."""
    got = pool.lease_or_wait(lambda _: None, True)
    if got is None:
        got = await pool.acquire()
    assert isinstance(got, Lease) and not got.queued and not got.follower, got
    return got


def queue_on(pool: FCGIPool, n: int) -> list[FCGILease] | None:
    """``n`` queued leases at once (call it right after beginning the request they queue
    behind); None, with whatever was given handed back, when the pool would not queue them
    (the machine stalled past the window: the caller starts over)."""
    leases: list[FCGILease] = []
    for _ in range(n):
        got = pool.lease_or_wait(lambda _: None, True)
        if not isinstance(got, Lease):
            if got is not None:
                pool.cancel_wait(got)
            for given in leases:
                pool.release(given, True)  # never begun: its place is freed
            return None
        leases.append(got)
    return leases


async def settle(requests: list[Request]) -> None:
    await asyncio.wait_for(asyncio.gather(*(r.done for r in requests)), WAIT)


async def queue_behind(
    pool: FCGIPool, order: list[tuple[str, str]], slow: str, n: int
) -> tuple[Request, FCGILease, list[FCGILease]]:
    """Begin ``slow`` (a path: its attempt number is appended) on a free worker and queue
    ``n`` leases behind it at once, starting over (up to ATTEMPTS times) when the machine
    stalled past the window. Returns without yielding to the loop after the queueing, so the
    caller's next step comes right after it."""
    for attempt in range(ATTEMPTS):
        request = Request(pool, f"{slow}&{attempt}", order)
        lease = await idle_lease(pool)
        request.start(lease)
        queued = queue_on(pool, n)
        if queued is not None:
            return request, lease, queued
        await settle([request])
    raise AssertionError("no request could be queued behind a fresh one")


# ------------------------------------------------------------------------------------ a. queue


def test_requests_queue_on_the_busy_connection_and_are_answered_in_order(
    loop: str, tmp_path: Path
) -> None:
    connector = Connector()
    pool = make_pool(tmp_path, connector)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        assert connector.opened == 1  # one kept-alive connection so far
        slow, slow_lease, queued = await queue_behind(pool, order, "/sleep?0.3", 2)
        fast = [Request(pool, f"/fast?q{i}", order) for i in range(2)]
        for request, queued_lease in zip(fast, queued, strict=True):
            assert queued_lease.queued and queued_lease.pooled is slow_lease.conn
            assert queued_lease.worker_pid == slow_lease.worker_pid
            assert queued_lease.conn is not slow_lease.conn  # its own handle
            request.start(queued_lease)
        order.clear()
        await settle([slow, *fast])
        pids = {r.answered_by() for r in (slow, *fast)}
        assert pids == {slow_lease.worker_pid}
        # In order, each whole before the next: the queued ones start when the one before ends.
        assert order == [
            (slow.target, "head"),
            (slow.target, "body"),
            (slow.target, "end"),
            (fast[0].target, "started"),
            (fast[0].target, "head"),
            (fast[0].target, "body"),
            (fast[0].target, "end"),
            (fast[1].target, "started"),
            (fast[1].target, "head"),
            (fast[1].target, "body"),
            (fast[1].target, "end"),
        ], order
        assert all(r.reusable for r in (slow, *fast))
        assert all(not q.queued for q in queued)  # began() was called
        # The same connection carried all three, and is kept for the next request.
        assert connector.opened == 1
        again = await fetch(pool, "/fast?after", order)
        assert again.lease is not None and again.lease.conn is slow_lease.conn
        assert connector.opened == 1
        snapshot = pool.snapshot()
        assert snapshot.in_flight == 0 and snapshot.waiting == 0
        assert [w.active for w in snapshot.workers] == [0]

    run_closing(loop, pool, main())


def test_requests_that_may_not_queue_wait_in_the_pool(tmp_path: Path) -> None:
    """``queueable=False`` (a request with a body, an unsafe method) waits for a free worker,
    even when it could have been queued on the busy connection."""
    connector = Connector()
    pool = make_pool(tmp_path, connector)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        # A queueable request is queued on that connection at once (so the pool would queue
        # one now: no stall past the window)...
        slow, _, probe = await queue_behind(pool, order, "/sleep?0.3", 1)
        # ... and right after it, one that may not queue waits in the pool (a future).
        got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        waiter = pool.lease_or_wait(got.set_result, False)
        assert isinstance(waiter, asyncio.Future), waiter
        assert pool.snapshot().waiting == 1
        second = Request(pool, "/fast?queued", order)
        second.start(probe[0])
        await settle([slow, second])
        result = await asyncio.wait_for(got, WAIT)
        assert isinstance(result, Lease) and not result.queued
        waited = Request(pool, "/fast?waited", order)
        waited.start(result)
        await settle([waited])
        for request in (slow, second, waited):
            request.answered_by()
        # The waiting one was served after the queued one (which was ahead on the connection).
        ends = [target for target, event in order if event == "end"]
        assert ends[-3:] == [slow.target, second.target, waited.target]

    run_closing("asyncio", pool, main())


def test_pipeline_depth_1_turns_queueing_off(tmp_path: Path) -> None:
    connector = Connector()
    pool = make_pool(tmp_path, connector, pipeline_depth=1)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        slow = Request(pool, "/sleep?0.2", order)
        slow.start(await idle_lease(pool))
        got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        waiter = pool.lease_or_wait(got.set_result, True)
        assert isinstance(waiter, asyncio.Future), waiter
        await settle([slow])
        result = await asyncio.wait_for(got, WAIT)
        assert isinstance(result, Lease) and not result.queued and not result.follower
        waited = Request(pool, "/fast?waited", order)
        waited.start(result)
        await settle([waited])
        assert waited.answered_by() == slow.answered_by()
        assert "started" not in waited.events

    run_closing("asyncio", pool, main())


# ------------------------------------------------------------------------------- b. withdrawal


def test_a_request_queued_behind_a_slow_one_is_withdrawn_and_served_elsewhere_once(
    loop: str, tmp_path: Path
) -> None:
    connector = Connector()
    pool = make_pool(tmp_path, connector, workers=2)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        for attempt in range(ATTEMPTS):
            # Worker A: a 0.2 s request, running long enough that nothing queues behind it.
            short = Request(pool, f"/sleep?0.2&{attempt}", order)
            short_lease = await idle_lease(pool)
            short.start(short_lease)
            await asyncio.sleep(0.03)
            # Worker B: a 1.0 s request, and a request queued behind it at once.
            long = Request(pool, f"/sleep?1.0&{attempt}", order)
            long_lease = await idle_lease(pool)
            assert long_lease.worker_pid != short_lease.worker_pid
            long.start(long_lease)
            queued = queue_on(pool, 1)
            if queued is None or short.done.done():
                for given in queued or ():
                    pool.release(given, True)
                await settle([short, long])
                continue
            break
        else:
            raise AssertionError("no request could be queued behind a fresh one")
        [queued_lease] = queued
        assert queued_lease.queued and queued_lease.pooled is long_lease.conn
        withdrawn = Request(pool, "/mark?once", order)
        withdrawn.start(queued_lease)

        # Once B's request has run 5 ms (the pool looks every 5 ms while requests are queued,
        # and A may take it), the queued request is withdrawn from behind it: the front hears
        # that it never started.
        await asyncio.wait_for(withdrawn.done, WAIT)
        assert not long.done.done()
        assert isinstance(withdrawn.error, BackendNotStarted), withdrawn.error
        assert withdrawn.error.withdrawn
        assert withdrawn.events == ["error"]

        # Sent again, first in line, as the front does: A serves it at once.
        again = Request(pool, "/mark?once", order)
        again.start(await lease(pool, queueable=True, first=True))
        await settle([again])
        assert not long.done.done(), "the withdrawn request waited for the slow one"
        assert again.answered_by() == short_lease.worker_pid
        assert long.finished_at == 0.0

        await settle([long])
        assert long.answered_by() == long_lease.worker_pid
        # B has come to the withdrawn request (it answers it empty, unrun) before it serves
        # anything else: a request on each worker makes sure of it.
        both = [Request(pool, f"/fast?sync{i}", order) for i in range(2)]
        for request in both:
            request.start(await idle_lease(pool))
        await settle(both)
        assert {r.answered_by() for r in both} == {short_lease.worker_pid, long_lease.worker_pid}
        assert marks(tmp_path) == ["/mark?once"]  # ran once, on A; never on B
        assert withdrawn.events == ["error"]  # B's empty answer went nowhere

    run_closing(loop, pool, main())


def test_a_request_queued_behind_a_slow_one_is_withdrawn_without_other_traffic(
    tmp_path: Path,
) -> None:
    """Worker B is given back right after A's slow request begins (before it counts as slow:
    the release finds nothing to withdraw) and no other request comes: the request queued
    behind the slow one must still be withdrawn and served by B, now idle, not wait out the
    slow one. (The pool once looked for stuck requests only when a lease was released; it
    looks on a timer now.)"""
    connector = Connector()
    pool = make_pool(tmp_path, connector, workers=2)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        for attempt in range(ATTEMPTS):
            held = await idle_lease(pool)  # B: leased, no request on it
            slow = Request(pool, f"/sleep?1.0&{attempt}", order)
            slow_lease = await idle_lease(pool)
            slow.start(slow_lease)
            queued = queue_on(pool, 1)
            pool.release(held, True)  # B is free from now on; nothing else is sent
            if queued is None:
                await settle([slow])
                continue
            break
        else:
            raise AssertionError("no request could be queued behind a fresh one")
        assert queued[0].pooled is slow_lease.conn
        waiting = Request(pool, "/mark?alone", order)
        waiting.start(queued[0])
        began = time.monotonic()
        await asyncio.wait_for(waiting.done, WAIT)
        if isinstance(waiting.error, BackendNotStarted):
            assert waiting.error.withdrawn
            waiting = Request(pool, "/mark?alone", order)
            waiting.start(await lease(pool, queueable=True, first=True))
            await settle([waiting])
        assert not slow.done.done(), (
            f"the queued request waited {time.monotonic() - began:.3f} s, for the slow one"
        )
        assert waiting.answered_by() == held.worker_pid
        await settle([slow])
        assert marks(tmp_path) == ["/mark?alone"]

    run_closing("asyncio", pool, main())


def test_the_connection_of_a_withdrawn_request_is_kept_alive_for_the_next(tmp_path: Path) -> None:
    """After a withdrawal, the slow request's connection serves the worker's next request:
    the pool does not lose track of it (no new connection to the worker)."""
    connector = Connector()
    pool = make_pool(tmp_path, connector, workers=2)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        assert connector.opened in (1, 2)
        for attempt in range(ATTEMPTS):
            short = Request(pool, f"/sleep?0.1&{attempt}", order)
            short_lease = await idle_lease(pool)
            short.start(short_lease)
            await asyncio.sleep(0.03)
            long = Request(pool, f"/sleep?0.4&{attempt}", order)
            long_lease = await idle_lease(pool)
            long.start(long_lease)
            queued = queue_on(pool, 1)
            if queued is None or short.done.done():
                for given in queued or ():
                    pool.release(given, True)
                await settle([short, long])
                continue
            break
        else:
            raise AssertionError("no request could be queued behind a fresh one")
        withdrawn = Request(pool, "/mark?w", order)
        withdrawn.start(queued[0])
        await asyncio.wait_for(withdrawn.done, WAIT)
        assert isinstance(withdrawn.error, BackendNotStarted) and withdrawn.error.withdrawn
        await settle([short, long])
        opened = connector.opened
        assert opened == 2  # one per worker
        # The worker answers the withdrawn request (empty, dropped by the client)...
        conn = long_lease.conn
        deadline = time.monotonic() + WAIT
        while not (conn.is_closed or conn.in_flight == 0):
            assert time.monotonic() < deadline, conn.in_flight
            await asyncio.sleep(0.01)
        # ... and then the connection is given back to the pool, kept alive: the worker's next
        # request goes on it (not on a new one, and it is not left open, owned by nobody).
        assert not conn.is_closed
        both = [Request(pool, f"/fast?next{i}", order) for i in range(2)]
        leases = [await idle_lease(pool) for _ in both]
        for request, given in zip(both, leases, strict=True):
            request.start(given)
        await settle(both)
        by_pid = {given.worker_pid: given.conn for given in leases}
        assert by_pid[long_lease.worker_pid] is conn, (
            "the withdrawn request's connection was not reused: the pool opened "
            f"{connector.opened - opened} more"
        )
        assert connector.opened == opened

    run_closing("asyncio", pool, main())


def test_the_answer_to_a_withdrawn_request_is_dropped_and_the_connection_serves_on(
    tmp_path: Path,
) -> None:
    """The client alone, on a leased connection to the real worker: a request queued behind
    a slow one and withdrawn (``withdraw_stuck``) is never run, its answer is dropped, and the
    connection stays open for the next request."""
    connector = Connector()
    pool = make_pool(tmp_path, connector)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        leased = await idle_lease(pool)
        conn = leased.conn
        slow = Request(pool, "/sleep?0.3", order)
        slow.start_on(conn)
        follower = conn.follower(4, 1.0)
        assert follower is not None
        withdrawn = Request(pool, "/mark?withdrawn", order)
        withdrawn.start_on(follower)
        assert conn.withdraw_stuck(1.0) == 0  # not stuck yet
        await asyncio.sleep(0.05)
        assert conn.withdraw_stuck(0.01) == 1
        await asyncio.wait_for(withdrawn.done, WAIT)
        assert isinstance(withdrawn.error, BackendNotStarted) and withdrawn.error.withdrawn
        assert not slow.done.done()
        await settle([slow])
        slow.answered_by()
        deadline = time.monotonic() + WAIT
        while conn.in_flight and not conn.is_closed:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert not conn.is_closed, "the connection was closed after the withdrawn answer"
        assert conn.usable
        after = Request(pool, "/fast?after", order)
        after.start_on(conn)
        await settle([after])
        after.answered_by()
        pool.release(leased, True)
        assert marks(tmp_path) == []
        assert withdrawn.events == ["error"]

    run_closing("asyncio", pool, main())


# --------------------------------------------------------------------------- c. a worker dies


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "after-the-pool-noticed"])
def test_requests_queued_on_a_killed_worker_are_leased_again(tmp_path: Path, at_once: bool) -> None:
    """SIGKILL a worker serving a request with two queued behind it: the one in progress
    fails, the queued ones never started and are leased again (first in line), ``at_once``
    as the front does, or once the pool has seen the worker go; the other worker or the
    replacement serves them."""
    connector = Connector()
    pool = make_pool(tmp_path, connector, workers=2)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        # Worker B: busy long enough that nothing queues behind it.
        other = Request(pool, "/sleep?1.5", order)
        other_lease = await idle_lease(pool)
        other.start(other_lease)
        await asyncio.sleep(0.03)
        doomed, doomed_lease, queued = await queue_behind(pool, order, "/sleep?2", 2)
        victim = doomed_lease.worker_pid
        assert victim != other_lease.worker_pid
        assert all(q.queued and q.pooled is doomed_lease.conn for q in queued)
        behind = [Request(pool, f"/fast?behind{i}", order) for i in range(2)]
        for request, queued_lease in zip(behind, queued, strict=True):
            request.start(queued_lease)
        os.kill(victim, signal.SIGKILL)
        await settle([doomed, *behind])
        # The request in progress failed (the front answers 502); the queued ones never
        # reached the app, and say so.
        assert isinstance(doomed.error, BackendError), doomed.events
        assert not isinstance(doomed.error, BackendNotStarted), doomed.error
        for request in behind:
            # (Withdrawn first, when the pool's 5 ms look came before the kill: the same news.)
            assert isinstance(request.error, BackendNotStarted), request.error
            assert request.events == ["error"]
        if not at_once:
            deadline = time.monotonic() + WAIT
            while victim in [w.pid for w in pool.snapshot().workers]:
                assert time.monotonic() < deadline, pool.snapshot()
                await asyncio.sleep(0.02)
        # Sent again, first in line: the other worker or the killed one's replacement serves
        # them.
        again = [Request(pool, f"/fast?again{i}", order) for i in range(2)]
        leases = await asyncio.gather(*(lease(pool, queueable=True, first=True) for _ in again))
        for request, given in zip(again, leases, strict=True):
            request.start(given)
        await settle([*again, other])
        for request in again:
            assert request.answered_by() != victim
        assert other.answered_by() == other_lease.worker_pid
        assert not pid_alive(victim)

    run_closing("asyncio", pool, main())


# ------------------------------------------------------------------------------- d. the depth


def test_pipeline_depth_bounds_the_requests_on_one_connection(tmp_path: Path) -> None:
    connector = Connector()
    pool = make_pool(tmp_path, connector, pipeline_depth=3)

    async def main() -> None:
        order: list[tuple[str, str]] = []
        await warm_up(pool, order)
        service = pool.snapshot().service_time
        assert queue_depth(service, 3) == 3  # the policy allows the full depth here
        slow, slow_lease, queued = await queue_behind(pool, order, "/sleep?0.3", 2)
        got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        third = pool.lease_or_wait(got.set_result, True)
        # Three on the connection (pipeline_depth): the next one waits in the pool.
        assert isinstance(third, asyncio.Future), third
        assert pool.snapshot().waiting == 1
        behind = [Request(pool, f"/fast?d{i}", order) for i in range(2)]
        for request, queued_lease in zip(behind, queued, strict=True):
            request.start(queued_lease)
        await settle([slow, *behind])
        result = await asyncio.wait_for(got, WAIT)
        assert isinstance(result, Lease)
        last = Request(pool, "/fast?last", order)
        last.start(result)
        await settle([last])
        assert {r.answered_by() for r in (slow, *behind, last)} == {slow_lease.worker_pid}
        ends = [target for target, event in order if event == "end"]
        assert ends[-4:] == [slow.target, behind[0].target, behind[1].target, last.target]

    run_closing("asyncio", pool, main())
