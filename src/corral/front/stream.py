"""What an exchange needs of the client side: ``ClientStream``.

An ``Exchange`` (``front/exchange.py``) is one request's life, whatever the client's protocol:
route, lease, begin, relay, release. It reaches the client only through this protocol. The
HTTP/1.1 connection (``front/http1.py``) implements it today, one exchange at a time; an HTTP/2
stream is meant to implement it too. So nothing here says how a response is framed: chunking,
``Connection: close``, close-delimited bodies, ``100 Continue`` and ``HEAD`` are the protocol's
business, behind ``ResponseStream`` (``head``/``body``/``flush``/``end``) and ``want_body``.

Deadlines: one per stream (or connection), of one ``Deadline`` kind, acted upon by the server's
sweep. The exchange sets the kinds of its own phases (waiting for a worker, reading the body,
waiting for the backend, tunnelling); the protocol keeps its own (head, idle, lingering).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Final, Protocol

from corral.backends import BackendError, Upstream

if TYPE_CHECKING:
    from corral.front.context import FrontContext

#: Lingering close (HTTP/1.1 and HTTP/2): how long, and how many bytes at most, to read and drop
#: after the last bytes of a connection that ends while the client may still be sending, so
#: that the client reads them instead of a reset (like nginx's lingering_close).
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 16 * 1024 * 1024


class Deadline(IntEnum):
    """What a connection's one deadline is for, what its expiry does, and what the bytes and
    the end of input (EOF) that the client sends meanwhile are.

    ==========  ===============================================  ==============  ==============
    kind        the connection is                                 on expiry       client bytes,
                                                                                  EOF
    ==========  ===============================================  ==============  ==============
    NONE        closed (or between states)                        nothing         -
    HEAD        waiting for (the rest of) a request head          408; silent     the request
                                                                  close when no   (its head)
                                                                  byte came
    IDLE        kept alive between requests                       silent close    the next
                                                                                  request
    BODY        reading a request body (gaps, and                 408             its body
                ``min_body_rate``)
    BACKEND     waiting on the backend (or on a client that       504; an abort   pipelined
                does not read)                                    once the        requests; EOF
                                                                  response has    waits for the
                                                                  started         response
    ACQUIRE     queued for a worker (``LeaseSource.               503             as BACKEND
                lease_or_wait``)
    LINGER      answered and closing: reading what the client     close           dropped; EOF
                still sends, then closing                                         closes
    TUNNEL      switched protocols (101): a byte tunnel           the tunnel      to the
                                                                  ends            backend
    ==========  ===============================================  ==============  ==============

    The values are ordered so that the HTTP/1.1 connection tells with one comparison whether
    what the client sends is still HTTP (``kind < LINGER``: a request, its body, or pipelined
    requests, whatever the exchange is waiting for) or not (lingering, tunnelling).
    """

    NONE = 0
    HEAD = 1
    IDLE = 2
    BODY = 3
    BACKEND = 4
    ACQUIRE = 5
    LINGER = 6
    TUNNEL = 7


#: Why the client's request stream is not being read (a bit mask; the protocol adds its own).
PAUSE_LEASE: Final = 1  # no backend yet: what body came waits, the rest is not read
PAUSE_BACKEND: Final = 2  # the backend's send buffer is full


class TunnelPeer(Protocol):
    """The backend end of a tunnel, as the client side drives it after ``switch_protocols``."""

    def from_client(self, data: bytes) -> None:
        """Bytes from the client, for the backend."""

    def client_done(self) -> bool:
        """The client has nothing more to send (a half-close), passed on to the backend; False
        when the tunnel has no backend left (then the client side closes)."""

    def end(self, exc: BackendError | None) -> None:
        """End the tunnel (idle too long, the server stopping, or the backend failing)."""


class ResponseStream(Protocol):
    """Writing one response to the client, framed by the protocol (HTTP/1.1: Content-Length,
    chunked or close-delimited, HEAD; HTTP/2 would make HEADERS and DATA frames of it)."""

    @property
    def status(self) -> int:
        """The status of the response under way (0: none yet)."""

    @property
    def head_sent(self) -> bool:
        """A response head has left: an error can no longer be answered, only cut."""

    def head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """A backend's response head. Raises ``proxy.BadBackendHead`` when it cannot be
        relayed. It may be held until ``flush`` (or the end)."""

    def body(self, data: bytes | memoryview) -> None:
        """A piece of the response body (gathered until ``flush``)."""

    def flush(self) -> None:
        """Write what the last backend read produced."""

    def spill(self, backend: Upstream) -> bool:
        """The client reads slower than ``backend`` writes: keep taking the response into a
        temporary file (``backend`` is paused once the spill is full). False when this
        response is not spilled (no spill configured, a head not sent yet): pause the
        backend instead."""

    def end(self) -> int:
        """The backend's response is complete: write its end. Returns how many bytes it fell
        short of its declared length (then the connection is not kept)."""

    def stream_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        """A response the front makes itself, of unknown length, written piece by piece
        (``stream_piece``); the connection does not outlive it."""

    async def stream_piece(self, data: bytes) -> None:
        """One piece of it; returns once the client may take more."""

    def stream_end(self) -> None:
        """The end of that response."""

    def tunnel_write(self, data: bytes | memoryview) -> None:
        """Tunnelled bytes from the backend, for the client (after ``switch_protocols``)."""


class ClientStream(Protocol):
    """The client side of one exchange: the request's facts beyond the ``Request`` itself,
    deadlines, reading the request body, error pages, the end of the exchange; and its
    ``response``."""

    # -- facts -----------------------------------------------------------------------------

    @property
    def remote_host(self) -> str:
        """The client's address."""

    @property
    def remote_port(self) -> int:
        """The client's port (0 on a Unix socket)."""

    @property
    def server_port(self) -> int:
        """The local port the request came in on (routing, SERVER_PORT)."""

    @property
    def loopback(self) -> bool:
        """The client connects from a loopback address (may see error details)."""

    @property
    def trusted(self) -> bool:
        """The client connects from a trusted proxy (``trusted_proxies``, when it connected):
        its requests' forwarding fields are believed."""

    @property
    def tls(self) -> bool:
        """The client connects over TLS (an https binding): the request's scheme is https."""

    @property
    def conn_params(self) -> bytes:
        """The CGI variables fixed for this client connection, already encoded."""

    @property
    def closed(self) -> bool:
        """The client is gone (or the connection is being closed)."""

    @property
    def writing_paused(self) -> bool:
        """The client's send buffer is above its high-water mark."""

    @property
    def body_complete(self) -> bool:
        """The whole request body has arrived (or there is none)."""

    @property
    def response(self) -> ResponseStream:
        """Where the response goes (an object of its own, or the stream itself)."""

    # -- deadlines and reading -------------------------------------------------------------

    def set_deadline(self, kind: Deadline, seconds: float) -> None:
        """From now, ``kind`` expires in ``seconds``."""

    def extend_deadline(self, kind: Deadline, seconds: float) -> None:
        """When the current deadline is of ``kind``, it expires ``seconds`` from now."""

    def read_body(self) -> None:
        """The body is read from now: a ``Deadline.BODY`` deadline that expires after
        ``body_timeout`` without a byte, or when the body falls below ``min_body_rate``
        (averaged from now, after ``body_rate_grace``)."""

    def pause_reading(self, reason: int) -> None:
        """Stop reading the request (body) for ``reason`` (``PAUSE_*``)."""

    def resume_reading(self, reason: int) -> None:
        """``reason`` is over: read again when no other holds it."""

    def want_body(self) -> None:
        """The backend is ready for the body and none came yet (HTTP/1.1: ``100 Continue``)."""

    # -- answers and the end ---------------------------------------------------------------

    def reject(self, status: int, reason: str) -> None:
        """The request is malformed (``reason``, for the log): answer ``status`` and close."""

    def respond_error(
        self,
        status: int,
        *,
        retry_after: bool = False,
        retry_seconds: float | None = None,
        message: str | None = None,
        details: str | None = None,
        refresh: int | None = None,
        reference: str | None = None,
    ) -> None:
        """Answer with an error page and end the exchange (its backend is dropped); when a head
        has already left, cut the response instead. ``reference``: an id the server's log has
        with this error, shown on the page."""

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], tunnel: TunnelPeer
    ) -> bytes:
        """The backend switched protocols: send the client the switch, pass its bytes to
        ``tunnel`` from now on; returns what the client sent early (before the switch)."""

    def finish(self, close: bool) -> None:
        """The exchange is over (the access log, then the next request, or ``close``)."""

    def abort(self) -> None:
        """Cut the client off (a response that cannot be completed)."""


