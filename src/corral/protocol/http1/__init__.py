"""Sans-IO HTTP/1.1: the request parser (over httptools) and response writer helpers.

See ``docs/architecture.md`` ("Internal contracts") and the docstrings of ``parser``.
"""

from __future__ import annotations

from .errors import HTTPProtocolError, LocalProtocolError
from .events import (
    NEED_DATA,
    PAUSED,
    Body,
    ConnectionClosed,
    EndOfMessage,
    Request,
    Sentinel,
)
from .parser import Event, Limits, RequestParser
from .writer import LAST_CHUNK, DateCache, chunk, format_date, response_head

__all__ = [
    "LAST_CHUNK",
    "NEED_DATA",
    "PAUSED",
    "Body",
    "ConnectionClosed",
    "DateCache",
    "EndOfMessage",
    "Event",
    "HTTPProtocolError",
    "Limits",
    "LocalProtocolError",
    "Request",
    "RequestParser",
    "Sentinel",
    "chunk",
    "format_date",
    "response_head",
]
