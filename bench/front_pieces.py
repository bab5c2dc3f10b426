"""The pieces of the front's Python per kept-alive request, one at a time, for
``bench/instructions.py`` (callgrind's instruction counts, which load does not move).

    .venv/bin/python bench/instructions.py --small 1000 --large 11000 \\
        bench/front_pieces.py --piece parse

Each piece repeats, ``--requests`` times, what the front does for one wrk ``GET /hello``
(``tests/unit/front/microbench_front.py`` runs them all together, through an in-process
connection): ``parse`` (the request head through ``RequestParser``: feed, its events, the
next request, as the front asks for them), ``header_params`` (the HTTP_* variables),
``encode_pairs`` (the per-request FastCGI pairs, as ``backends.fastcgi`` encodes them),
``cgi`` (the worker's CGI head: a new parser each time before session 8, one parser reset
since), ``filter`` (that head's fields for the client), ``lease`` (``Pool`` ``lease_or_wait``
and ``release`` on a ready pool of one worker; ``--pipelining``: a worker that takes
pipelined requests, as Corral's own does), ``connection`` (an ``HTTPConnection`` made,
``connection_made`` on a transport without addresses, ``connection_lost``: what a connection
costs beside its requests), ``nothing`` (the loop's own cost, to subtract). Figures:
bench/README.md, "Performance II (session 7): the front's Python per request", "(session 8):
the front's kept-alive request" and "(session 8): the cost of a connection".
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from corral.backends.fastcgi import FastCGIClientConnection
from corral.front import cgienv, proxy
from corral.front.http1 import HTTPConnection
from corral.front.server import FrontServer
from corral.front.settings import FrontSettings
from corral.protocol.cgi import CGIResponseParser
from corral.protocol.fastcgi import records
from corral.protocol.http1.parser import RequestParser
from corral.supervision.launch import LaunchPlan
from corral.supervision.lifecycle import PoolState, WorkerState
from corral.supervision.pool import Pool
from corral.supervision.settings import PoolSettings
from corral.supervision.workers import Worker

REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
HEAD = b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n"
#: The per-request pairs the front sends for REQUEST, besides the HTTP_* ones.
REQUEST_PAIRS = [
    (b"REQUEST_METHOD", b"GET"),
    (b"PATH_INFO", b"/hello"),
    (b"QUERY_STRING", b""),
    (b"REQUEST_URI", b"/hello"),
    (b"SERVER_NAME", b"127.0.0.1"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
]


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class _Process:
    pid = 0
    address = "/nonexistent"


def _ready_pool(pipelining: bool) -> Pool:
    """A running ``Pool`` of one ready worker with one kept-alive connection."""
    conn = FastCGIClientConnection("bench")
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    plan = LaunchPlan(argv=("bench",), env={}, cwd=".")
    settings = PoolSettings(min_instances=1, max_instances=1)
    pool = Pool("bench", plan, settings, None)  # type: ignore[arg-type]
    worker: Any = Worker(id=1)
    worker.process = _Process()
    worker.state = WorkerState.IDLE
    worker.pipelining = pipelining
    worker.idle_conns.append(conn)
    pool._workers.workers[1] = worker
    pool._state = PoolState.RUNNING
    return pool


def pieces(pipelining: bool) -> dict[str, Callable[[], object]]:
    parser = RequestParser()

    def parse() -> object:
        parser.receive_data(REQUEST)
        request = parser.next_event()
        parser.next_event()  # EndOfMessage
        parser.next_event()  # PAUSED
        parser.start_next()
        parser.next_event()  # NEED_DATA (the front's _drain after start_next)
        return request

    def parse_batched() -> object:  # (session 8: what the front calls now)
        parser.receive_data(REQUEST)
        request, _ = parser.next_event_and_end()
        parser.start_next()  # (False: nothing more to ask)
        return request

    if hasattr(parser, "next_event_and_end"):
        parse = parse_batched

    request: Any = parse()

    def header_params() -> object:
        out: list[tuple[bytes, bytes]] = []
        cgienv.header_params(request.headers, out)
        return out

    pairs = header_params()
    assert isinstance(pairs, list)
    pairs += REQUEST_PAIRS
    head = CGIResponseParser().feed(HEAD)
    assert head is not None
    loop = asyncio.get_running_loop()  # (a FastCGI connection's write batch needs it)
    pool = _ready_pool(pipelining)
    pool._loop = loop

    def lease() -> object:
        leased = pool.lease_or_wait(lambda _: None)
        assert leased is not None and not isinstance(leased, asyncio.Future)
        pool.release(leased, True)
        return leased

    cgi_parser = CGIResponseParser()

    def cgi() -> object:
        if hasattr(cgi_parser, "feed_parts"):  # (session 8: one parser per connection)
            cgi_parser.reset()
            return cgi_parser.feed_parts(HEAD)
        return CGIResponseParser().feed(HEAD)

    server = FrontServer(None, FrontSettings(), loop=loop)  # type: ignore[arg-type]
    client = _Transport()

    def connection() -> object:
        conn = HTTPConnection(server)
        conn.connection_made(client)  # type: ignore[arg-type]
        conn.connection_lost(None)
        return conn

    try:
        from corral.backends.pairmemo import encode_pairs_remembered as encode
    except ImportError:  # (trees before session 8: in records, or not at all)
        encode = getattr(records, "encode_pairs_remembered", records.encode_pairs)
    return {
        "nothing": lambda: None,
        "parse": parse,
        "header_params": header_params,
        "encode_pairs": lambda: encode(pairs),
        "cgi": cgi,
        "filter": lambda: proxy.filter_headers(head.headers),
        "lease": lease,
        "connection": connection,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--piece", required=True)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--pipelining", action="store_true")
    args = parser.parse_args()

    async def repeat() -> None:
        run = pieces(args.pipelining)[args.piece]
        for _ in range(args.requests):
            run()

    asyncio.run(repeat())


if __name__ == "__main__":
    main()
