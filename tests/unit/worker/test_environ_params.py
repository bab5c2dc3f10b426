"""The worker's fast PARAMS-to-environ path (``environ.environ_from_params``) against the
general one (``environ.build_environ`` over the codec's ``decode_pairs``): the same environ for any
params, whatever their lengths (1- and 4-byte length fields) and bytes (latin-1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.protocol.fastcgi import records
from corral.worker import wsgi
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
