"""What the front counts as requests end: per application (``RequestStats``, on its
``AppRoute``) and for the server as a whole (``FrontStats``).

Plain integers and a fixed-bucket duration histogram, updated in place once per request (a few
additions and one ``bisect``): the hot path builds no object and takes no lock. Readers (the
status command, ``/metrics``, the dashboard's history) copy the figures when they look; the
counters only grow, so a reader takes differences between two looks for rates.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

#: Upper bounds (seconds, inclusive) of the request duration histogram's buckets; a last
#: bucket takes everything slower. Prometheus' default bounds, with 30 s and 60 s added for
#: slow applications.
DURATION_BOUNDS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)

#: ``RequestStats.by_class`` index -> the status class it counts.
STATUS_CLASSES: Final = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")


class RequestStats:
    """The requests one application (or static folder) answered since it started."""

    __slots__ = ("buckets", "by_class", "bytes_received", "bytes_sent", "count", "duration_sum")

    def __init__(self) -> None:
        self.count = 0
        #: Responses by status class (index: ``STATUS_CLASSES``).
        self.by_class = [0] * len(STATUS_CLASSES)
        #: Request durations (head received to response sent): count per bucket of
        #: ``DURATION_BOUNDS``, and one more for slower ones; not cumulative.
        self.buckets = [0] * (len(DURATION_BOUNDS) + 1)
        self.duration_sum = 0.0
        self.bytes_sent = 0
        self.bytes_received = 0

    def record(self, status: int, seconds: float, sent: int, received: int) -> None:
        self.count += 1
        try:
            self.by_class[status // 100] += 1
        except IndexError:  # (a status the front never sends: 600 and above)
            self.by_class[0] += 1
        self.buckets[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.duration_sum += seconds
        self.bytes_sent += sent
        self.bytes_received += received


class FrontStats:
    """The front server's own figures (every connection, routed or not)."""

    __slots__ = ("connections_opened", "protocol_errors", "unrouted")

    def __init__(self) -> None:
        self.connections_opened = 0
        #: Requests refused before reaching an application, by status (400, 408, 413, 431...).
        self.protocol_errors: dict[int, int] = {}
        #: Requests that ended without a route (refused, or no site for their Host).
        self.unrouted = RequestStats()

    def protocol_error(self, status: int) -> None:
        errors = self.protocol_errors
        errors[status] = errors.get(status, 0) + 1


def quantile(bucket_counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of the durations counted in ``bucket_counts`` (per bucket of
    ``DURATION_BOUNDS``, not cumulative), interpolated linearly within its bucket as Prometheus'
    ``histogram_quantile`` does; the slowest bucket answers its lower bound. None: no data."""
    total = sum(bucket_counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(bucket_counts):
        if count and seen + count >= rank:
            if index >= len(DURATION_BOUNDS):
                return DURATION_BOUNDS[-1]
            lower = DURATION_BOUNDS[index - 1] if index else 0.0
            upper = DURATION_BOUNDS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return DURATION_BOUNDS[-1]
