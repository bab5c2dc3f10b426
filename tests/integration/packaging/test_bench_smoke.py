"""The benchmark harness works end to end against Corral: starts `corral serve`, drives wrk,
parses its report and finds no errors. Deliberately no performance assertion: the targets live in
bench/ (see bench/README.md), not in timed tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_program

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.external("wrk")
def test_bench_runs_against_corral_without_errors(tmp_path: Path) -> None:
    require_program("wrk")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "corral",
         "--scenarios", "hello", "--duration", "1", "--warmup", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["failed_servers"] == []
    [row] = report["results"]
    assert (row["server"], row["scenario"], row["connections"]) == ("corral", "hello", 64)
    assert row["requests"] > 0
    assert row["error_count"] == 0, row["errors"]
    assert row["latency_us"]["p50"] > 0
    assert row["cpu_us_per_request"] is not None and row["cpu_us_per_request"] > 0
    assert "hello" in proc.stdout and "corral" in proc.stdout


def test_the_status_bench_runs_end_to_end(tmp_path: Path) -> None:
    """bench/control_status.py, shrunk (2 apps of 1 worker, 2 rounds): it serves, waits for
    every worker and times `corral status` (no performance assertion)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "control_status.py"), "--apps", "2",
         "--workers", "1", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("2 apps x 1 workers = 2 workers; status document ")
    assert "corral status          wall  median" in proc.stdout
    assert "corral modules imported: corral, corral.cli," in proc.stdout
    assert "corral.ops.status" not in proc.stdout  # the client reads JSON, not the model
