"""The front's bounded memo tables (``corral.protocol.memo``): emptied when full."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.protocol.memo import remember


def test_a_full_table_is_emptied_before_the_new_entry() -> None:
    table = {b"a": 1, b"b": 2}
    assert remember(table, b"c", 3, 3) == 3
    assert table == {b"a": 1, b"b": 2, b"c": 3}
    assert remember(table, b"d", 4, 3) == 4
    assert table == {b"d": 4}


@given(st.lists(st.tuples(st.integers(0, 50), st.integers()), max_size=200), st.integers(1, 20))
def test_any_sequence_stays_bounded_and_keeps_the_latest(
    entries: list[tuple[int, int]], limit: int
) -> None:
    """Whatever is remembered, the table never holds more than ``limit`` entries and always
    serves the value just remembered; what it holds is what was remembered since it was last
    emptied (the latest value for each key)."""
    table: dict[int, int] = {}
    since_emptied: dict[int, int] = {}
    for key, value in entries:
        if len(table) >= limit:
            since_emptied = {}
        since_emptied[key] = value
        assert remember(table, key, value, limit) == value
        assert len(table) <= limit
        assert table[key] == value
        assert table == since_emptied
