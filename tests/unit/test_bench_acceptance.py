"""bench/run.py --check: the issue's targets, judged on a run's figures (pure; no server runs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # run.py imports its sibling modules
_spec = importlib.util.spec_from_file_location("corral_bench_run", BENCH / "run.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # (its dataclasses look themselves up there)
_spec.loader.exec_module(bench)


def row(server: str, scenario: str, **fields: Any) -> dict[str, Any]:
    conns = bench.SCENARIOS[scenario].connections
    base: dict[str, Any] = {
        "server": server,
        "scenario": scenario,
        "error_count": 0,
        "connections": conns,
        "connections_in_service": float(conns),
        "req_per_s": 1000.0,
        "cpu_us_per_request": 100.0,
    }
    base.update(fields)
    return base


def full_run(**hello: Any) -> list[dict[str, Any]]:
    rows = [row("corral", name) for name in bench.ISSUE_SCENARIOS if name != "hello"]
    rows.append(
        row("corral", "hello", **{"req_per_s": 16000.0, "cpu_us_per_request": 65.0, **hello})
    )
    rows.append(row("gunicorn", "hello", req_per_s=10000.0, cpu_us_per_request=110.0))
    return rows


def failed(checks: list[dict[str, Any]]) -> list[str]:
    return [c["check"] for c in checks if not c["ok"]]


def test_a_complete_run_that_meets_every_target_passes() -> None:
    checks = bench.acceptance(full_run(), complete=True)
    assert failed(checks) == []
    names = {c["check"].split(":")[0] for c in checks}
    assert names == set(bench.ISSUE_SCENARIOS)  # every scenario of the issue judged


def test_each_target_of_the_issue_can_be_missed() -> None:
    assert failed(bench.acceptance(full_run(req_per_s=14000.0), complete=True)) == [
        "hello: req/s >= 1.5x gunicorn sync"
    ]
    assert failed(bench.acceptance(full_run(cpu_us_per_request=70.1), complete=True)) == [
        "hello: server CPU <= 70 µs/request"
    ]
    rows = full_run()
    rows[0]["error_count"] = 3
    assert failed(bench.acceptance(rows, complete=True)) == [f"{rows[0]['scenario']}: zero errors"]
    # Errors in any repeated run count, not only in the median one.
    rows = full_run()
    rows[1]["repeats"] = {"error_count": [0, 2, 0]}
    assert failed(bench.acceptance(rows, complete=True)) == [f"{rows[1]['scenario']}: zero errors"]


def test_with_check_a_target_the_run_did_not_measure_is_missed() -> None:
    partial = [row("corral", "hello", req_per_s=16000.0, cpu_us_per_request=65.0)]
    checks = bench.acceptance(partial, complete=True)
    missed = failed(checks)
    assert "hello: req/s >= 1.5x gunicorn sync" in missed  # no gunicorn in the run
    assert "sleep50: zero errors" in missed
    assert all(c["value"] == "not measured" for c in checks if not c["ok"])
    # Without --check only what was measured is listed.
    assert failed(bench.acceptance(partial)) == []
    assert bench.acceptance([row("gunicorn", "hello")]) == []


def test_starved_connections_are_judged_in_kept_alive_scenarios_only() -> None:
    rows = full_run()
    for each in rows:
        if each["server"] == "corral" and each["scenario"] in ("1mib", "hello-close"):
            each["connections_in_service"] = 40.0
    missed = failed(bench.acceptance(rows, complete=True))
    # 1mib keeps its connections: 40 of 64 in service means 24 waited unanswered. hello-close
    # opens one per request, and wrk's connecting is outside its latencies: not judged.
    assert missed == ["1mib: every connection answered (>= 80% of 64 in service)"]
