"""The host/template line protocol (``corral.protocol.spawnctl``): encode, decode, split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.engines.python_worker import preloads
from corral.protocol.spawnctl import MAX_LINE, Decoder, Message, ProtocolError, decode, encode
from corral.supervision.template import supported

numbers = st.integers(min_value=-(2**31), max_value=2**31)
reasons = st.text(min_size=0, max_size=200)


@given(kind=st.sampled_from(["spawn", "ready"]), n=numbers)
def test_one_number_messages_round_trip(kind: str, n: int) -> None:
    assert decode(encode(kind, n)[:-1]) == Message(kind, (n,))


@given(kind=st.sampled_from(["spawned", "exit"]), a=numbers, b=numbers)
def test_two_number_messages_round_trip(kind: str, a: int, b: int) -> None:
    assert decode(encode(kind, a, b)[:-1]) == Message(kind, (a, b))


@given(worker=numbers, reason=reasons)
def test_reasons_survive_as_one_line_of_ascii(worker: int, reason: str) -> None:
    line = encode("failed", worker, text=reason)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= MAX_LINE
    message = decode(line[:-1])
    assert message.kind == "failed" and message.numbers == (worker,)
    expected = " ".join(reason.split()) or "-"
    if expected.isascii():
        assert message.text == expected
    assert message.text


def test_nofork_carries_its_reason_with_spaces() -> None:
    message = decode(encode("nofork", text="its import started 2 thread(s)")[:-1])
    assert message == Message("nofork", (), "its import started 2 thread(s)")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"hello 1",
        b"spawn",
        b"spawn x",
        b"spawn 1 2",
        b"exit 1",
        b"failed 1",
        b"failed",
        b"spawned 1 -",
        b"ready \xff",
        b"exit 1 2 3",
    ],
)
def test_lines_that_are_not_messages_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(line)


def test_encode_refuses_wrong_arity() -> None:
    with pytest.raises(ProtocolError):
        encode("exit", 1)
    with pytest.raises(ProtocolError):
        encode("bogus")


@given(
    messages=st.lists(st.tuples(numbers, numbers), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_the_decoder_splits_a_stream_cut_anywhere(
    messages: list[tuple[int, int]], cuts: list[int]
) -> None:
    stream = b"".join(encode("exit", a, b) for a, b in messages)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = Decoder()
    got: list[Message] = []
    for start, end in itertools.pairwise(points):
        got += decoder.feed(stream[start:end])
    assert got == [Message("exit", (a, b)) for a, b in messages]


def test_the_decoder_refuses_an_endless_line() -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(b"spawn " + b"1" * MAX_LINE)


@pytest.mark.parametrize(
    ("preload", "max_instances", "expected"),
    [("off", 4, False), ("auto", 1, False), ("on", 1, True), ("auto", 0, True), ("auto", 4, True)],
)
def test_when_workers_are_preloaded(preload: str, max_instances: int, expected: bool) -> None:
    # (Where forked workers cannot be watched, nothing is preloaded.)
    assert preloads(preload, max_instances) is (expected and supported())
