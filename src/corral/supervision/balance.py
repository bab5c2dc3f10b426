"""Which of a service's servers gets the next request, and when a server counts as down or up:
the pure policy behind ``ServicePool`` (``tcp.service`` with several addresses). No I/O, no
clock of its own: every call takes ``now`` (``time.monotonic()`` in the pool, a fake in tests).

- Balancing: least outstanding requests, each server's count divided by its weight (1 when
  fully up, less during slow start); ties go round-robin so that idle servers share the load.
- Passive detection: a connection refused (``failed(definite=True)``) takes a server down at
  once; other failures (a reset, a 5xx to an idempotent request) after ``fall`` in a row. Any
  success clears the count.
- Active checks (``checked``): a failed check takes a server down; ``rise`` checks in a row
  that pass bring it back.
- A down server is tried again by a real request after ``retry_after`` seconds (one request at a
  time: if it fails, the server stays down for another ``retry_after``), so a service without
  active checks still notices a server that came back.
- A service with a single server always gets the request (there is nowhere else to send it):
  its state is shown, but never holds a request back.
- Slow start: a server that comes back gets a weight rising linearly from ``MIN_WEIGHT`` to 1
  over ``slow_start`` seconds, so a cold server is not handed a full share at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: A returning server's weight at the start of its slow start.
MIN_WEIGHT = 0.1


class ServerState(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    SLOW_START = "slow-start"


@dataclass(frozen=True, slots=True)
class BalanceSettings:
    #: Failures in a row (resets, 5xx to idempotent requests) that take a server down.
    fall: int = 2
    #: Passing active checks in a row that bring a down server back.
    rise: int = 1
    #: Seconds before a down server is tried again by a request.
    retry_after: float = 5.0
    #: Seconds over which a returning server's weight rises to 1 (0: at once).
    slow_start: float = 10.0

    def __post_init__(self) -> None:
        if self.fall < 1 or self.rise < 1:
            raise ValueError("fall and rise must be >= 1")
        if self.retry_after < 0 or self.slow_start < 0:
            raise ValueError("retry_after and slow_start must be >= 0")


@dataclass(slots=True)
class _Server:
    up: bool = True
    #: When it last came back (slow start runs from here); None: up since the start.
    up_since: float | None = None
    #: When it went down, or when its last trial request was given.
    down_since: float = 0.0
    #: A trial request is out on this down server.
    trying: bool = False
    in_flight: int = 0
    #: Failures in a row (passive), passing checks in a row (active, while down).
    fails: int = 0
    passes: int = 0
    #: Failures counted over its life, and requests given.
    failures: int = 0
    requests: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ServerView:
    """One server as the status document shows it."""

    state: ServerState
    in_flight: int
    failures: int
    requests: int
    weight: float
    last_error: str | None


@dataclass(slots=True)
class Balancer:
    """The state of ``count`` servers, numbered 0..count-1."""

    count: int
    settings: BalanceSettings = field(default_factory=BalanceSettings)
    _servers: list[_Server] = field(init=False)
    _next: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a service needs at least one server")
        self._servers = [_Server() for _ in range(self.count)]

    # -- choosing ---------------------------------------------------------------------------

    def pick(self, now: float, exclude: frozenset[int] = frozenset()) -> int | None:
        """The server for the next request (its in-flight count is raised: give it back with
        ``done``), or None when every server not in ``exclude`` is down and none is due for a
        trial."""
        best: int | None = None
        best_score = 0.0
        for offset in range(self.count):
            index = (self._next + offset) % self.count
            server = self._servers[index]
            if index in exclude or not server.up:
                continue
            score = (server.in_flight + 1) / self._weight(server, now)
            if best is None or score < best_score:
                best, best_score = index, score
        if best is None:
            best = self._trial(now, exclude)
            if best is None and self.count == 1 and 0 not in exclude:
                best = 0  # a lone server is never held back (nowhere else to go), as nginx does
            if best is None:
                return None
        self._next = (best + 1) % self.count
        server = self._servers[best]
        server.in_flight += 1
        server.requests += 1
        return best

    def _trial(self, now: float, exclude: frozenset[int]) -> int | None:
        """A down server due for another try (the one down longest), marked as being tried."""
        due = [
            index
            for index, server in enumerate(self._servers)
            if index not in exclude
            and not server.up
            and not server.trying
            and now - server.down_since >= self.settings.retry_after
        ]
        if not due:
            return None
        index = min(due, key=lambda i: self._servers[i].down_since)
        server = self._servers[index]
        server.trying = True
        server.down_since = now
        return index

    def _weight(self, server: _Server, now: float) -> float:
        ramp = self.settings.slow_start
        if server.up_since is None or ramp <= 0:
            return 1.0
        elapsed = now - server.up_since
        if elapsed >= ramp:
            return 1.0
        return max(MIN_WEIGHT, elapsed / ramp)

    # -- outcomes ---------------------------------------------------------------------------

    def done(self, index: int) -> None:
        """A request given by ``pick`` ended (whatever its outcome)."""
        server = self._servers[index]
        server.in_flight = max(0, server.in_flight - 1)
        server.trying = False

    def succeeded(self, index: int, now: float) -> None:
        """A request reached the server and was answered (not a failure)."""
        server = self._servers[index]
        server.fails = 0
        if not server.up:
            self._bring_up(server, now)

    def failed(self, index: int, now: float, reason: str, *, definite: bool = False) -> None:
        """A request failed on the server: ``definite`` (connection refused: nobody listens)
        takes it down at once, else after ``fall`` failures in a row."""
        server = self._servers[index]
        server.failures += 1
        server.last_error = reason
        server.trying = False
        if not server.up:
            server.down_since = now
            return
        server.fails += 1
        if definite or server.fails >= self.settings.fall:
            self._take_down(server, now)

    def checked(self, index: int, ok: bool, now: float, reason: str = "") -> None:
        """An active health check's result."""
        server = self._servers[index]
        if ok:
            if server.up:
                return
            server.passes += 1
            if server.passes >= self.settings.rise:
                self._bring_up(server, now)
            return
        server.passes = 0
        server.last_error = reason or "health check failed"
        if server.up:
            server.failures += 1
            self._take_down(server, now)

    def _take_down(self, server: _Server, now: float) -> None:
        server.up = False
        server.down_since = now
        server.fails = 0
        server.passes = 0
        server.trying = False

    def _bring_up(self, server: _Server, now: float) -> None:
        server.up = True
        server.up_since = now
        server.fails = 0
        server.passes = 0
        server.trying = False

    # -- showing ----------------------------------------------------------------------------

    def is_up(self, index: int) -> bool:
        return self._servers[index].up

    def view(self, now: float) -> tuple[ServerView, ...]:
        return tuple(self._view(server, now) for server in self._servers)

    def _view(self, server: _Server, now: float) -> ServerView:
        weight = self._weight(server, now) if server.up else 0.0
        if not server.up:
            state = ServerState.DOWN
        elif weight < 1.0:
            state = ServerState.SLOW_START
        else:
            state = ServerState.UP
        return ServerView(
            state=state,
            in_flight=server.in_flight,
            failures=server.failures,
            requests=server.requests,
            weight=round(weight, 3),
            last_error=server.last_error,
        )