def body_rate_deadline(
    now: float, body_timeout: float, rate: float, grace: float, received: int
) -> tuple[float, float, float]:
    """When a request body being read (``received`` bytes so far) is late: ``(base, step,
    deadline)``. With a minimum rate, ``received`` bytes are due by ``base + received * step``
    (what came so far is on time: the grace starts now); the deadline is the sooner of that
    and the next byte's ``body_timeout``. Without one, ``base`` is never."""
    gap = now + body_timeout
    if not rate:
        return float("inf"), 0.0, gap
    due = now + grace
    step = 1.0 / rate
    return due - received * step, step, due if due < gap else gap


class StreamDeadlines:
    """The deadlines of ``ClientStream`` as an HTTP/1.1 connection and an HTTP/2 stream both
    keep them: one deadline of one ``Deadline`` kind, and while a request body is read, the
    body-rate deadline (``body_rate_deadline``)."""

    __slots__ = ("_kind", "_rate_base", "_rate_step", "deadline")

    _server: FrontContext
    _kind: Deadline
    deadline: float
    _body_received: int
    _rate_base: float
    _rate_step: float

    def set_deadline(self, kind: Deadline, seconds: float) -> None:
        self._kind = kind
        self.deadline = self._server.now + seconds

    def extend_deadline(self, kind: Deadline, seconds: float) -> None:
        if self._kind == kind:
            self.deadline = self._server.now + seconds

    def read_body(self) -> None:
        server = self._server
        settings = server.settings
        self._kind = Deadline.BODY
        self._rate_base, self._rate_step, self.deadline = body_rate_deadline(
            server.now,
            server.body_timeout,
            settings.min_body_rate,
            settings.body_rate_grace,
            self._body_received,
        )
