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
