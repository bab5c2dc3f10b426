"""Asyncio clients for backend processes: FastCGI (``fastcgi``) and HTTP/1.1 (``http``), over a
Unix socket or TCP. Both implement ``PooledUpstream`` (the pool keeps and leases them; the front
drives each request through the ``Upstream`` part) and report to a ``ResponseSink``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from corral.protocol.fastcgi.records import encode_pairs


class BackendError(Exception):
    """A backend failed one request: the front answers it with a 502 (or aborts the response)."""


class BackendClosed(BackendError):
    """The backend closed its connection (or died) before it ended the request."""


class BackendNotReached(BackendClosed):
    """The backend closed the connection before sending anything back for the request (a server
    closing a kept-alive connection it found idle, just as the request was sent on it), or the
    request was not written at all (``written`` False): the application most likely never saw
    it. The front may send it again on another connection when it has no body and is idempotent
    (any request, when it was not written), as nginx does."""

    def __init__(self, message: str, *, written: bool = True) -> None:
        super().__init__(message)
        self.written = written


class BackendNotStarted(BackendError):
    """The request never reached the application: it was queued on a connection behind
    others (pipelining), and the connection closed first, or the request was withdrawn from
    behind a slow one (``withdrawn``). The front may send it elsewhere."""

    def __init__(self, message: str, *, withdrawn: bool = False) -> None:
        super().__init__(message)
        self.withdrawn = withdrawn


class BackendProtocolError(BackendError):
    """The backend sent bytes that break the protocol (bad records, a bad CGI head...)."""


# What follows a request head: the ``body`` argument of a backend connection's ``begin()``.
# Truthy values mean "the request stream stays open until ``end_body()``".

#: No body: the request is complete once begun.
BODY_NONE = 0
#: A body of known length (``Content-Length``) follows through ``send_body()``.
BODY_LENGTH = 1
#: A body of unknown length (the client sent it chunked) follows through ``send_body()``.
BODY_CHUNKED = 2
#: An ``Upgrade`` request: no body, but if the backend answers 101 the stream carries the new
#: protocol's bytes both ways (client bytes through ``send_body()``, backend bytes as
#: ``backend_body``) until ``end_body()`` or the backend ends it.
BODY_TUNNEL = 3


#: How CGI variables are encoded for ``Upstream.begin``'s ``static`` argument: the front encodes
#: the variables fixed per application and per client connection once, with this, and never
#: needs to know which wire format a backend speaks.
encode_params: Final[Callable[[Iterable[tuple[bytes, bytes]]], bytes]] = encode_pairs


class ResponseSink(Protocol):
    """What the front implements to receive one response."""

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The CGI response head (``Status:`` turned into status and reason; other fields)."""

    def backend_body(self, data: bytes | memoryview) -> None:
        """A piece of the response body (never empty; a view of the received bytes)."""

    def backend_end(self, reusable: bool) -> None:
        """END_REQUEST arrived; ``reusable``: the connection may serve another request."""

    def backend_error(self, exc: BackendError) -> None:
        """The request failed (protocol error, EOF, connection lost). Connection unusable."""

    def backend_flush(self) -> None:
        """The events of one read have been delivered (a good time to write them out)."""

    def backend_pause_writing(self) -> None:
        """The backend's send buffer is full: stop reading the request body for a while."""

    def backend_resume_writing(self) -> None:
        """The backend drained its send buffer."""

    def backend_started(self) -> None:
        """A request queued behind others on its connection is now the one in progress."""


