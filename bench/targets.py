"""Issue 14's targets ("Performance II"), judged on one run's rows: pure, no server runs.

Every target is a ratio of Corral's figure to a reference server's figure in the same scenario of
the same run (servers with their own defaults: defaults.py), so that the machine's speed and load
cancel out. bench/run.py prints them and, with ``--check``, fails the run on any target missed,
including one whose rows the run did not measure ("not measured"). The rows are bench/run.py's
(``measure``), after ``median_rows``: one per (scenario, server).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Figure = Literal["req/s", "p99", "CPU/request"]
#: The scenarios issue 14 names (with ``upload``, kept from the first benchmark): ``--check``
#: needs Corral measured in each of them, without errors.
SCENARIOS = ("hello", "hello-close", "1mib", "upload", "sleep50", "cpu5", "mixed")


class ScenarioInfo(Protocol):
    @property
    def connections(self) -> int: ...

    @property
    def script(self) -> str: ...


@dataclass(frozen=True)
class Ratio:
    """Corral's ``figure`` in ``scenario`` against ``reference``'s: at most or at least ``bound``
    times it (``strict``: more than, for "better than")."""

    scenario: str
    reference: str
    figure: Figure
    bound: float
    at_least: bool
    strict: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        sign = (">" if self.strict else ">=") if self.at_least else "<="
        text = f"{self.scenario}: {self.figure} {sign} {self.bound:.2f}x {self.reference}'s"
        return f"{text} ({self.note})" if self.note else text

    def holds(self, ratio: float) -> bool:
        if self.at_least:
            return ratio > self.bound if self.strict else ratio >= self.bound
        return ratio <= self.bound


RATIOS = (
    # The 50 ms app at 200 connections at least as fast as granian: >= 3,500 where it does 3,900.
    Ratio("sleep50", "granian", "req/s", 3500 / 3900, True, note="3,500 req/s where it does 3,900"),
    # The CPU-bound app: req/s at least gunicorn's, p99 no more than 1.2x gunicorn's.
    Ratio("cpu5", "gunicorn", "req/s", 1.0, True),
    Ratio("cpu5", "gunicorn", "p99", 1.2, False),
    # The mixed app better than both: more req/s than each, and a p99 no worse than each's.
    Ratio("mixed", "gunicorn", "req/s", 1.0, True, strict=True),
    Ratio("mixed", "gunicorn", "p99", 1.0, False),
    Ratio("mixed", "granian", "req/s", 1.0, True, strict=True),
    Ratio("mixed", "granian", "p99", 1.0, False),
    # Cheap connections and large bodies.
    Ratio("hello-close", "gunicorn", "CPU/request", 1.0, False),
    Ratio("1mib", "gunicorn", "CPU/request", 1.0, False),
    Ratio("1mib", "gunicorn", "req/s", 1.0, True),
    Ratio("hello", "gunicorn", "CPU/request", 0.4, False),
)


def figure_of(row: Mapping[str, Any], figure: Figure) -> float | None:
    """The row's figure, or None when the run has none (no request answered)."""
    if figure == "req/s":
        value = row["req_per_s"]
    elif figure == "p99":
        value = row["latency_us"]["p99"] if row.get("requests", 1) else None
    else:
        value = row["cpu_us_per_request"]
    return None if value is None else float(value)


def _shown(value: float, figure: Figure) -> str:
    if figure == "p99":
        return f"{value / 1000:.1f} ms"
    if figure == "req/s":
        return f"{value:.0f} req/s"
    return f"{value:.1f} µs"


def judge_ratio(
    rule: Ratio, rows: Sequence[Mapping[str, Any]], *, complete: bool
) -> dict[str, Any] | None:
    """One ratio target on the run's rows; None when it was not measured and not ``complete``."""
    mine = _row(rows, "corral", rule.scenario)
    ref = _row(rows, rule.reference, rule.scenario)
    if mine is None or ref is None:
        if not complete:
            return None
        absent = " and ".join(n for n, r in (("corral", mine), (rule.reference, ref)) if r is None)
        return _missed(rule.label, f"not measured ({absent} not in the run)")
    value, base = figure_of(mine, rule.figure), figure_of(ref, rule.figure)
    if value is None or base is None or base <= 0:
        who = "corral" if value is None else rule.reference
        return _missed(rule.label, f"not measured ({who} has no {rule.figure} figure)")
    ratio = value / base
    return {
        "check": rule.label,
        "value": f"{ratio:.2f}x ({_shown(value, rule.figure)} vs {_shown(base, rule.figure)})",
        "ratio": round(ratio, 3),
        "ok": rule.holds(ratio),
    }


def judge(
    rows: Sequence[Mapping[str, Any]],
    scenarios: Mapping[str, ScenarioInfo],
    *,
    starved_share: float,
    complete: bool = False,
) -> list[dict[str, Any]]:
    """Issue 14's targets on this run: zero errors and every connection answered in each of
    Corral's scenarios, then every ratio. Without ``complete`` only what the run measured is
    judged; with it (``--check``) a target the run left unmeasured is missed."""
    mine = {r["scenario"]: r for r in rows if r["server"] == "corral"}
    if not mine and not complete:
        return []
    names = [s for s in scenarios if s in mine or (complete and s in SCENARIOS)]
    checks: list[dict[str, Any]] = []
    for name in names:
        row = mine.get(name)
        if row is None:
            checks.append(_missed(f"{name}: zero errors", "not measured"))
            continue
        worst = max(row.get("repeats", {}).get("error_count", [row["error_count"]]))
        checks.append({"check": f"{name}: zero errors", "value": worst, "ok": worst == 0})
    for name in names:
        if scenarios[name].script == "close.lua":
            continue  # a connection per request: none can wait unanswered (bench/run.py)
        row = mine.get(name)
        conns = scenarios[name].connections if row is None else row["connections"]
        check = f"{name}: every connection answered (>= {starved_share:.0%} of {conns} in service)"
        if row is None:
            checks.append(_missed(check, "not measured"))
            continue
        served = row["connections_in_service"]
        checks.append({"check": check, "value": served, "ok": served >= starved_share * conns})
    for rule in RATIOS:
        judged = judge_ratio(rule, rows, complete=complete)
        if judged is not None:
            checks.append(judged)
    return checks


def _row(rows: Sequence[Mapping[str, Any]], server: str, scenario: str) -> Mapping[str, Any] | None:
    return next((r for r in rows if r["server"] == server and r["scenario"] == scenario), None)


def _missed(check: str, why: str) -> dict[str, Any]:
    return {"check": check, "value": why, "ok": False}
