"""Micro-benchmark of the FastCGI codec and the CGI head parser (not a test; not collected).

Run: .venv/bin/python tests/unit/protocol/fastcgi/microbench_fastcgi.py
Prints the best of 5 repeats per case, in microseconds per call.
"""

from __future__ import annotations

import timeit

from corral.protocol.cgi import CGIResponseParser
from corral.protocol.fastcgi import CLIENT, NEED_DATA, SERVER, FastCGIConnection, records

PARAMS = [
    (b"REQUEST_METHOD", b"GET"),
    (b"SCRIPT_NAME", b""),
    (b"PATH_INFO", b"/articles/2024/hello-world"),
    (b"QUERY_STRING", b"page=2&sort=desc"),
    (b"REQUEST_URI", b"/articles/2024/hello-world?page=2&sort=desc"),
    (b"SERVER_NAME", b"example.com"),
    (b"SERVER_PORT", b"80"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"54321"),
    (b"CONTENT_TYPE", b""),
    (b"HTTP_HOST", b"example.com"),
    (
        b"HTTP_USER_AGENT",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/120.0 Safari/537.36",
    ),
    (b"HTTP_ACCEPT", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"HTTP_ACCEPT_LANGUAGE", b"en-US,en;q=0.5"),
    (b"HTTP_ACCEPT_ENCODING", b"gzip, deflate, br"),
    (b"HTTP_CONNECTION", b"keep-alive"),
    (b"HTTP_COOKIE", b"sessionid=" + b"a" * 150),
    (b"HTTP_UPGRADE_INSECURE_REQUESTS", b"1"),
    (b"HTTP_CACHE_CONTROL", b"max-age=0"),
]
BODY = records.encode_pairs(PARAMS)
REQ = records.encode_request(1, PARAMS, keep_conn=True, stdin=b"")
HEAD = (
    b"Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 2048\r\n"
    b"X-Frame-Options: DENY\r\nVary: Cookie\r\nSet-Cookie: a=b; Path=/; HttpOnly\r\n\r\n"
)
SMALL = HEAD + b"x" * 2048
BIG = b"y" * (1 << 20)
RESP_SMALL = records.encode_response(1, SMALL)
RESP_BIG = records.encode_response(1, BIG)


def client_send():
    c = FastCGIConnection(CLIENT)
    return c.send_request(1, PARAMS, keep_conn=True, stdin=b"")


def server_decode():
    s = FastCGIConnection(SERVER)
    s.receive_data(REQ)
    while s.next_event() is not NEED_DATA:
        pass


def server_full():
    s = FastCGIConnection(SERVER)
    s.receive_data(REQ)
    while s.next_event() is not NEED_DATA:
        pass
    return s.send_response(1, SMALL)


def client_decode(resp, chunk):
    c = FastCGIConnection(CLIENT)
    c.send_request(1, PARAMS, keep_conn=True, stdin=b"")
    for i in range(0, len(resp), chunk):
        c.receive_data(resp[i : i + chunk])
        while c.next_event() is not NEED_DATA:
            pass


def cgi():
    return CGIResponseParser().feed(SMALL)


def run(name, fn, number):
    best = min(timeit.repeat(fn, number=number, repeat=5)) / number
    print(f"{name:60s} {best * 1e6:9.2f} µs")


def main() -> None:
    run("records.decode_pairs(20 headers) [decode only]", lambda: records.decode_pairs(BODY), 20000)
    run("records.encode_pairs(20 headers)", lambda: records.encode_pairs(PARAMS), 20000)
    run(
        "records.encode_pairs + decode_pairs(20 headers)",
        lambda: records.decode_pairs(records.encode_pairs(PARAMS)),
        20000,
    )
    run(
        "records.encode_request(20 headers, stdin=b'') [pure]",
        lambda: records.encode_request(1, PARAMS, keep_conn=True, stdin=b""),
        20000,
    )
    run("client: new conn + send_request(20 headers, stdin=b'')", client_send, 20000)
    run("server: new conn + decode BEGIN+PARAMS(20)+STDIN end", server_decode, 20000)
    run("server: decode request + send_response(2 KB)", server_full, 20000)
    run("records.encode_response(2 KB body)", lambda: records.encode_response(1, SMALL), 20000)
    run("records.encode_response(1 MiB body)", lambda: records.encode_response(1, BIG), 200)
    run(
        "client: decode 2 KB response (one chunk)",
        lambda: client_decode(RESP_SMALL, 1 << 30),
        20000,
    )
    run("client: decode 1 MiB response (one chunk)", lambda: client_decode(RESP_BIG, 1 << 30), 200)
    run(
        "client: decode 1 MiB response (64 KiB socket reads)",
        lambda: client_decode(RESP_BIG, 65536),
        200,
    )
    run("CGIResponseParser().feed(6-header head + 2 KB body)", cgi, 20000)


if __name__ == "__main__":
    main()
