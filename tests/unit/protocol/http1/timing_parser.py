"""Micro-timing of the request parser's hot path (not a test; run by hand).

    .venv/bin/python tests/unit/protocol/http1/timing_parser.py

Prints µs per request for a typical browser GET with 10 header fields, fed whole, for
httptools alone (callbacks that only append), for Corral's RequestParser (parse + drain
events, one parser per connection, reused across keep-alive requests), and for a fresh
parser per request; plus the response head writer.
"""

from __future__ import annotations

import timeit

import httptools

from corral.protocol.http1 import (
    PAUSED,
    DateCache,
    EndOfMessage,
    Limits,
    RequestParser,
    response_head,
)

GET = (
    b"GET /static/app.js?v=1.2.3 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://www.example.com/index.html\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: sessionid=0123456789abcdef0123456789abcdef; csrftoken=abcdefabcdefabcdef\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"\r\n"
)
N = 200_000


class _Bare:
    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[object] = []

    def on_url(self, url: bytes) -> None:
        self.events.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.events.append((name, value))

    def on_headers_complete(self) -> None:
        self.events.append(None)

    def on_message_complete(self) -> None:
        self.events.append(None)


def bare_httptools() -> float:
    proto = _Bare()
    parser = httptools.HttpRequestParser(proto)
    feed = parser.feed_data
    events = proto.events

    def one() -> None:
        feed(GET)
        events.clear()

    return min(timeit.repeat(one, number=N, repeat=5)) / N * 1e6


def corral_reused() -> float:
    parser = RequestParser(Limits())
    receive, next_event, start_next = parser.receive_data, parser.next_event, parser.start_next

    def one() -> None:
        receive(GET)
        next_event()  # Request
        next_event()  # EndOfMessage
        start_next()

    one()
    return min(timeit.repeat(one, number=N, repeat=5)) / N * 1e6


def corral_fresh() -> float:
    limits = Limits()

    def one() -> None:
        parser = RequestParser(limits)
        parser.receive_data(GET)
        parser.next_event()
        parser.next_event()

    return min(timeit.repeat(one, number=N // 4, repeat=5)) / (N // 4) * 1e6


def writer() -> float:
    dates = DateCache()

    def one() -> None:
        response_head(
            200,
            None,
            [
                (b"Date", dates.get(1_700_000_000.0)),
                (b"Server", b"Corral"),
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"Content-Length", b"1234"),
            ],
        )

    return min(timeit.repeat(one, number=N, repeat=5)) / N * 1e6


def main() -> None:
    parser = RequestParser()
    parser.receive_data(GET)
    request = parser.next_event()
    assert isinstance(parser.next_event(), EndOfMessage) and parser.next_event() is PAUSED
    print(f"request: {len(GET)} bytes, {len(request.headers)} header fields")  # type: ignore[union-attr]
    print(f"httptools alone (append-only callbacks): {bare_httptools():6.2f} µs/request")
    print(f"RequestParser, reused (keep-alive):      {corral_reused():6.2f} µs/request")
    print(f"RequestParser, new per request:          {corral_fresh():6.2f} µs/request")
    print(f"response_head, 4 fields + cached Date:   {writer():6.2f} µs/response")


if __name__ == "__main__":
    main()
