"""Asyncio clients for backend processes (FastCGI over a Unix socket or TCP)."""

from __future__ import annotations


class BackendError(Exception):
    """A backend failed one request: the front answers it with a 502 (or aborts the response)."""


class BackendClosed(BackendError):
    """The backend closed its connection (or died) before it ended the request."""


class BackendProtocolError(BackendError):
    """The backend sent bytes that break the protocol (bad records, a bad CGI head...)."""
