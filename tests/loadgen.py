"""Steady load for the many-nodes tests: a few client threads sending GETs one after another,
each on a fresh connection, every outcome recorded with its start and end time. The threads may
run in a network namespace (tests/netns.py): then ``address`` is on that host's network."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.harness import request
from tests.netns import enter


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    #: The status, or 0 when the request failed without one (a reset, a refused connection).
    status: int
    body: bytes
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """``clients`` threads sending ``GET path`` to ``port`` until ``stop()``, ``pause`` s apart."""

    port: int
    path: str = "/"
    clients: int = 4
    pause: float = 0.005
    address: str = "127.0.0.1"
    #: The network namespace the client threads enter first (None: this machine's network).
    netns: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for number in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        if self.netns is not None:
            enter(self.netns)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = request(self.port, path=self.path, address=self.address)
                outcome = Outcome(started, time.monotonic(), response.status, response.body)
            except (OSError, EOFError, AssertionError, ValueError) as exc:
                outcome = Outcome(started, time.monotonic(), 0, b"", f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.outcomes.append(outcome)
            time.sleep(self.pause)

    def since(self, moment: float) -> list[Outcome]:
        """The requests begun at or after ``moment`` (``time.monotonic()``)."""
        with self._lock:
            return [o for o in self.outcomes if o.started >= moment]

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if not o.ok]

    def wait_for(self, predicate: str, timeout: float, since: float) -> bool:
        """Whether an answer begun after ``since`` contains ``predicate`` within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        needle = predicate.encode()
        while time.monotonic() < deadline:
            if any(needle in o.body for o in self.since(since)):
                return True
            time.sleep(0.05)
        return False


def p99(outcomes: list[Outcome]) -> float:
    """The 99th percentile duration of ``outcomes`` (seconds)."""
    durations = sorted(o.ended - o.started for o in outcomes)
    if not durations:
        return 0.0
    return durations[min(len(durations) - 1, int(len(durations) * 0.99))]
