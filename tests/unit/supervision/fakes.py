"""Fakes shared by the unit tests of the pool's parts."""

from __future__ import annotations

import asyncio


class FakeProcess:
    """A worker process as the worker set drives it (``workers.Process``), without a process:
    ``end(code)`` makes it exit; the signals it was sent are recorded. ``exit_code``: it has
    already exited with that code (a worker that cannot load its app)."""

    def __init__(
        self, pid: int, exit_code: int | None = None, *, stderr: str = "Traceback: boom"
    ) -> None:
        self.pid = pid
        self.address = f"/run/{pid}.sock"
        self.exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.signals: list[str] = []
        self._stderr = stderr
        if exit_code is not None:
            self.exit.set_result(exit_code)

    @property
    def running(self) -> bool:
        return not self.exit.done()

    def gone(self) -> bool:
        return self.exit.done()

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    async def finish(self) -> None:
        return None

    def stderr_tail(self) -> str:
        return self._stderr

    def dump_stack(self) -> bool:
        self.signals.append("USR1")
        return True

    def end(self, code: int) -> None:
        if not self.exit.done():
            self.exit.set_result(code)

    def kill(self) -> None:
        self.signals.append("KILL")
        self.end(-9)

    async def stop(self, grace: float) -> int:
        self.signals.append("TERM")
        self.end(0)
        return 0

    async def close(self) -> None:
        self.end(-9)
