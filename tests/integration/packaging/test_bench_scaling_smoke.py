"""bench/scaling.py works: a short burst against corral serve yields a table whose worker count
grows during the burst and whose requests all succeed (the figures themselves live in
docs/scaling.md, never in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_scaling_bench_reports_workers_over_a_burst(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scaling.py"), "--max", "3", "--burst", "3",
         "--connections", "12", "--quiet-before", "2", "--quiet-after", "2",
         "--idle-timeout", "60", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [row["phase"] for row in rows][:1] == ["quiet"]
    assert any(row["phase"] == "burst" for row in rows)
    assert sum(row["errors"] for row in rows) == 0
    assert max(row["workers"] for row in rows) > 1  # the burst started workers
    assert "t (s)" in result.stdout and "started worker" in result.stdout
