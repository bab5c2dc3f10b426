"""The crash-loop tracker alone, with a fake clock and a real folder: failures back off, the
app is FAILED after give_up_after, requests meanwhile get a fresh error with the count and the
next try, and a change to the app's source files lets the next request try at once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from corral.supervision.backoff import StartBackoff
from corral.supervision.crashloop import FINGERPRINT_INTERVAL, CrashLoopTracker, source_fingerprint
from corral.supervision.lease import PoolUnavailable
from corral.supervision.settings import PoolSettings


def tracker(root: Path, now: list[float], **backoff: float | int | bool) -> CrashLoopTracker:
    settings = PoolSettings(backoff=StartBackoff(**backoff))  # type: ignore[arg-type]
    return CrashLoopTracker("app", settings, str(root), clock=lambda: now[0])


def test_failures_back_off_then_fail_and_a_ready_worker_ends_the_loop(tmp_path: Path) -> None:
    async def main() -> None:
        now = [100.0]
        crash = tracker(tmp_path, now, initial=1.0, factor=2.0, maximum=60.0, give_up_after=2)
        error = PoolUnavailable("app", "cannot import", "Traceback...")
        crash.failed(error, nothing_runs=True)
        assert (crash.failures, crash.next_start_at, crash.gave_up) == (1, 101.0, False)
        assert not crash.due(100.5) and crash.due(101.0)
        with pytest.raises(PoolUnavailable) as refused:
            await crash.admit()
        assert refused.value is not error  # a fresh one per request
        assert (refused.value.failures, refused.value.retry_in) == (1, 1.0)
        assert refused.value.stderr_tail == "Traceback..." and not refused.value.gave_up
        now[0] = 101.0
        await crash.admit()  # due: this request may start a worker
        crash.failed(error, nothing_runs=True)
        assert crash.gave_up and crash.next_start_at == 161.0  # FAILED: the ceiling, 60 s
        crash.started()
        assert (crash.failures, crash.last_error, crash.next_start_at) == (0, None, 0.0)
        await crash.admit()

    asyncio.run(main())


def test_a_change_to_the_source_files_lets_the_next_request_retry(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import missing\n")

    async def main() -> None:
        now = [10.0]
        crash = tracker(tmp_path, now, initial=30.0)
        crash.failed(PoolUnavailable("app", "cannot import"), nothing_runs=True)
        now[0] = 11.0
        with pytest.raises(PoolUnavailable):
            await crash.admit()  # nothing changed
        app.write_text("def application(e, s):\n    return []\n")
        os.utime(app, ns=(1, 1))
        with pytest.raises(PoolUnavailable):
            await crash.admit()  # changed, but scanned less than a second ago
        now[0] += FINGERPRINT_INTERVAL
        await crash.admit()  # the change is seen: try now
        assert crash.due(now[0])

    asyncio.run(main())


def test_retry_on_demand_never_refuses_and_a_restart_forgets(tmp_path: Path) -> None:
    async def main() -> None:
        now = [5.0]
        crash = tracker(tmp_path, now, retry_on_demand=True)
        crash.failed(PoolUnavailable("app", "boom"), nothing_runs=True)
        await crash.admit()  # the next request tries at once
        assert crash.due(now[0])
        crash.failed(PoolUnavailable("app", "boom"), nothing_runs=True)
        crash.forget()
        assert crash.failures == 0 and crash.last_error is None

    asyncio.run(main())


def test_the_fingerprint_skips_virtualenvs_hidden_and_log_folders(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    for folder in ("venv2", ".git", "logs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "venv2" / "pyvenv.cfg").write_text("")
    before = source_fingerprint(str(tmp_path), (".py",))
    for folder in ("venv2", ".git", "logs"):
        (tmp_path / folder / "noise.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not a source file")
    assert source_fingerprint(str(tmp_path), (".py",)) == before
    (tmp_path / "app.py").write_text("x = 22\n")
    assert source_fingerprint(str(tmp_path), (".py",)) != before