class Upstream(Protocol):
    """One request's way to a backend, as the front drives it (a backend connection, a request
    queued on one, the static-file responder).

    ``begin(static, params, sink, body)`` starts a request: for FastCGI ``static`` is CGI
    variables already encoded (``encode_params``) and ``params`` the per-request CGI
    variables; for HTTP ``static`` is the complete request head the front built and
    ``params`` is empty. ``body`` is a ``BODY_*``
    value. Then ``send_body(data)`` any number of times and ``end_body()``; the response comes
    back through ``sink``. ``abort()`` gives up on the request (the connection is dropped).
    """

    def begin(
        self,
        static: bytes,
        params: list[tuple[bytes, bytes]],
        sink: ResponseSink,
        has_body: int,
    ) -> None: ...

    def send_body(self, data: bytes) -> None: ...

    def end_body(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...

    @property
    def is_closed(self) -> bool: ...


class PooledUpstream(Upstream, Protocol):
    """A kept-alive backend connection as a pool holds it: an ``Upstream`` for the request it
    serves, and what the pool asks of it between requests. Capabilities are declared here,
    not discovered: a connection that does not take queued requests answers ``follower()``
    with None and has nothing to withdraw."""

    @property
    def closed_by_peer(self) -> bool:
        """The backend closed it (or it broke), not the front: the worker may have died."""

    @property
    def in_flight(self) -> int:
        """Requests begun on it and not yet ended, queued ones included."""

    def follower(self, depth: int, max_running: float) -> Upstream | None:
        """An ``Upstream`` for one more request queued behind those in flight (pipelining),
        or None when it does not take one now (or ever)."""

    def withdraw_stuck(self, limit: float) -> int:
        """Send back the queued requests behind one that has run past ``limit`` seconds;
        returns how many."""

    def when_drained(self, callback: Callable[[PooledUpstream], None]) -> None:
        """Call ``callback(self)`` when it has carried only answers nobody waited for after
        its last lease was given back (it is free again)."""


class SinkedProtocol(asyncio.BaseProtocol):
    """What both clients do the same way with the request they serve: pass the backend socket's
    write pressure on to the sink, stop and resume reading for the front, fail the request when
    the connection is lost, and drop the connection when the front gives up on it."""

    name: str
    _closed: bool
    _transport: asyncio.Transport | None
    _sink: ResponseSink | None
    _paused_by_peer: bool

    def data_received(self, data: bytes) -> None:
        """Bytes from the backend (each client parses its protocol)."""
        raise NotImplementedError

    def eof_received(self) -> bool | None:
        return None

    def _fail(self, exc: BackendError) -> None:
        """End the request in flight with an error: the connection is dropped, the sink told."""
        sink = self._sink
        self._sink = None
        self.close()
        if sink is not None:
            sink.backend_error(exc)

    #: The backend closed the connection (or it broke), rather than the front: the pool asks
    #: then whether the worker has died (``Pool.release``).
    closed_by_peer = False
    #: The socket's descriptor (-1: unknown), and a duplicate of it held while a request body
    #: is being sent (``_hold_answer``).
    _fd = -1
    _held_fd = -1

    def _hold_answer(self) -> None:
        """A request body is about to be sent. A responder may answer and close before it has
        read all of it (a PHP script that ignores its input): the next body write then fails
        (EPIPE), and the transport closes the socket with the answer unread in it. A duplicate
        of the descriptor keeps the socket open for ``connection_lost`` to read that answer.
        (Two system calls per request with a body; none for the others.)"""
        if self._fd >= 0 and self._held_fd < 0:
            try:
                self._held_fd = os.dup(self._fd)
            except OSError:
                self._held_fd = -1

    def _release_answer(self) -> None:
        """The request's answer is in (or lost): close the duplicate descriptor."""
        fd = self._held_fd
        if fd >= 0:
            self._held_fd = -1
            os.close(fd)

    def _read_answer(self, fd: int) -> None:
        """The transport is gone after a failed write: read what the backend sent before it
        closed (its complete answer, when it answered early) straight from the socket."""
        while self._sink is not None:
            try:
                data = os.read(fd, 262144)
            except OSError:  # (EAGAIN: nothing more came; or the reset itself)
                return
            if not data:
                self.eof_received()
                return
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self.closed_by_peer = True
        self._closed = True
        self._transport = None  # no transport <-> protocol cycle left for the GC to find
        fd = self._held_fd
        if fd >= 0:
            self._held_fd = -1
            try:
                if self._sink is not None and isinstance(
                    exc, BrokenPipeError | ConnectionResetError
                ):
                    self._read_answer(fd)
            finally:
                os.close(fd)
        if self._sink is not None:
            reason = f": {exc}" if exc else ""
            self._fail(self._closed_error(f"lost the connection to {self.name}{reason}"))

    def _nothing_came(self) -> bool:
        """No byte of the answer to the request in flight has come (each client knows)."""
        return False

    def _closed_error(self, message: str) -> BackendClosed:
        """The error of a request whose connection the backend closed: ``BackendNotReached``
        when nothing of its answer came."""
        if self._nothing_came():
            return BackendNotReached(message)
        return BackendClosed(message)

    def pause_writing(self) -> None:
        self._paused_by_peer = True
        if self._sink is not None:
            self._sink.backend_pause_writing()

    def resume_writing(self) -> None:
        self._paused_by_peer = False
        if self._sink is not None:
            self._sink.backend_resume_writing()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()

    def abort(self) -> None:
        """Give up on the request in flight (the client went away): drop the connection."""
        self._sink = None
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._held_fd >= 0:
            self._release_answer()
        if self._transport is not None:
            self._transport.close()

    # -- what a connection that takes no queued requests answers the pool (PooledUpstream) ---

    @property
    def in_flight(self) -> int:
        return int(self._sink is not None)

    def follower(self, depth: int, max_running: float) -> Upstream | None:
        return None

    def withdraw_stuck(self, limit: float) -> int:
        return 0

    def when_drained(self, callback: Callable[[PooledUpstream], None]) -> None:
        return None
