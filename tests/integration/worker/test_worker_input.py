"""wsgi.input against io.BytesIO: any mix of read/readline/readlines over any chunking of the
body gives what a file would (within CONTENT_LENGTH), and never pulls chunks it does not need."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.worker.wsgi import ClientDisconnected, InputStream

Op = tuple[str, int]

ops = st.lists(
    st.tuples(
        st.sampled_from(["read", "read-all", "readline", "readline-all", "readlines", "next"]),
        st.integers(min_value=0, max_value=40),
    ),
    max_size=30,
)
bodies = st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n"))


def chunked(body: bytes, cuts: list[int]) -> tuple[Callable[[], bytes], list[int]]:
    """A read_chunk over ``body`` cut at ``cuts``; also returns a counter of chunks pulled."""
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    chunks = [body[a:b] for a, b in itertools.pairwise(points) if b > a]
    pulled = [0]

    def read_chunk() -> bytes:
        pulled[0] += 1
        return chunks.pop(0) if chunks else b""

    return read_chunk, pulled


def apply(stream: object, op: Op) -> object:
    name, n = op
    if name == "read":
        return stream.read(n)  # type: ignore[attr-defined]
    if name == "read-all":
        return stream.read()  # type: ignore[attr-defined]
    if name == "readline":
        return stream.readline(n)  # type: ignore[attr-defined]
    if name == "readline-all":
        return stream.readline()  # type: ignore[attr-defined]
    if name == "readlines":
        return stream.readlines(n)  # type: ignore[attr-defined]
    return next(iter(stream), b"")  # type: ignore[call-overload]


@settings(max_examples=300, deadline=None)
@given(body=bodies, cuts=st.lists(st.integers(0, 400), max_size=20), script=ops)
def test_behaves_like_a_file_without_content_length(
    body: bytes, cuts: list[int], script: list[Op]
) -> None:
    read_chunk, _ = chunked(body, cuts)
    stream = InputStream(read_chunk, None)
    reference = io.BytesIO(body)
    for op in script:
        assert apply(stream, op) == apply(reference, op), op


@settings(max_examples=300, deadline=None)
@given(
    body=bodies,
    extra=st.binary(max_size=20),
    cuts=st.lists(st.integers(0, 400), max_size=20),
    script=ops,
)
def test_content_length_is_the_end_of_the_stream(
    body: bytes, extra: bytes, cuts: list[int], script: list[Op]
) -> None:
    # The front sent more than CONTENT_LENGTH: the app sees exactly CONTENT_LENGTH bytes.
    read_chunk, _ = chunked(body + extra, cuts)
    stream = InputStream(read_chunk, len(body))
    reference = io.BytesIO(body)
    for op in script:
        assert apply(stream, op) == apply(reference, op), op


def test_reads_pull_only_the_chunks_they_need() -> None:
    read_chunk, pulled = chunked(b"line one\nline two\nrest", [3, 9, 12, 18])
    stream = InputStream(read_chunk, None)
    assert stream.readline() == b"line one\n"
    assert pulled[0] == 2  # "lin" + "e one\n": the line ends there; nothing more was pulled
    assert stream.read(2) == b"li"
    assert pulled[0] == 3


def test_a_body_ending_before_content_length_raises() -> None:
    read_chunk, _ = chunked(b"short", [])
    stream = InputStream(read_chunk, 10)
    with pytest.raises(ClientDisconnected, match="5 bytes short"):
        stream.read()


def test_zero_content_length_never_reads() -> None:
    def read_chunk() -> bytes:
        raise AssertionError("must not be called")

    stream = InputStream(read_chunk, 0)
    assert stream.read() == b""
    assert stream.readline() == b""
    assert list(stream) == []
