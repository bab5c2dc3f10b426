"""Which applications get adaptive concurrency: Corral's Python worker with ``threads`` unset
(elastic, up to ``maxThreads``); an explicit ``threads`` or ``connections_per_worker`` stays
fixed; engines that cannot grow stay fixed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from corral.config import load_site
from corral.engines import backend_for, pool_settings_for

SITES = Path(__file__).resolve().parents[2] / "fixtures" / "sites"


def argv_after(argv: tuple[str, ...], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_a_python_app_without_threads_is_elastic_up_to_max_threads() -> None:
    (app,) = load_site(str(SITES / "seed-wsgi")).apps
    assert app.engine.threads == 0 and app.engine.max_threads == 128
    settings = pool_settings_for(app)
    assert (settings.connections_per_worker, settings.max_threads_per_worker) == (1, 128)
    plan = backend_for(app, settings).plan
    assert plan is not None
    assert argv_after(plan.argv, "--threads") == "1"
    assert argv_after(plan.argv, "--max-threads") == "128"
    # A lower ceiling, from the engine or the command line.
    lower = replace(app, engine=replace(app.engine, max_threads=16))
    assert pool_settings_for(lower).max_threads_per_worker == 16
    assert pool_settings_for(app, {"max_threads_per_worker": 8}).max_threads_per_worker == 8


def test_explicit_threads_or_connections_stay_fixed() -> None:
    (app,) = load_site(str(SITES / "seed-wsgi")).apps
    fixed = replace(app, engine=replace(app.engine, threads=4))
    settings = pool_settings_for(fixed)
    assert (settings.connections_per_worker, settings.max_threads_per_worker) == (4, 0)
    plan = backend_for(fixed, settings).plan
    assert plan is not None
    assert argv_after(plan.argv, "--threads") == "4" and "--max-threads" not in plan.argv
    overridden = pool_settings_for(app, {"connections_per_worker": 64})
    assert (overridden.connections_per_worker, overridden.max_threads_per_worker) == (64, 0)
    plan = backend_for(app, overridden).plan
    assert plan is not None and "--max-threads" not in plan.argv


def test_engines_that_cannot_grow_stay_fixed() -> None:
    (php,) = load_site(str(SITES / "php-site")).apps
    assert pool_settings_for(php).max_threads_per_worker == 0
