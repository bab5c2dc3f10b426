"""A WSGI response's head (``worker/head.py``): checked and encoded the same whether its
status and header pairs were seen before (remembered) or not, and the tables stay bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.worker import head
from corral.worker.head import InvalidResponse, encode_head

names = st.one_of(
    st.sampled_from(["Content-Type", "Content-Length", "X-Tag", "Set-Cookie", "Connection"]),
    st.text(max_size=12),
)
values = st.one_of(
    st.sampled_from(["text/plain", "14", " 14 ", "0", "007", "a\r\nb", "caf\u00e9", "\u20ac"]),
    st.text(max_size=20),
)
headers = st.lists(st.tuples(names, values), max_size=5)


def outcome(status: str, given_headers: list[tuple[str, str]]) -> object:
    try:
        return encode_head(status, given_headers)
    except InvalidResponse as exc:
        return ("invalid", str(exc))


def fresh_outcome(status: str, given_headers: list[tuple[str, str]]) -> object:
    """The same with nothing remembered."""
    saved = dict(head._GOOD_PAIRS), dict(head._GOOD_NAMES), dict(head._GOOD_STATUSES)
    for table in (head._GOOD_PAIRS, head._GOOD_NAMES, head._GOOD_STATUSES):
        table.clear()
    try:
        return outcome(status, given_headers)
    finally:
        head._GOOD_PAIRS.update(saved[0])
        head._GOOD_NAMES.update(saved[1])
        head._GOOD_STATUSES.update(saved[2])


@given(st.sampled_from(["200 OK", "404 Not Found", "204 No Content"]), headers, headers)
def test_a_remembered_pair_gives_what_checking_it_gives(
    status: str, first: list[tuple[str, str]], second: list[tuple[str, str]]
) -> None:
    outcome(status, first)  # (remembers what it can)
    assert outcome(status, second) == fresh_outcome(status, second)
    assert outcome(status, first) == fresh_outcome(status, first)


def test_the_head_and_its_content_length() -> None:
    assert encode_head("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")]) == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n",
        14,
    )


def test_remembered_pairs_are_still_checked_together() -> None:
    encode_head("200 OK", [("Content-Length", "5")])
    encode_head("200 OK", [("Content-Length", "6")])
    with pytest.raises(InvalidResponse, match="conflicting Content-Length"):
        encode_head("200 OK", [("Content-Length", "5"), ("Content-Length", "6")])
    assert encode_head("200 OK", [("Content-Length", "5"), ("Content-Length", "5")])[1] == 5


def test_what_is_not_a_pair_of_str_is_refused_not_looked_up() -> None:
    bad: list[object] = [
        ["Content-Type", "text/plain"],  # a list: unhashable
        ("Content-Type", ["text/plain"]),  # a tuple holding a list: unhashable
        ("Content-Type", b"text/plain"),
        ("Content-Type",),
    ]
    encode_head("200 OK", [("Content-Type", "text/plain")])
    for item in bad:
        with pytest.raises(InvalidResponse):
            encode_head("200 OK", [item])  # type: ignore[list-item]


def test_the_pairs_table_is_bounded_and_long_values_are_not_kept() -> None:
    for n in range(head.PAIRS_MAX + 10):
        encode_head("200 OK", [("X-N", str(n))])
        assert len(head._GOOD_PAIRS) <= head.PAIRS_MAX
    assert ("X-N", str(head.PAIRS_MAX + 9)) in head._GOOD_PAIRS
    cookie = ("Set-Cookie", "s=" + "x" * 600)
    encode_head("200 OK", [cookie])
    assert cookie not in head._GOOD_PAIRS


def test_a_full_table_is_emptied_and_follows_what_the_app_sends_lately() -> None:
    """Statuses and header names use the one memo policy (``corral.protocol.memo``): an app
    that sent 512 distinct ones still gets the shortcut for the next, not the slow path for
    the life of the worker."""
    saved = dict(head._GOOD_NAMES), dict(head._GOOD_STATUSES)
    head._GOOD_NAMES.clear()
    head._GOOD_STATUSES.clear()
    try:
        for i in range(head._STATUSES_MAX):
            encode_head(f"{200 + i % 300} Reason {i}", [(f"X-Name-{i}", "v")])
        assert len(head._GOOD_STATUSES) == head._STATUSES_MAX
        assert len(head._GOOD_NAMES) == head._NAMES_MAX
        encode_head("299 Lately", [("X-Lately", "v")])
        assert head._GOOD_STATUSES == {"299 Lately": b"Status: 299 Lately\r\n"}
        assert head._GOOD_NAMES == {"X-Lately": "x-lately"}
    finally:
        head._GOOD_NAMES.clear()
        head._GOOD_STATUSES.clear()
        head._GOOD_NAMES.update(saved[0])
        head._GOOD_STATUSES.update(saved[1])
