"""The parser's batch calls for the front's hot path: ``next_event_and_end`` (a whole request
without a body in one call) and what ``start_next`` returns (whether to ask again)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.http1 import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    EndOfMessage,
    HTTPProtocolError,
    Limits,
    Request,
    RequestParser,
)

GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
#: Requests with and without bodies, chunked with and without chunks or trailers, a
#: Content-Length of 0, an Upgrade, HTTP/1.0 with and without keep-alive.
PIECES = [
    GET,
    b"GET /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nxy\r\n0\r\nT: 1\r\n\r\n",
    b"GET /f HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /g HTTP/1.0\r\n\r\n",
    b"GET /h HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw",
    b"GET /i HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /j HTTP/1.1\r\n\r\n",  # (no Host: 400)
    b"\r\n",
]


def _reference(parser: RequestParser) -> list[Any]:
    """Drain with ``next_event`` alone (resuming after each PAUSED)."""
    out: list[Any] = []
    while True:
        try:
            event = parser.next_event()
        except HTTPProtocolError as exc:
            return [*out, exc.status_hint]
        if event is NEED_DATA:
            return out
        if event is PAUSED:
            parser.start_next()
            continue
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


def _batched(parser: RequestParser) -> list[Any]:
    """Drain as the front does: ``next_event_and_end``, and ask again after ``start_next``
    only when it says there is something to ask (checked against ``next_event``)."""
    out: list[Any] = []
    while True:
        try:
            event, ended = parser.next_event_and_end()
        except HTTPProtocolError as exc:
            return [*out, exc.status_hint]
        if ended:
            assert isinstance(event, Request)
            out += [event, EndOfMessage()]
            event = PAUSED
        if event is NEED_DATA:
            return out
        if event is PAUSED:
            more = parser.start_next()
            if not more:
                assert parser.next_event() is NEED_DATA
                return out
            continue
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    st.booleans(),
)
def test_the_batch_calls_give_the_events_next_event_gives(
    pieces: list[bytes], cuts: list[int], eof: bool
) -> None:
    """Whatever the requests and however their bytes arrive, draining with the batch calls
    gives the same events, in the same order, as ``next_event`` one at a time."""
    data = b"".join(pieces)
    bounds = [0, *sorted({c for c in cuts if c < len(data)}), len(data)]
    one, batch = RequestParser(Limits()), RequestParser(Limits())
    expected: list[Any] = []
    got: list[Any] = []
    for start, end in itertools.pairwise(bounds):
        for parser in (one, batch):
            parser.receive_data(data[start:end])
        expected += _reference(one)
        got += _batched(batch)
    if eof:
        for parser in (one, batch):
            parser.receive_data(b"")
        expected += _reference(one)
        got += _batched(batch)
    assert got == expected


def test_a_whole_request_without_a_body_comes_with_its_end() -> None:
    parser = RequestParser()
    parser.receive_data(GET + b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    request, ended = parser.next_event_and_end()
    assert isinstance(request, Request) and request.target == b"/a" and ended
    assert parser.next_event_and_end() == (PAUSED, False)  # paused, as after EndOfMessage
    assert parser.start_next()  # the pipelined POST is there to be read
    request, ended = parser.next_event_and_end()
    assert isinstance(request, Request) and request.method == b"POST" and not ended
    assert parser.next_event_and_end()[0].data == b"abc"  # type: ignore[union-attr]
    assert parser.next_event_and_end() == (EndOfMessage(), False)
    assert not parser.start_next()  # nothing more came
    assert parser.next_event_and_end() == (NEED_DATA, False)
