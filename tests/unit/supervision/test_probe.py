"""The readiness probe's FCGI_GET_VALUES record (the probe itself runs against real workers in
tests/integration: Corral's worker, php-cgi, and plackup -s FCGI in test_ruby_perl.py), and
the check that a listener is the worker's own (``probe.owned``) against real sockets."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from corral.protocol.fastcgi import records
from corral.protocol.fastcgi.constants import RecordType
from corral.supervision import probe
from corral.supervision.ports import PORTS
from ports import port


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
        b"CORRAL_ELASTIC",
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


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="/proc")
def test_owned_needs_the_workers_own_listener(tmp_path: Path) -> None:
    """``probe.owned``: the wrapped probe runs only once the worker's process tree holds the
    listening socket; another program's listener is ``ListenerTaken`` (its port remembered as
    taken), and nothing listening is a ``ProbeFailed`` after the time allowed."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    asked: list[probe.Address] = []

    async def inner(address: probe.Address, within: float) -> probe.WorkerTraits:
        asked.append(address)
        return probe.WorkerTraits(max_conns=7)

    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port()))
            sock.listen()
            address = sock.getsockname()
            assert (await probe.owned(inner, os.getpid())(address, 5)).max_conns == 7
            assert asked == [address]
            with pytest.raises(probe.ListenerTaken) as taken:
                await probe.owned(inner, stranger.pid)(address, 5)
            assert str(taken.value) == (
                f"port {address[1]} on 127.0.0.1 is held by another process "
                f"(pid {os.getpid()}, {psutil.Process().name()}), not by the app's worker"
            )
            assert PORTS.taken(address[1])
            assert asked == [address]  # the probe itself never ran
            # A worker that died before its probe succeeded: was its port taken?
            lost = await probe.lost_to_another(address, stranger.pid)
            assert lost is not None and str(lost) == str(taken.value)
            assert await probe.lost_to_another(address, os.getpid()) is None
        path = str(tmp_path / "w.sock")
        with pytest.raises(probe.ProbeFailed, match=r"within 0\.3 s"):
            await probe.owned(inner, os.getpid())(path, 0.3)
        with socket.socket(socket.AF_UNIX) as unix:
            unix.bind(path)
            unix.listen()
            held = re.escape(f"socket {path} is held by another")
            with pytest.raises(probe.ListenerTaken, match=held):
                await probe.owned(inner, stranger.pid)(path, 5)

    try:
        asyncio.run(main())
    finally:
        stranger.kill()
        stranger.wait()
