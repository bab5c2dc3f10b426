"""The request counters (``front/stats.py``) and their history (``ops/history.py``): rates,
means and percentiles over windows, with a hand-driven clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.front.stats import DURATION_BOUNDS, RequestStats, quantile
from corral.ops.history import History


def test_a_request_is_counted_by_status_class_bucket_and_bytes() -> None:
    stats = RequestStats()
    stats.record(200, 0.003, 100, 10)
    stats.record(404, 0.005, 50, 0)  # on a bound: that bucket (le)
    stats.record(503, 99.0, 0, 0)  # slower than every bound: the last bucket
    stats.record(0, 0.2, 0, 0)  # cut short before a response: "other"
    assert stats.count == 4
    assert stats.by_class == [1, 0, 1, 0, 1, 1]
    assert stats.buckets[0] == 2 and stats.buckets[-1] == 1
    assert stats.buckets[DURATION_BOUNDS.index(0.25)] == 1
    assert (stats.bytes_sent, stats.bytes_received) == (150, 10)
    assert abs(stats.duration_sum - 99.208) < 1e-9


def test_quantiles_interpolate_within_a_bucket() -> None:
    buckets = [0] * (len(DURATION_BOUNDS) + 1)
    assert quantile(buckets, 0.99) is None
    buckets[DURATION_BOUNDS.index(0.1)] = 100  # every request between 0.075 and 0.1 s
    assert quantile(buckets, 0.5) == 0.0875
    assert abs((quantile(buckets, 0.99) or 0) - 0.09975) < 1e-9
    buckets[-1] = 1000  # most slower than the last bound: the bound is the answer
    assert quantile(buckets, 0.99) == DURATION_BOUNDS[-1]


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=200))
def test_the_p99_is_within_the_bucket_of_the_true_p99(durations: list[float]) -> None:
    stats = RequestStats()
    for seconds in durations:
        stats.record(200, seconds, 0, 0)
    p99 = quantile(stats.buckets, 0.99)
    assert p99 is not None
    true = sorted(durations)[max(0, -(-len(durations) * 99 // 100) - 1)]
    lower = max([0.0, *(b for b in DURATION_BOUNDS if b < true)])
    upper = min([*(b for b in DURATION_BOUNDS if b >= true), DURATION_BOUNDS[-1]])
    assert min(lower, upper) - 1e-9 <= p99 <= upper + 1e-9


def test_a_window_covers_the_last_seconds_and_a_series_steps_through_them() -> None:
    history = History(keep=100)
    stats = RequestStats()
    for second in range(0, 61):
        history.sample(float(second), {"blog": stats})
        for _ in range(second % 3):  # 0, 1, 2 requests a second in turn: 1/s
            stats.record(500 if second >= 50 else 200, 0.02, 0, 0)
    window = history.window("blog", 30.0, stats, 60.0)
    assert window.seconds == 30.0 and window.requests == 30 and window.rate == 1.0
    assert window.mean is not None and abs(window.mean - 0.02) < 1e-9
    assert window.p99 is not None and 0.01 < window.p99 <= 0.025
    assert window.by_class[5] == 11 and window.by_class[2] == 19
    series = history.series("blog", 60.0, step=10.0)
    assert [p.at for p in series] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert all(abs(p.rate - 1.0) < 0.11 for p in series)
    assert series[-1].errors > 0 and series[0].errors == 0
    # Asked for more than is kept: what is kept.
    assert history.window("blog", 1000.0, stats, 60.0).seconds == 60.0


def test_an_app_that_is_gone_is_forgotten_and_a_reset_counter_starts_over() -> None:
    history = History()
    old, new = RequestStats(), RequestStats()
    for _ in range(5):
        old.record(200, 0.01, 0, 0)
    history.sample(0.0, {"a": old, "b": RequestStats()})
    history.sample(1.0, {"a": old})
    assert history.series("b", 60.0) == []
    new.record(200, 0.01, 0, 0)  # "a" replaced by a reload: its counters start at zero
    window = history.window("a", 10.0, new, 2.0)
    assert window.requests == 1 and window.rate == 0.5
    # No history at all: the totals so far, and no rate.
    assert History().window("x", 60.0, old, 5.0).requests == 5
