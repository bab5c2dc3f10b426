"""The worker's fast PARAMS-to-environ path (``environ.environ_from_params``) against the
general one (``environ.build_environ`` over the codec's ``decode_pairs``): the same environ for any
params, whatever their lengths (1- and 4-byte length fields) and bytes (latin-1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.protocol.fastcgi import records
from corral.worker import environ, wsgi
from corral.worker.environ import build_environ, environ_from_params

BASE = wsgi.environ_base(multithread=False)

names = st.binary(min_size=1, max_size=300)
values = st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=400))


@given(st.lists(st.tuples(names, values), max_size=20))
def test_the_same_environ_as_the_general_path(pairs: list[tuple[bytes, bytes]]) -> None:
    data = records.encode_pairs(pairs)
    assert environ_from_params(BASE, data) == build_environ(BASE, pairs)


def test_names_and_values_are_latin1_text() -> None:
    pairs = [(b"PATH_INFO", b"/caf\xe9"), (b"HTTP_X_\xff", b"\x80\xa0v")]
    environ = environ_from_params(BASE, records.encode_pairs(pairs))
    assert environ["PATH_INFO"] == "/caf\u00e9"
    assert environ["HTTP_X_\u00ff"] == "\u0080\u00a0v"


def test_a_long_pair_after_short_ones_goes_the_general_way() -> None:
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"HTTP_COOKIE", b"c" * 200), (b"QUERY_STRING", b"q")]
    environ = environ_from_params(BASE, records.encode_pairs(pairs))
    assert environ["HTTP_COOKIE"] == "c" * 200
    assert environ["QUERY_STRING"] == "q"


pairs_lists = st.lists(st.tuples(names, values), max_size=8)


@given(pairs_lists, st.lists(pairs_lists, min_size=1, max_size=6))
def test_streams_that_begin_alike_get_the_same_environ_as_the_general_path(
    common: list[tuple[bytes, bytes]], tails: list[list[tuple[bytes, bytes]]]
) -> None:
    # The pairs streams begin with alike are remembered decoded and a stream that begins
    # with their bytes starts from them: each stream still gets the environ it says.
    environ._prefix = None  # (each example learns from its own first stream)
    environ._misses = 0
    for tail in tails:
        pairs = common + tail
        assert environ_from_params(BASE, records.encode_pairs(pairs)) == build_environ(BASE, pairs)


def test_the_pairs_every_stream_begins_with_are_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(environ, "_prefix", None)
    monkeypatch.setattr(environ, "_misses", 0)
    route = [(b"GATEWAY_INTERFACE", b"CGI/1.1"), (b"SCRIPT_NAME", b"")]
    streams = [
        records.encode_pairs([*route, (b"REMOTE_PORT", b"%d" % port), (b"PATH_INFO", b"/")])
        for port in (40000, 40001, 40002)
    ]
    for stream in streams:
        environ_from_params(BASE, stream)
    prefix = environ._prefix
    assert prefix is not None and prefix.base is BASE
    assert prefix.data == records.encode_pairs(route)
    # Another base (another worker's settings) does not use it.
    other = wsgi.environ_base(multithread=True)
    assert environ_from_params(other, streams[0])["wsgi.multithread"] is True
