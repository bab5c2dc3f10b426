"""bench/targets.py: issue 14's targets as ratios to a reference server in the same run, judged on
made-up rows (pure; no server runs). Each rule is shown to hold and to be missed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # run.py imports its sibling modules
_spec = importlib.util.spec_from_file_location("corral_bench_run_14", BENCH / "run.py")
assert _spec is not None and _spec.loader is not None
run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = run  # (its dataclasses look themselves up there)
_spec.loader.exec_module(run)
targets = run.targets

SERVERS = ("corral", "gunicorn", "granian", "uwsgi")


def row(server: str, scenario: str, **fields: Any) -> dict[str, Any]:
    conns = run.SCENARIOS[scenario].connections
    base: dict[str, Any] = {
        "server": server,
        "scenario": scenario,
        "requests": 10000,
        "error_count": 0,
        "connections": conns,
        "connections_in_service": float(conns),
        "req_per_s": 1000.0,
        "latency_us": {"p99": 100_000.0},
        "cpu_us_per_request": 100.0,
    }
    base.update(fields)
    return base


def passing_run() -> list[dict[str, Any]]:
    """Every server in every scenario of the issue, Corral meeting each target with room."""
    rows = [row(s, n) for n in targets.SCENARIOS for s in SERVERS if s != "corral"]
    corral = {
        "hello": {"cpu_us_per_request": 30.0},  # <= 0.4 x 100
        "hello-close": {"cpu_us_per_request": 90.0},
        "1mib": {"cpu_us_per_request": 90.0, "req_per_s": 1100.0},
        "upload": {},
        "sleep50": {"req_per_s": 950.0},  # >= 0.897 x 1000
        "cpu5": {"req_per_s": 1000.0, "latency_us": {"p99": 119_000.0}},
        "mixed": {"req_per_s": 1001.0, "latency_us": {"p99": 100_000.0}},
    }
    rows += [row("corral", n, **corral[n]) for n in targets.SCENARIOS]
    return rows


def judge(rows: list[dict[str, Any]], complete: bool = True) -> list[dict[str, Any]]:
    return targets.judge(rows, run.SCENARIOS, starved_share=run.STARVED_SHARE, complete=complete)


def failed(checks: list[dict[str, Any]]) -> list[str]:
    return [c["check"] for c in checks if not c["ok"]]


def corral_row(rows: list[dict[str, Any]], scenario: str) -> dict[str, Any]:
    return next(r for r in rows if r["server"] == "corral" and r["scenario"] == scenario)


def test_a_run_that_meets_every_target_passes_and_judges_every_one() -> None:
    checks = judge(passing_run())
    assert failed(checks) == []
    labels = [c["check"] for c in checks]
    assert {rule.label for rule in targets.RATIOS} <= set(labels)
    for name in targets.SCENARIOS:
        assert f"{name}: zero errors" in labels
    assert "hello-close: every connection answered (>= 80% of 64 in service)" not in labels
    assert "mixed: every connection answered (>= 80% of 64 in service)" in labels


def test_the_issue_targets_are_the_ratios_judged() -> None:
    shown = {rule.label for rule in targets.RATIOS}
    assert shown == {
        "sleep50: req/s >= 0.90x granian's (3,500 req/s where it does 3,900)",
        "cpu5: req/s >= 1.00x gunicorn's",
        "cpu5: p99 <= 1.20x gunicorn's",
        "mixed: req/s > 1.00x gunicorn's",
        "mixed: p99 <= 1.00x gunicorn's",
        "mixed: req/s > 1.00x granian's",
        "mixed: p99 <= 1.00x granian's",
        "hello-close: CPU/request <= 1.00x gunicorn's",
        "1mib: CPU/request <= 1.00x gunicorn's",
        "1mib: req/s >= 1.00x gunicorn's",
        "hello: CPU/request <= 0.40x gunicorn's",
    }


# Each target, with Corral's figure just past its bound: only that target is missed.
MISSES = [
    ("sleep50", {"req_per_s": 897.0}, "sleep50: req/s >= 0.90x granian's"),
    ("cpu5", {"req_per_s": 999.0}, "cpu5: req/s >= 1.00x gunicorn's"),
    ("cpu5", {"latency_us": {"p99": 120_100.0}}, "cpu5: p99 <= 1.20x gunicorn's"),
    ("hello-close", {"cpu_us_per_request": 100.1}, "hello-close: CPU/request <= 1.00x"),
    ("1mib", {"cpu_us_per_request": 100.1}, "1mib: CPU/request <= 1.00x gunicorn's"),
    ("1mib", {"req_per_s": 999.0}, "1mib: req/s >= 1.00x gunicorn's"),
    ("hello", {"cpu_us_per_request": 40.1}, "hello: CPU/request <= 0.40x gunicorn's"),
]


@pytest.mark.parametrize(("scenario", "figures", "missed"), MISSES)
def test_each_target_is_missed_past_its_bound(
    scenario: str, figures: dict[str, Any], missed: str
) -> None:
    rows = passing_run()
    corral_row(rows, scenario).update(figures)
    [label] = failed(judge(rows))
    assert label.startswith(missed)


def test_each_target_holds_at_its_bound() -> None:
    rows = passing_run()
    corral_row(rows, "sleep50")["req_per_s"] = 1000.0 * 3500 / 3900
    corral_row(rows, "cpu5").update(req_per_s=1000.0, latency_us={"p99": 120_000.0})
    corral_row(rows, "hello")["cpu_us_per_request"] = 40.0
    corral_row(rows, "hello-close")["cpu_us_per_request"] = 100.0
    corral_row(rows, "1mib").update(cpu_us_per_request=100.0, req_per_s=1000.0)
    assert failed(judge(rows)) == []


def test_mixed_is_better_than_both_only_with_more_req_s_and_no_worse_p99() -> None:
    rows = passing_run()
    corral_row(rows, "mixed")["req_per_s"] = 1000.0  # equal is not better
    assert failed(judge(rows)) == [
        "mixed: req/s > 1.00x gunicorn's",
        "mixed: req/s > 1.00x granian's",
    ]
    rows = passing_run()
    granian = next(r for r in rows if r["server"] == "granian" and r["scenario"] == "mixed")
    granian["req_per_s"] = 1500.0  # better than gunicorn, not than granian
    assert failed(judge(rows)) == ["mixed: req/s > 1.00x granian's"]
    rows = passing_run()
    corral_row(rows, "mixed")["latency_us"] = {"p99": 100_001.0}
    assert failed(judge(rows)) == [
        "mixed: p99 <= 1.00x gunicorn's",
        "mixed: p99 <= 1.00x granian's",
    ]


def test_the_value_shows_the_ratio_and_both_figures() -> None:
    rows = passing_run()
    corral_row(rows, "hello")["cpu_us_per_request"] = 55.0
    [check] = [c for c in judge(rows) if c["check"].startswith("hello: CPU")]
    assert check == {
        "check": "hello: CPU/request <= 0.40x gunicorn's",
        "value": "0.55x (55.0 µs vs 100.0 µs)",
        "ratio": 0.55,
        "ok": False,
    }


def test_a_reference_missing_from_the_run_is_a_miss_with_check_only() -> None:
    rows = [r for r in passing_run() if r["server"] != "granian"]
    checks = judge(rows)
    missed = {c["check"]: c["value"] for c in checks if not c["ok"]}
    assert missed == {
        "sleep50: req/s >= 0.90x granian's (3,500 req/s where it does 3,900)": (
            "not measured (granian not in the run)"
        ),
        "mixed: req/s > 1.00x granian's": "not measured (granian not in the run)",
        "mixed: p99 <= 1.00x granian's": "not measured (granian not in the run)",
    }
    # Without --check, what the run could not judge is left out, and the rest still judged.
    loose = judge(rows, complete=False)
    assert failed(loose) == []
    assert not any("granian" in c["check"] for c in loose)
    assert any("gunicorn" in c["check"] for c in loose)


def test_a_scenario_corral_did_not_run_is_a_miss_with_check() -> None:
    rows = [r for r in passing_run() if r["scenario"] != "cpu5"]
    missed = failed(judge(rows))
    assert missed == [
        "cpu5: zero errors",
        "cpu5: every connection answered (>= 80% of 16 in service)",
        "cpu5: req/s >= 1.00x gunicorn's",
        "cpu5: p99 <= 1.20x gunicorn's",
    ]
    assert failed(judge(rows, complete=False)) == []
    assert judge([row("gunicorn", "hello")], complete=False) == []


def test_a_reference_without_a_figure_is_not_measured() -> None:
    rows = passing_run()
    gunicorn = next(r for r in rows if r["server"] == "gunicorn" and r["scenario"] == "hello")
    gunicorn.update(requests=0, req_per_s=0.0, cpu_us_per_request=None)
    [check] = [c for c in judge(rows) if not c["ok"]]
    assert check["check"] == "hello: CPU/request <= 0.40x gunicorn's"
    assert check["value"] == "not measured (gunicorn has no CPU/request figure)"


def test_errors_and_unanswered_connections_fail_whatever_the_ratios() -> None:
    rows = passing_run()
    corral_row(rows, "upload")["error_count"] = 1
    corral_row(rows, "mixed")["repeats"] = {"error_count": [0, 3, 0]}  # any run's errors count
    corral_row(rows, "sleep50")["connections_in_service"] = 150.0  # 50 of 200 starved
    corral_row(rows, "hello-close")["connections_in_service"] = 10.0  # not judged: close.lua
    assert failed(judge(rows)) == [
        "upload: zero errors",
        "mixed: zero errors",
        "sleep50: every connection answered (>= 80% of 200 in service)",
    ]


def test_every_scenario_of_the_targets_is_one_the_harness_runs() -> None:
    assert set(targets.SCENARIOS) <= set(run.SCENARIOS)
    assert {rule.scenario for rule in targets.RATIOS} <= set(targets.SCENARIOS)
    assert {rule.reference for rule in targets.RATIOS} <= set(run.KINDS)
    assert (BENCH / "lua" / run.SCENARIOS["mixed"].script).is_file()


def test_without_workers_every_server_runs_with_its_defaults() -> None:
    args = run.parse_args([])
    assert args.workers is None
    assert args.server_list == list(SERVERS)
    assert set(targets.SCENARIOS) <= set(args.scenario_list)
    pool = {"--min", "--max", "--workers", "--processes", "--threads", "--set", "--backlog"}
    for name in SERVERS:
        argv = run.KINDS[name].command(name, 8000, None)
        assert not pool & set(argv), argv
    assert run.parse_args(["--workers", "2"]).workers == 2
