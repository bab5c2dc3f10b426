"""The worker tests' support module itself (tests/worker_support.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.worker_support import start_worker, unix_address


def test_support_module_starts_and_stops_a_worker(tmp_path: Path) -> None:
    """The helpers themselves: a worker starts, reports ready, stops gracefully (exit 0)."""
    address = unix_address(tmp_path)
    worker = start_worker(tmp_path, "--bind", f"unix:{address}", "--app", "worker_apps:application")
    try:
        assert worker.proc.poll() is None
    finally:
        assert worker.stop() == 0
    assert not os.path.exists(address), "the worker removes its socket file on exit"
