"""The sink of an answer nobody waits for any more (a queued request whose client went away,
or one withdrawn from a connection): what comes is read and dropped."""

from __future__ import annotations

from typing import Final

from corral.backends import BackendError


class Discard:
    """The sink of a queued request whose client went away: its answer is read and dropped."""

    def backend_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def backend_body(self, data: bytes | memoryview) -> None:
        pass

    def backend_end(self, reusable: bool) -> None:
        pass

    def backend_error(self, exc: BackendError) -> None:
        pass

    def backend_flush(self) -> None:
        pass

    def backend_pause_writing(self) -> None:
        pass

    def backend_resume_writing(self) -> None:
        pass

    def backend_started(self) -> None:
        pass


DISCARD: Final = Discard()
