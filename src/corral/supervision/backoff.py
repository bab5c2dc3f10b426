"""When to try starting an application's workers again after they failed to start. Pure.

Two situations, two answers:

* **Nothing runs** (the app cannot start at all: it fails to import, exits at once, or never
  answers the probe). Requests that waited get ``PoolUnavailable`` with the traceback, and the
  next request tries again (``retry_on_demand``). The time a start takes to fail paces those
  attempts: requests arriving meanwhile wait for its outcome.
* **Some workers run** and adding one more failed. No request is left without a worker, so
  there is no hurry: further starts wait ``delay(failures)`` seconds, doubling per consecutive
  failure up to ``maximum``, so that a broken deploy does not turn the floor (``min_instances``)
  into a fork loop.

A worker that becomes ready resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StartBackoff:
    """Exponential delay between failed starts, as data."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    #: When no worker runs, the next request tries again at once.
    retry_on_demand: bool = True

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("backoff delays must be >= 0")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, not {self.factor}")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next start after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        delay = self.initial
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def next_start_at(self, failures: int, last_failure: float) -> float:
        """The earliest time (on the caller's clock) at which another start may be tried."""
        return last_failure + self.delay(failures)
