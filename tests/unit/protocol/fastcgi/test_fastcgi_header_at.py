"""``records.header_at``: the one reader of record headers, shared by the codec's
``FastCGIConnection`` and the front's client (``backends.fastcgi``), which therefore accept and
refuse the same records for the same reason."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends import BackendError, BackendProtocolError, fastcgi
from corral.protocol.fastcgi import CLIENT, FastCGIConnection, records
from corral.protocol.fastcgi.errors import RemoteProtocolError


@given(
    version=st.integers(0, 255),
    record_type=st.integers(0, 255),
    request_id=st.integers(0, 0xFFFF),
    length=st.integers(0, 0xFFFF),
    padding=st.integers(0, 255),
    offset=st.integers(0, 16),
)
def test_header_at_reads_what_pack_header_wrote_and_refuses_other_versions(
    version: int, record_type: int, request_id: int, length: int, padding: int, offset: int
) -> None:
    data = b"\0" * offset + records.HEADER.pack(version, record_type, request_id, length, padding)
    if version == 1:
        assert records.header_at(data, offset) == (record_type, request_id, length, padding)
    else:
        with pytest.raises(RemoteProtocolError, match=f"FastCGI version {version} "):
            records.header_at(data, offset)


class _Sink:
    def __init__(self) -> None:
        self.errors: list[BackendError] = []

    def backend_error(self, exc: BackendError) -> None:
        self.errors.append(exc)

    def __getattr__(self, name: str) -> object:
        return lambda *args: None


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> None:
        return None


def test_the_client_and_the_codec_refuse_a_bad_version_for_the_same_reason() -> None:
    bad = records.HEADER.pack(2, 6, 1, 0, 0)
    codec = FastCGIConnection(CLIENT)
    codec.send_request(1, [], keep_conn=True, stdin=b"")
    codec.receive_data(bad)
    with pytest.raises(RemoteProtocolError) as codec_error:
        codec.next_event()

    async def client() -> list[BackendError]:
        conn = fastcgi.FastCGIClientConnection("app")
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        sink = _Sink()
        conn.begin(b"", [], sink, 0)  # type: ignore[arg-type]
        conn.data_received(bad)
        return sink.errors

    [error] = asyncio.run(client())
    assert isinstance(error, BackendProtocolError)
    assert str(codec_error.value) in str(error)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x00" * 7, "END_REQUEST body is 7 bytes"),
        (records.END_REQUEST_BODY.pack(0, 3), "refused the request (protocol status 3)"),
    ],
)
def test_the_client_reads_a_bad_end_request_as_the_codec_does(content: bytes, why: str) -> None:
    async def client() -> list[BackendError]:
        conn = fastcgi.FastCGIClientConnection("app")
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        sink = _Sink()
        conn.begin(b"", [], sink, 0)  # type: ignore[arg-type]
        conn.data_received(records.HEADER.pack(1, 3, 1, len(content), 0) + content)
        return sink.errors

    [error] = asyncio.run(client())
    assert isinstance(error, BackendProtocolError)
    assert why in str(error)
