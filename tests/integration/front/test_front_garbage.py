"""What a closed connection leaves for the cycle collector, and the host's heap frozen while it
serves (issue 14, "the cost of a connection"): the host runs in this process (so that its heap
can be looked at) with a real worker process, and the clients are loopback sockets.

Each connection used to leave a reference cycle behind (its request parser and llhttp's, whose
callbacks are the parser's own methods: ten objects), and those cycles set off the collector
about once per 70 connections, with a full collection of the whole heap every few seconds under
a stream of short connections. Now nothing of a connection is left to it; and what start-up
built is frozen out of its way (``front.heap``) from the start until the stop, and again after
a reload.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from pathlib import Path

from tests.harness import APP, make_site

from corral.app import Host, ServeOptions, loop_factory
from ports import port as leased_port

#: The front's objects of one HTTP/1.1 connection (by type name).
CONNECTION_TYPES = {
    "HTTPConnection",
    "RequestParser",
    "ConnectionParser",
    "HttpRequestParser",
    "Http1Response",
    "Exchange",
    "Request",
}


async def _get_and_close(port: int, path: str = "/hello") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await reader.read()  # (to the end: the front closes)
    writer.close()
    await writer.wait_closed()
    return answer


def test_closed_connections_leave_nothing_to_the_collector_and_the_heap_is_frozen(
    tmp_path: Path,
) -> None:
    site = make_site(tmp_path, APP)
    port = leased_port()

    async def main() -> None:
        host = Host(ServeOptions(path=site, listen=("127.0.0.1", port)))
        assert gc.get_freeze_count() == 0
        await host.start()
        try:
            # What start-up built is frozen once the host serves.
            frozen = gc.get_freeze_count()
            assert frozen > 1000
            for _ in range(20):  # (the worker ready, the tables warm)
                answer = await _get_and_close(port)
                if answer.startswith(b"HTTP/1.1 200"):
                    break
                await asyncio.sleep(0.2)
            assert answer.endswith(b"Hello, world!\n"), answer
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for _ in range(50):
                    assert (await _get_and_close(port)).endswith(b"Hello, world!\n")
                assert (await _get_and_close(port, "/nowhere")).startswith(b"HTTP/1.1 404")
                await asyncio.sleep(0.1)  # (every connection_lost has run)
                gc.collect()
                left = Counter(type(o).__name__ for o in gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
            assert not {name: n for name, n in left.items() if name in CONNECTION_TYPES}, left
            # A reload lets the old configuration go (unfrozen), then freezes again.
            assert await host.reload("test")
            assert gc.get_freeze_count() > 1000
        finally:
            await host.stop()
        assert gc.get_freeze_count() == 0

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:  # (uvloop, as `corral serve`)
            runner.run(main())
    finally:
        gc.unfreeze()  # (whatever happened: the rest of this test process is not frozen)
