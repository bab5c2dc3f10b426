"""The WebSocket (any ``Upgrade``) tunnel: the response sink of an Upgrade request that the route
may tunnel.

Until the backend answers, a ``Tunnel`` passes everything through to its ``Exchange``: an
ordinary answer is relayed as usual, once the request stream (left open in case of a switch) is
ended. A ``101`` turns the client's stream into a byte tunnel (``ClientStream.switch_protocols``):
from then on the backend's bytes are written to the client as they come (``tunnel_write``), the
client's go to the backend's ``send_body`` (``from_client``), a client half-close becomes the
backend's ``end_body`` (``client_done``), and either side's end closes both (``end``).
Back-pressure is the exchange's own, both ways.
"""

from __future__ import annotations

import logging
from typing import Protocol

from corral.backends import BackendError, ResponseSink, Upstream
from corral.front.stream import ClientStream
from corral.supervision.lease import Lease

logger = logging.getLogger("corral.front")


class TunnelOwner(ResponseSink, Protocol):
    """What a tunnel needs of the exchange that made it (``Exchange``): the sink of an ordinary
    answer, the backend it runs on, and a way to let go of that backend."""

    @property
    def backend(self) -> Upstream | None:
        """The request's backend while it runs."""

    @property
    def name(self) -> str:
        """The route's name, for logs."""

    def end_backend(self) -> None:
        """Drop the backend and give its lease back, not reusable."""


class Tunnel:
    """One Upgrade request's sink, then (after a 101) its tunnel. See the module doc."""

    __slots__ = ("_backend", "_exchange", "_lease", "_open", "_stream")

    def __init__(
        self,
        exchange: TunnelOwner,
        stream: ClientStream,
        backend: Upstream,
        lease: Lease | None = None,
    ) -> None:
        self._exchange = exchange
        self._stream = stream
        #: The backend while the tunnel (or the request) lasts, and its lease (when pooled).
        self._backend: Upstream | None = backend
        self._lease = lease
        self._open = False

    # -- ResponseSink --------------------------------------------------------------------------

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if status == 101:
            self._open = True
            if self._lease is not None:
                # A tunnel lasts as long as its client: no request timeout for it.
                self._lease.open_ended = True
            if self._stream.closed:
                return
            # What the client sent after its request head, before the 101.
            early = self._stream.switch_protocols(reason, headers, self)
            if early and self._backend is not None:
                self._backend.send_body(early)
            return
        backend = self._exchange.backend
        if backend is not None:
            backend.end_body()
        self._exchange.backend_head(status, reason, headers)

    def backend_body(self, data: bytes | memoryview) -> None:
        if self._open:
            self._stream.response.tunnel_write(data)
        else:
            self._exchange.backend_body(data)

    def backend_flush(self) -> None:
        if not self._open:
            self._exchange.backend_flush()

    def backend_end(self, reusable: bool) -> None:
        if self._open:
            self.end(None)
        else:
            self._exchange.backend_end(reusable)

    def backend_error(self, exc: BackendError) -> None:
        if self._open:
            self.end(exc)
        else:
            self._exchange.backend_error(exc)

    def backend_pause_writing(self) -> None:
        self._exchange.backend_pause_writing()

    def backend_resume_writing(self) -> None:
        self._exchange.backend_resume_writing()

    def backend_started(self) -> None:
        self._exchange.backend_started()

    # -- TunnelPeer: the client side's calls ---------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self._backend is not None:
            self._backend.send_body(data)

    def client_done(self) -> bool:
        # The client is done sending: pass the half-close on; the tunnel ends when the backend
        # ends (or at the idle timeout).
        if self._backend is None:
            return False
        self._backend.end_body()
        return True

    def end(self, exc: BackendError | None) -> None:
        """The backend ended the tunnel (or failed, or it idled out, or the server stops):
        close the client's side once what was written has left."""
        self._backend = None
        exchange = self._exchange
        exchange.end_backend()
        if exc is not None:
            logger.info("%s: tunnel ended by the backend: %s", exchange.name, exc)
        if self._stream.closed:
            return
        self._stream.finish(True)
