"""Recent figures per application: samples of its ``RequestStats`` taken once a second.

Pure: the host calls ``History.sample(now, stats)`` from a timer, with its clock; readers ask for
a window (``window``: request rate, mean and p99 duration over the last N seconds, from the
difference between the newest sample and the one N seconds before it) or a series of points
(``series``: the dashboard's charts). Ten minutes are kept per application; an application
that is gone (removed by a reload) is forgotten at the next sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from corral.front.stats import RequestStats, quantile

#: Samples kept per application (one a second: ten minutes).
KEEP = 600


@dataclass(frozen=True, slots=True)
class Sample:
    """An application's counters at one moment (copies: the live ones keep growing)."""

    at: float
    count: int
    by_class: tuple[int, ...]
    buckets: tuple[int, ...]
    duration_sum: float

    @classmethod
    def of(cls, at: float, stats: RequestStats) -> Sample:
        return cls(at, stats.count, tuple(stats.by_class), tuple(stats.buckets), stats.duration_sum)


@dataclass(frozen=True, slots=True)
class Window:
    """What happened between two samples."""

    #: The seconds covered (less than asked for when the history is shorter).
    seconds: float
    requests: int
    #: Requests per second.
    rate: float
    #: Mean and 99th percentile of the request duration (seconds); None: no request.
    mean: float | None
    p99: float | None
    #: Responses by status class (``front.stats.STATUS_CLASSES``).
    by_class: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Point:
    """One step of a series: requests per second and p99 duration over that step."""

    at: float
    rate: float
    p99: float | None
    errors: float


def _between(old: Sample, new: Sample) -> Window:
    seconds = new.at - old.at
    requests = new.count - old.count
    if requests < 0:  # the counters were reset (the application was replaced): start over
        old = Sample(old.at, 0, (0,) * len(new.by_class), (0,) * len(new.buckets), 0.0)
        requests = new.count
    buckets = [b - a for a, b in zip(old.buckets, new.buckets, strict=True)]
    by_class = tuple(b - a for a, b in zip(old.by_class, new.by_class, strict=True))
    return Window(
        seconds=seconds,
        requests=requests,
        rate=requests / seconds if seconds > 0 else 0.0,
        mean=(new.duration_sum - old.duration_sum) / requests if requests else None,
        p99=quantile(buckets, 0.99),
        by_class=by_class,
    )


class History:
    """The last ``KEEP`` samples of every application, by its key."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._samples: dict[str, deque[Sample]] = {}

    def sample(self, now: float, stats: Mapping[str, RequestStats]) -> None:
        samples = self._samples
        for gone in samples.keys() - stats.keys():
            del samples[gone]
        for key, live in stats.items():
            ring = samples.get(key)
            if ring is None:
                ring = samples[key] = deque(maxlen=self._keep)
            ring.append(Sample.of(now, live))

    def window(self, key: str, seconds: float, live: RequestStats, now: float) -> Window:
        """The last ``seconds`` (or as much as is kept) up to ``now``'s live counters."""
        ring = self._samples.get(key)
        newest = Sample.of(now, live)
        oldest = Sample(now, 0, (0,) * len(live.by_class), (0,) * len(live.buckets), 0.0)
        if ring:
            oldest = ring[0]
            for sample in reversed(ring):
                if now - sample.at >= seconds:
                    oldest = sample
                    break
        if oldest.at >= now:
            return _between(Sample(now, 0, oldest.by_class, oldest.buckets, 0.0), newest)
        return _between(oldest, newest)

    def series(self, key: str, seconds: float, step: float = 5.0) -> list[Point]:
        """Points ``step`` seconds apart over the last ``seconds`` kept (oldest first)."""
        ring = self._samples.get(key)
        if not ring or len(ring) < 2:
            return []
        newest = ring[-1].at
        points: list[Point] = []
        previous: Sample | None = None
        for sample in ring:
            if newest - sample.at > seconds:
                continue
            if previous is None or sample.at - previous.at >= step - 1e-6:
                if previous is not None:
                    window = _between(previous, sample)
                    errors = window.by_class[5] / window.seconds if window.seconds > 0 else 0.0
                    points.append(Point(sample.at, window.rate, window.p99, errors))
                previous = sample
        return points
