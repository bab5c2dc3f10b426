"""The supervisor's front processes (``front_processes`` > 1; docs/architecture.md, "The
front across cores").

With N fronts the ``corral serve`` process is the supervisor: it binds the listening sockets
(``FrontSet.listen``, in place of ``FrontServer.listen``), runs the pools and everything around
them, and starts N front processes (``python -m corral.frontproc``) that accept on those very
sockets (inherited descriptors: one listening socket, shared, on Linux and macOS alike). Each
front has a link (a socketpair, ``protocol.frontlink``) over which it gets the applications'
ids (``Routes``) and worker slots (``supervision.broker``) and sends its demand, the slots it
gives back, and its counters once a second, which are summed here into the supervisor's routes
and front statistics, so that ``corral status``, ``/metrics``, the dashboard and the history see
the whole host.

A front that dies (its link closes) loses its requests in flight and nothing else: its slots go
back to the pools at once, and a new front is started on the same sockets (at once, then, if it
keeps dying, after up to ``RESPAWN_MAX`` s). A reload is forwarded (``Routes(reload=True)``:
each front reads the configuration again and leases from the new applications), as are the
drain before a stop, the stop itself (each front finishes its requests within the grace) and
SIGUSR1 (every front reopens its access log: all append to the same file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from corral.front.linkerrors import error_info
from corral.front.stats import FrontStats, RequestStats
from corral.ops.hostapps import HostedApp
from corral.protocol.frontlink import (
    VERSION,
    Decoder,
    Demand,
    Drain,
    Figures,
    Give,
    Hello,
    LinkError,
    Message,
    Reopen,
    Routes,
    Stats,
    Stop,
    encode,
)
from corral.runtime.reload import app_key
from corral.supervision.broker import BrokeredApp, SlotBroker
from corral.supervision.launch import Address
from corral.supervision.lease import LeaseSource
from corral.supervision.lifecycle import WorkerState
from corral.supervision.snapshot import PoolSnapshot

logger = logging.getLogger("corral")

#: Most fronts ``front_processes = 0`` (auto) starts, and the cores per front it assumes.
AUTO_MAX = 8
CORES_PER_FRONT = 4
#: Seconds a new front is given to say it listens.
START_TIMEOUT = 30.0
#: One listening socket per front (SO_REUSEPORT balances connections among them on Linux;
#: elsewhere, macOS included, the fronts share one socket).
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
#: The longest pause before starting again a front that keeps dying (seconds).
RESPAWN_MAX = 5.0


def front_count(setting: int, cpus: int | None) -> int:
    """The fronts to run: ``setting``, or for 0 (auto) one per ``CORES_PER_FRONT`` cores, at
    least 1, at most ``AUTO_MAX`` (the fronts share the cores with the workers: on the
    smallest request a front spends about a quarter of the CPU of the whole request;
    docs/scaling.md)."""
    if setting > 0:
        return setting
    return max(1, min(AUTO_MAX, (cpus or 1) // CORES_PER_FRONT))


#: The ``ServeOptions`` (assembly, above this layer): pickled as they are.
ServeOptionsLike = object


class HostedRoute(Protocol):
    """What the fronts need of one of the supervisor's applications."""

    @property
    def key(self) -> tuple[str, str, str]: ...

    @property
    def stats(self) -> RequestStats: ...

    def source(self) -> LeaseSource: ...

    def snapshot(self) -> PoolSnapshot: ...

    @property
    def identity(self) -> int:
        """The same number for the same application object (kept by a reload)."""


@dataclass(frozen=True, eq=False)
class _Hosted:
    app: HostedApp

    @property
    def key(self) -> tuple[str, str, str]:
        return app_key(self.app.config)

    @property
    def stats(self) -> RequestStats:
        return self.app.route.stats

    def source(self) -> LeaseSource:
        return self.app.route.pool  # (the pool, or its deploy gate)

    def snapshot(self) -> PoolSnapshot:
        return self.app.pool.snapshot()

    @property
    def identity(self) -> int:
        return id(self.app)


def hosted(apps: Sequence[HostedApp]) -> list[HostedRoute]:
    """The host's applications as the fronts need them."""
    return [_Hosted(app) for app in apps]


def parse_address(shown: str) -> Address:
    """A worker's address as a snapshot shows it: a Unix socket's path, or host:port."""
    if shown.startswith("/") or ":" not in shown:
        return shown
    host, _, port = shown.rpartition(":")
    return (host.strip("[]"), int(port))


def ready_workers(snapshot: PoolSnapshot) -> dict[int, Address]:
    return {
        w.worker_id: parse_address(w.address)
        for w in snapshot.workers
        if w.address is not None and WorkerState(w.state).is_ready
    }


