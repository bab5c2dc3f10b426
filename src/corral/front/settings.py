"""The front server's limits and timeouts, with their defaults.

The composition root fills this from the configuration (issue 3's settings registry) and the CLI;
the front only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrontSettings:
    #: Seconds to receive a complete request head (from the first byte, or the connection's
    #: start); past it: 408 when some bytes came, a silent close when none did.
    header_timeout: float = 10.0
    #: Seconds a kept-alive connection may stay idle between requests (closed silently).
    keepalive_timeout: float = 5.0
    #: Seconds without any request body bytes while the body is being read: 408.
    body_timeout: float = 30.0
    #: Seconds without any sign of the backend (waiting for its head, or between its body
    #: pieces; also a client that reads nothing of the response): 504 (or the connection is
    #: aborted once the response has started).
    response_timeout: float = 60.0
    #: Seconds to wait for a free backend worker before a 503.
    acquire_timeout: float = 30.0
    #: Largest request body accepted (413 past it). Default 4 GiB.
    max_body_size: int = 4 * 1024**3
    #: Largest request line (target included) accepted: 414 past it.
    max_request_line: int = 8190
    #: Largest request head (all fields) accepted: 431 past it.
    max_header_size: int = 65536
    #: Most header fields accepted: 431 past it.
    max_header_count: int = 100
    #: Largest single header field (name + value): 431 past it.
    max_header_field: int = 8190
    #: Retry-After seconds on a 503 (queue full, application unavailable).
    retry_after: int = 5
    #: Client transport write-buffer high-water mark: the backend is paused above it.
    write_buffer_high: int = 256 * 1024
    #: Seconds given to in-flight requests at shutdown (SIGTERM/SIGINT).
    shutdown_grace: float = 30.0
    #: Show a failing application's error output (traceback) on 503 pages to loopback clients.
    show_errors_to_loopback: bool = True
    #: Seconds a tunnel (a connection switched to another protocol, e.g. WebSocket, after 101)
    #: may carry no bytes either way before both sides are closed.
    tunnel_idle_timeout: float = 300.0
    #: Client addresses or CIDR networks ("*": any) whose X-Forwarded-For/-Proto/-Host and
    #: Forwarded fields HTTP backends may see; from anyone else those fields are dropped.
    trusted_proxies: tuple[str, ...] = ()
