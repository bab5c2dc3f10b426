"""When to try starting an application's workers again after they failed to start. Pure.

Two situations:

* **Nothing runs** (the app cannot start at all: it fails to import, exits at once, or never
  answers the probe). The requests that waited for that start get ``PoolUnavailable`` with the
  traceback. The next start is tried ``delay(failures)`` seconds after the failure: 1 s, 2 s, 4 s,
  8 s... (``initial`` x ``factor`` per consecutive failure); requests arriving meanwhile get the
  same error at once, without a process being spawned for each of them. After ``give_up_after``
  consecutive failures the application is FAILED: it is tried again only ``maximum`` seconds
  after the last failure (the ceiling), or as soon as its files change (the pool checks their
  modification times when a request comes), which is how a fixed deploy recovers by itself.
  ``retry_on_demand=True`` (the pool's behaviour before crash-loop protection) instead lets every
  request try again at once.
* **Some workers run** and adding one more failed. No request is left without a worker, so
  there is no hurry: further starts wait ``delay(failures)`` seconds too, so that a broken deploy
  does not turn the floor (``min_instances``) into a fork loop.

A worker that becomes ready resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StartBackoff:
    """Exponential delay between failed starts, as data."""

    initial: float = 1.0
    factor: float = 2.0
    #: The longest delay, and how often a FAILED application is tried again.
    maximum: float = 60.0
    #: When no worker runs, the next request tries again at once (no delay, never FAILED).
    retry_on_demand: bool = False
    #: Consecutive failed starts after which the application is FAILED.
    give_up_after: int = 5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("backoff delays must be >= 0")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, not {self.factor}")
        if self.give_up_after < 1:
            raise ValueError(f"give_up_after must be >= 1, not {self.give_up_after}")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next start after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        if failures >= self.give_up_after:
            return self.maximum
        delay = self.initial
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def next_start_at(self, failures: int, last_failure: float) -> float:
        """The earliest time (on the caller's clock) at which another start may be tried."""
        return last_failure + self.delay(failures)

    def gave_up(self, failures: int) -> bool:
        """True when ``failures`` consecutive failed starts make the application FAILED."""
        return failures >= self.give_up_after
