"""The front's test harness itself (tests/harness.py): a `corral serve` it starts answers."""

from __future__ import annotations

from tests.harness import CorralServer, corral, request

__all__ = ["corral"]


def test_harness_serves_hello(corral: CorralServer) -> None:
    response = request(corral.port, path="/hello")
    assert response.status == 200
    assert response.body == b"Hello, world!\n"
    assert response.header("content-length") == "14"
    assert response.header("date")
