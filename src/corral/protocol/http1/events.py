"""Events produced by :class:`corral.protocol.http1.parser.RequestParser`."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Sentinel(enum.Enum):
    """Non-event answers of ``next_event()``."""

    #: Feed more bytes (``receive_data``) before asking again.
    NEED_DATA = "NEED_DATA"
    #: A request ended (``EndOfMessage`` was returned); pipelined bytes are held until
    #: ``start_next()``.
    PAUSED = "PAUSED"


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED


@dataclass(slots=True)
class Request:
    """A request head. ``headers`` keep their raw names and order; use ``get``/``get_all``.

    ``path`` and ``query`` are split from ``target`` (fragment dropped); for the
    absolute-form ``path`` is the path part after the authority (``/`` if empty), for
    CONNECT both are empty, for ``OPTIONS *`` the path is ``*``.

    ``host`` is where the request is going: the authority of an absolute-form target
    (RFC 9112 3.2.2: it overrides the Host header) or of a CONNECT target, else the (single,
    syntax-checked) Host header, else ``None`` (HTTP/1.0 only: an HTTP/1.1 request without
    Host is refused with 400, RFC 9112 3.2).
    """

    method: bytes
    target: bytes
    path: bytes
    query: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    expect_continue: bool
    content_length: int | None
    chunked: bool
    upgrade: bytes | None
    host: bytes | None = None

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """First value of the header ``name`` (case-insensitive; pass it lower-case)."""
        for key, value in self.headers:
            if len(key) == len(name) and key.lower() == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of the header ``name`` in order (pass ``name`` lower-case)."""
        return [v for k, v in self.headers if len(k) == len(name) and k.lower() == name]


@dataclass(slots=True)
class Body:
    """A piece of the request body (de-chunked). Never empty."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The request (head and body) is complete. ``trailers`` as sent, for chunked bodies.

    Immutable: the parser hands out one shared instance when there are no trailers.
    """

    trailers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class ConnectionClosed:
    """No more requests will come on this connection.

    Either the client closed it (EOF between requests) or the last request did not allow
    keep-alive (HTTP/1.0 without ``keep-alive``, ``Connection: close``).
    """
