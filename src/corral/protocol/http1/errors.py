"""Errors raised by the HTTP/1.1 request parser."""

from __future__ import annotations


class HTTPProtocolError(Exception):
    """The client sent bytes we refuse: answer ``status_hint`` and close the connection.

    ``status_hint`` is always a 4xx or 5xx status (400, 413, 414, 431, 501, 505; 500 only
    if the parser itself has a bug, which the tests treat as a failure);
    ``reason`` is a short, log-friendly explanation (never contains raw client bytes).
    After this error the parser is dead: every later ``next_event()`` raises it again.
    """

    def __init__(self, status_hint: int, reason: str) -> None:
        super().__init__(status_hint, reason)
        self.status_hint = status_hint
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status_hint} {self.reason}"


class LocalProtocolError(Exception):
    """The caller misused the parser (e.g. ``start_next()`` while not paused)."""