def most_slots(snapshot: PoolSnapshot) -> int:
    """The most slots an application can have: its worker ceiling times a worker's
    connections."""
    return max(snapshot.max_instances, 1) * max(snapshot.capacity, 1)


def add_figures(into: RequestStats, figures: Figures) -> None:
    into.count += figures.count
    into.duration_sum += figures.duration_sum
    into.bytes_sent += figures.bytes_sent
    into.bytes_received += figures.bytes_received
    for index, value in enumerate(figures.by_class[: len(into.by_class)]):
        into.by_class[index] += value
    for index, value in enumerate(figures.buckets[: len(into.buckets)]):
        into.buckets[index] += value


def figures_of(stats: RequestStats) -> Figures:
    return Figures(
        stats.count,
        tuple(stats.by_class),
        tuple(stats.buckets),
        stats.duration_sum,
        stats.bytes_sent,
        stats.bytes_received,
    )


def reset(stats: RequestStats) -> None:
    stats.count = 0
    stats.duration_sum = 0.0
    stats.bytes_sent = stats.bytes_received = 0
    stats.by_class[:] = [0] * len(stats.by_class)
    stats.buckets[:] = [0] * len(stats.buckets)


@dataclass(frozen=True, slots=True)
class Listener:
    sock: socket.socket
    #: The port the configuration names (0 with --listen HOST:0: the port bound).
    port: int
    tls: bool
    #: The front (by position) that accepts on it; None: every front (one shared socket).
    front: int | None = None


class LinkPeer(Protocol):
    """What one end of a link serves: the supervisor's ``Front``, or the front's process."""

    def received(self, message: Message) -> None: ...

    def link_broken(self, exc: LinkError) -> None:
        """The other end sent bytes that are no message: the link is useless."""

    def link_lost(self) -> None: ...


class LinkEnd(asyncio.Protocol):
    """One end of a front's link (the supervisor's or the front's): decodes the messages for
    its peer, encodes what the peer sends."""

    def __init__(self, peer: LinkPeer) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self._decoder = Decoder()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except LinkError as exc:
            self.peer.link_broken(exc)
            return
        for message in messages:
            self.peer.received(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.peer.link_lost()

    def send(self, message: Message) -> None:
        if self.transport is not None:
            self.transport.write(encode(message))


@dataclass(eq=False)
class Front:
    """One front process."""

    ident: int
    #: Its place among the fronts (its own sockets with SO_REUSEPORT; kept by a replacement).
    position: int
    proc: subprocess.Popen[bytes]
    owner: FrontSet
    link: LinkEnd | None = None
    ready: asyncio.Future[None] | None = None
    last: Stats = field(default_factory=Stats)
    gone: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, message: Message) -> None:
        if self.link is not None:
            self.link.send(message)

    def received(self, message: Message) -> None:
        owner = self.owner
        if isinstance(message, Demand):
            owner.broker.demand(self.ident, message.app, message.want)
        elif isinstance(message, Give):
            owner.broker.give(self.ident, message.app, message.slot, message.lost, message.stuck)
        elif isinstance(message, Stats):
            self.last = message
            owner.sum_stats()
        elif isinstance(message, Hello):
            if message.version != VERSION:
                logger.error("front pid %s speaks link version %s, not %s", self.pid,
                             message.version, VERSION)  # fmt: skip
                self.proc.kill()
                return
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)

    def link_broken(self, exc: LinkError) -> None:
        logger.error("front pid %s: broken link (%s): stopping it", self.pid, exc)
        if self.link is not None and self.link.transport is not None:
            self.link.transport.close()

    def link_lost(self) -> None:
        self.owner.front_lost(self)


