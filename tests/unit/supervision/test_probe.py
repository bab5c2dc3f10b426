"""The readiness probe's FCGI_GET_VALUES record (the probe itself runs against real workers in
tests/integration: Corral's worker, php-cgi, and plackup -s FCGI in test_ruby_perl.py)."""

from __future__ import annotations

from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import RecordType
from corral.supervision import probe


def test_get_values_asks_for_the_limits_and_is_always_padded() -> None:
    data = probe._GET_VALUES
    header = records.unpack_header(data)
    assert (header.type, header.request_id) == (RecordType.GET_VALUES, 0)
    # FCGI.pm never answers a management record without padding.
    assert 1 <= header.padding_length <= 8
    assert len(data) == 8 + header.content_length + header.padding_length
    content = data[8 : 8 + header.content_length]
    assert [name for name, _ in records.decode_pairs(content)] == [
        b"FCGI_MAX_CONNS",
        b"FCGI_MAX_REQS",
        b"FCGI_MPXS_CONNS",
        b"CORRAL_PIPELINE",
    ]
    assert data.endswith(bytes(header.padding_length))


def test_the_answers_become_typed_traits() -> None:
    """The probe reads FastCGI's names so the pool does not: Corral's worker (threads, and
    CORRAL_PIPELINE), an ASGI worker's many connections, and a responder that says nothing."""
    traits = probe.traits_from_values(
        {b"FCGI_MAX_CONNS": b"4", b"FCGI_MPXS_CONNS": b"0", b"CORRAL_PIPELINE": b"1"}
    )
    assert traits == probe.WorkerTraits(max_conns=4, pipelining=True)
    assert probe.traits_from_values({b"FCGI_MAX_CONNS": b"100"}).max_conns == 100
    assert probe.traits_from_values({}) == probe.NO_TRAITS == probe.WorkerTraits(None, False)
    # A value that is not a count is no count; only "1" turns pipelining on.
    odd = probe.traits_from_values({b"FCGI_MAX_CONNS": b"-3", b"CORRAL_PIPELINE": b"yes"})
    assert odd == probe.NO_TRAITS
