"""The supervisor-front link's codec (``protocol.frontlink``): every message round-trips, in
any split of the byte stream; garbage is a ``LinkError``, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.protocol import frontlink as fl

ints = st.integers(0, 2**31)
text = st.text(max_size=40)
figures = st.builds(
    fl.Figures,
    ints,
    st.tuples(*[ints] * 6),
    st.tuples(*[ints] * 17),
    st.floats(0, 1e6, allow_nan=False),
    ints,
    ints,
)
addresses = st.one_of(text, st.tuples(text, st.integers(0, 65535)))
errors = st.builds(
    fl.ErrorInfo,
    st.sampled_from(["overloaded", "unavailable", "closed", "deploying", "deploy_failed"]),
    text,
    text,
    ints,
    st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
    st.booleans(),
    st.booleans(),
    ints,
)
messages = st.one_of(
    st.builds(fl.Hello, ints, ints),
    st.builds(
        fl.Routes, st.lists(st.tuples(text, text, text, ints), max_size=4).map(tuple), st.booleans()
    ),
    st.builds(fl.Grant, ints, ints, ints, ints, addresses),
    st.builds(fl.Revoke, ints, ints),
    st.builds(fl.Limit, ints, st.integers(-1, 1000)),
    st.builds(fl.Refuse, ints, errors),
    st.just(fl.Drain()),
    st.builds(fl.Stop, st.floats(0, 1e4, allow_nan=False)),
    st.just(fl.Reopen()),
    st.builds(fl.Demand, ints, ints),
    st.builds(fl.Give, ints, ints, st.booleans(), st.booleans()),
    st.builds(
        fl.Stats,
        st.lists(st.tuples(ints, figures), max_size=3).map(tuple),
        ints,
        ints,
        st.lists(st.tuples(ints, ints), max_size=3).map(tuple),
        figures,
    ),
)


@given(st.lists(messages, max_size=6), st.data())
def test_messages_round_trip_in_any_split(messages: list[fl.Message], data: st.DataObject) -> None:
    stream = b"".join(fl.encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    decoder = fl.Decoder()
    out: list[fl.Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert out == messages


@given(st.binary(max_size=200))
def test_garbage_is_a_link_error(body: bytes) -> None:
    decoder = fl.Decoder()
    try:
        decoder.feed(len(body).to_bytes(4, "big") + body)
    except fl.LinkError:
        pass


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"t": "nope"}', b'{"t": "grant", "app": "1"}', b'{"t": "demand", "app": true}',
     b'{"t": "stats", "apps": [[1, [1]]], "opened": 0, "open": 0, "errors": [],'
     b' "unrouted": [0, [], [], 0, 0, 0]}'],
)  # fmt: skip
def test_malformed_messages(body: bytes) -> None:
    with pytest.raises(fl.LinkError):
        fl.Decoder().feed(len(body).to_bytes(4, "big") + body)


def test_an_oversized_length_is_refused() -> None:
    with pytest.raises(fl.LinkError):
        fl.Decoder().feed((fl.MAX_MESSAGE + 1).to_bytes(4, "big"))
