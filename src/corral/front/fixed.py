"""A response the front makes itself, driven like a backend (``corral.backends.Upstream``):
a URL Rewrite rule's redirect or custom response (``front/rewriting.py``), a site's redirect to
https (``front/httpspolicy.py``). The exchange frames, logs and counts it as any response, so
keep-alive, HEAD and the access log work as for an application's answer."""

from __future__ import annotations

import asyncio

from corral.backends import ResponseSink


class FixedResponse:
    """A response the front makes itself (a rule's redirect or custom response), driven like a
    backend (``corral.backends.Upstream``), so that framing, keep-alive, HEAD and the access
    log are the client stream's."""

    __slots__ = ("_body", "_handle", "_headers", "_reason", "_sink", "_status")

    def __init__(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self._status = status
        self._reason = reason
        self._headers = headers
        self._body = body
        self._sink: ResponseSink | None = None
        self._handle: asyncio.Handle | None = None

    def begin(
        self, static: bytes, params: list[tuple[bytes, bytes]], sink: ResponseSink, has_body: int
    ) -> None:
        # Answered on the next loop turn: the exchange finishes setting up this request first.
        self._sink = sink
        self._handle = asyncio.get_running_loop().call_soon(self._answer)

    def _answer(self) -> None:
        self._handle = None
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        sink.backend_head(self._status, self._reason, self._headers)
        if self._body:
            sink.backend_body(self._body)
        sink.backend_end(True)

    def send_body(self, data: bytes) -> None:
        """A request body means nothing to this answer: dropped."""

    def end_body(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def abort(self) -> None:
        self._sink = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    close = abort

    @property
    def is_closed(self) -> bool:
        return self._sink is None
