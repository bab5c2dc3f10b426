"""Which ports a `tcp` engine's instance is offered first (pure ordering, plus the /proc read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.supervision.ports import NoFreePort, PortBook, ephemeral_port_range, port_candidates
from ports import held_range


def test_ports_outside_the_ephemeral_range_come_first() -> None:
    # Zoo's default range against Linux's default ephemeral range.
    order = port_candidates(49152, 65535, 0, (32768, 60999))
    assert order[0] == 61000
    assert order[: 65535 - 61000 + 1] == list(range(61000, 65536))
    assert order[65535 - 61000 + 1] == 49152


def test_the_random_start_rotates_within_each_group() -> None:
    assert port_candidates(10, 19, 3, (15, 30)) == [13, 14, 10, 11, 12, 15, 16, 17, 18, 19]
    assert port_candidates(10, 19, 3, None) == [13, 14, 15, 16, 17, 18, 19, 10, 11, 12]


@given(
    low=st.integers(1, 60000),
    size=st.integers(1, 400),
    start=st.integers(0, 10_000),
    ephemeral=st.none() | st.tuples(st.integers(1, 65535), st.integers(1, 65535)).map(sorted),
)
def test_every_port_of_the_range_is_offered_once(
    low: int, size: int, start: int, ephemeral: list[int] | None
) -> None:
    high = min(65535, low + size - 1)
    start %= high - low + 1
    bounds = None if ephemeral is None else (ephemeral[0], ephemeral[1])
    order = port_candidates(low, high, start, bounds)
    assert sorted(order) == list(range(low, high + 1))
    if bounds is not None:
        inside = [bounds[0] <= port <= bounds[1] for port in order]
        assert inside == sorted(inside)  # all the outside ports first


def test_the_kernel_range_is_read_or_none(tmp_path: Path) -> None:
    good = tmp_path / "range"
    good.write_text("32768\t60999\n")
    assert ephemeral_port_range(str(good)) == (32768, 60999)
    bad = tmp_path / "bad"
    bad.write_text("nonsense\n")
    assert ephemeral_port_range(str(bad)) is None
    assert ephemeral_port_range(str(tmp_path / "missing")) is None


def test_a_port_found_taken_is_not_offered_again_for_a_while() -> None:
    """A port another program took (the readiness check saw its listener) is skipped by the
    next starts although it is free again, until ``taken_for`` has passed."""
    now = [0.0]
    book = PortBook(clock=lambda: now[0], taken_for=60.0)
    low, high = held_range(2)
    book.note_taken(low)
    picked = {book.pick("127.0.0.1", low, high)}
    book.release(high)
    for _ in range(10):
        picked.add(book.pick("127.0.0.1", low, high))
        book.release(high)
    assert picked == {high}
    book.held.add(high)  # now the only other port is held by a worker
    with pytest.raises(NoFreePort, match="1 held by other programs lately"):
        book.pick("127.0.0.1", low, high)
    now[0] = 61.0
    assert book.pick("127.0.0.1", low, high) == low
