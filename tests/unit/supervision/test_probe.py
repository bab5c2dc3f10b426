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