class FrontSet:
    """The supervisor's fronts: their sockets, processes, links and figures."""

    def __init__(
        self,
        count: int,
        options: ServeOptionsLike,
        front_stats: FrontStats | None = None,
        *,
        command: Sequence[str] = (sys.executable, "-m", "corral.frontproc"),
    ) -> None:
        """
        Args:
            options: the ``ServeOptions`` each front loads the configuration with (pickled to
                its standard input: they may hold the application's variables).
            front_stats: the supervisor's front statistics, kept as the fronts' sum.
        """
        self.count = count
        self._options = pickle.dumps(options)
        self._command = tuple(command)
        self.front_stats = front_stats or FrontStats()
        self.broker = SlotBroker(error_info)
        self.listeners: list[Listener] = []
        self.fronts: dict[int, Front] = {}
        self._next = 1
        self._routes: dict[int, HostedRoute] = {}
        self._ids: dict[int, int] = {}  # id(route object) -> app id
        #: The figures of fronts that died, by app id (so that totals never go back).
        self._retired: dict[int, RequestStats] = {}
        self._retired_front = Stats()
        self._retired_unrouted = RequestStats()
        self._retired_errors: dict[int, int] = {}
        self._stopping = False
        self._respawns: set[asyncio.Task[None]] = set()
        self._deaths: list[float] = []
        self._app_counter = 0
        #: The applications' ids as the fronts are told them (``Routes``).
        self._table = Routes(())

    # ------------------------------------------------------------------ listening

    async def listen(
        self,
        host: str,
        port: int,
        *,
        sock: socket.socket | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
        backlog: int = 1024,
    ) -> list[tuple[str, int]]:
        """Bind (or take, socket activation) the sockets for ``host:port`` that the fronts
        will accept on; returns the addresses bound, as ``FrontServer.listen`` does."""
        if sock is not None or not REUSE_PORT:
            socks = [sock] if sock is not None else _bind(host, port, backlog)
            for each in socks:
                each.set_inheritable(True)
                self.listeners.append(Listener(each, port, tls is not None))
        else:
            # One socket per front, on the same port (SO_REUSEPORT): the kernel spreads the
            # connections evenly; a shared socket would wake one front for most of them.
            socks = _bind(host, port, backlog, reuse_port=True)
            for position in range(self.count):
                own = socks if position == 0 else _bind_again(socks, backlog)
                for each in own:
                    each.set_inheritable(True)
                    self.listeners.append(Listener(each, port, tls is not None, position))
        bound: list[tuple[str, int]] = []
        for each in socks:
            name = each.getsockname()
            bound.append((str(name[0]), int(name[1])))
        return bound

    # ------------------------------------------------------------------ applications

    def _app_id(self, route: HostedRoute) -> int:
        ident = self._ids.get(route.identity)
        if ident is None:
            ident = self._ids[route.identity] = self._next_app()
            self._routes[ident] = route
            self.broker.add_app(
                BrokeredApp(
                    ident,
                    route.source,
                    lambda: ready_workers(route.snapshot()),
                    lambda: most_slots(route.snapshot()),
                )
            )
        return ident

    def _next_app(self) -> int:
        self._app_counter += 1
        return self._app_counter

    def set_routes(self, routes: Sequence[HostedRoute], reload: bool) -> None:
        """The applications now (at start; after a reload, ``reload``: the fronts read the
        configuration again, then lease from these)."""
        keep = {self._app_id(route) for route in routes}
        for ident in [i for i in self._routes if i not in keep]:
            route = self._routes.pop(ident)
            self._ids.pop(route.identity, None)
            self.broker.remove_app(ident)
        self._table = Routes(tuple((*self._routes[i].key, i) for i in sorted(keep)), reload)
        if reload:
            for front in self.fronts.values():
                front.send(self._table)

    # ------------------------------------------------------------------ processes

    async def start(self, routes: Sequence[HostedRoute]) -> None:
        """Start every front; returns once each listens."""
        self.set_routes(routes, reload=False)
        fronts = [await self._spawn(position) for position in range(self.count)]
        await asyncio.gather(*(self._wait_ready(front) for front in fronts))

    async def _spawn(self, position: int) -> Front:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        mine = [each for each in self.listeners if each.front in (None, position)]
        fds = [child.fileno(), *(listener.sock.fileno() for listener in mine)]
        sockets = ",".join(
            f"{listener.sock.fileno()}:{listener.port}:{int(listener.tls)}" for listener in mine
        )
        proc = _start(
            [*self._command, "--link", str(child.fileno()), "--sockets", sockets],
            fds,
            self._options,
        )
        child.close()
        ident = self._next
        self._next += 1
        front = Front(ident, position, proc, self, ready=loop.create_future())
        front.link = LinkEnd(front)
        self.fronts[ident] = front
        self.broker.add_front(ident, front)
        link = front.link
        parent.setblocking(False)
        await loop.connect_accepted_socket(lambda: link, parent)
        front.send(self._table)
        return front

    async def _wait_ready(self, front: Front) -> None:
        assert front.ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(front.ready), START_TIMEOUT)
        except TimeoutError:
            logger.error("front pid %s did not start within %g s", front.pid, START_TIMEOUT)
            return
        logger.info("front %d (pid %s) serving", front.ident, front.pid)

    def front_lost(self, front: Front) -> None:
        """A front's link closed: it died or stopped."""
        if front.gone:
            return
        front.gone = True
        self.fronts.pop(front.ident, None)
        self.broker.front_gone(front.ident)
        self._retire_figures(front.last)
        if front.ready is not None and not front.ready.done():
            front.ready.set_result(None)
        task = asyncio.get_running_loop().create_task(self._reap(front))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _reap(self, front: Front) -> None:
        loop = asyncio.get_running_loop()
        try:
            code = await asyncio.wait_for(loop.run_in_executor(None, front.proc.wait), 5.0)
        except TimeoutError:
            front.proc.kill()
            code = await loop.run_in_executor(None, front.proc.wait)
        if self._stopping:
            return
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        now = loop.time()
        self._deaths = [t for t in self._deaths if now - t < 10.0] + [now]
        pause = min(RESPAWN_MAX, 0.1 * 2 ** (len(self._deaths) - 1)) if len(self._deaths) > 1 else 0
        logger.error(
            "front %d (pid %s) died (%s): its requests in flight are lost; starting another%s",
            front.ident,
            front.pid,
            how,
            f" in {pause:.1f} s" if pause else "",
        )
        if pause:
            await asyncio.sleep(pause)
        if not self._stopping:
            await self._wait_ready(await self._spawn(front.position))

    # ------------------------------------------------------------------ figures

    def _retire_figures(self, last: Stats) -> None:
        for app, figures in last.apps:
            add_figures(self._retired.setdefault(app, RequestStats()), figures)
        add_figures(self._retired_unrouted, last.unrouted)
        for status, count in last.protocol_errors:
            self._retired_errors[status] = self._retired_errors.get(status, 0) + count
        self._retired_front = Stats(
            connections_opened=self._retired_front.connections_opened + last.connections_opened
        )
        self.sum_stats()

    def sum_stats(self) -> None:
        """Every front's counters (and those of fronts gone) into the supervisor's routes and
        front statistics."""
        fronts = [front.last for front in self.fronts.values()]
        for ident, route in self._routes.items():
            stats = route.stats
            reset(stats)
            retired = self._retired.get(ident)
            if retired is not None:
                add_figures(stats, figures_of(retired))
            for last in fronts:
                for app, figures in last.apps:
                    if app == ident:
                        add_figures(stats, figures)
        mine = self.front_stats
        mine.connections_opened = self._retired_front.connections_opened + sum(
            last.connections_opened for last in fronts
        )
        errors = dict(self._retired_errors)
        for last in fronts:
            for status, count in last.protocol_errors:
                errors[status] = errors.get(status, 0) + count
        mine.protocol_errors = errors
        reset(mine.unrouted)
        add_figures(mine.unrouted, figures_of(self._retired_unrouted))
        for last in fronts:
            add_figures(mine.unrouted, last.unrouted)

    @property
    def connections(self) -> int:
        """Client connections open in every front (as of their last figures)."""
        return sum(front.last.connections for front in self.fronts.values())

    def pids(self) -> list[int]:
        return [front.pid for front in self.fronts.values()]

    # ------------------------------------------------------------------ life

    def drain(self) -> None:
        for front in self.fronts.values():
            front.send(Drain())

    def reopen_logs(self) -> None:
        for front in self.fronts.values():
            front.send(Reopen())

    async def stop(self, grace: float) -> None:
        """Every front stops accepting and finishes its requests within ``grace`` s."""
        self._stopping = True
        fronts = list(self.fronts.values())
        for front in fronts:
            front.send(Stop(grace))
        loop = asyncio.get_running_loop()
        for front in fronts:
            try:
                await asyncio.wait_for(loop.run_in_executor(None, front.proc.wait), grace + 5.0)
            except TimeoutError:
                logger.warning("front pid %s did not stop in time: killing it", front.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(front.pid, signal.SIGKILL)
                await loop.run_in_executor(None, front.proc.wait)
        for task in list(self._respawns):
            task.cancel()
        await asyncio.gather(*self._respawns, return_exceptions=True)
        self.broker.close()
        for listener in self.listeners:
            listener.sock.close()


def _start(argv: list[str], fds: list[int], options: bytes) -> subprocess.Popen[bytes]:
    """Start a front process with the descriptors ``fds``, ``options`` on its standard input
    (a few hundred bytes: the pipe takes them whole). Forking takes a millisecond or two, at
    start and when a front is replaced."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=fds)
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.write(options)
    with contextlib.suppress(OSError):
        proc.stdin.close()
    return proc


def _bind(host: str, port: int, backlog: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (each address it resolves to), as asyncio's
    ``create_server`` binds them; ``reuse_port``: with SO_REUSEPORT, for ``_bind_again``."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    chosen = 0
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if chosen and address[1] == 0:
                address = (address[0], chosen, *address[2:])
            sock.bind(address)
            chosen = chosen or sock.getsockname()[1]
            sock.listen(backlog)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind_again(socks: list[socket.socket], backlog: int) -> list[socket.socket]:
    """More listening sockets on the very addresses of ``socks`` (SO_REUSEPORT)."""
    again: list[socket.socket] = []
    try:
        for bound in socks:
            sock = socket.socket(bound.family, bound.type, bound.proto)
            again.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if bound.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(bound.getsockname())
            sock.listen(backlog)
    except OSError:
        for sock in again:
            sock.close()
        raise
    return again
