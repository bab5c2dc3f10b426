"""LaunchPlan and the plan for Corral's Python worker."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

import corral
from corral.supervision.launch import (
    LIVENESS_FD,
    LaunchPlan,
    WorkerSocket,
    corral_package_parent,
    python_worker_plan,
)


def test_plan_is_frozen_and_copies_its_inputs() -> None:
    env = {"A": "1"}
    plan = LaunchPlan(argv=["prog", "x"], env=env, cwd="/")  # type: ignore[arg-type]
    env["A"] = "2"
    assert plan.argv == ("prog", "x")
    assert plan.env["A"] == "1"
    assert plan.transport is WorkerSocket.UNIX
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.cwd = "/tmp"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.env["B"] = "3"  # type: ignore[index]


def test_plan_needs_a_program() -> None:
    with pytest.raises(ValueError):
        LaunchPlan(argv=(), env={}, cwd="/")


def test_corral_package_parent_contains_corral() -> None:
    parent = Path(corral_package_parent())
    assert (parent / "corral" / "__init__.py").resolve() == Path(corral.__file__).resolve()


def test_python_worker_plan(tmp_path: Path) -> None:
    app_env = {"PYTHONPATH": os.pathsep.join(["venv/lib", "/abs/lib"]), "WSGI_APP": "app.wsgi"}
    plan = python_worker_plan(
        tmp_path, app_env=app_env, threads=4, base_env={"PATH": "/bin", "HOME": "/root"}
    )
    assert plan.argv == (
        sys.executable,
        "-m",
        "corral.worker",
        "--liveness-fd",
        str(LIVENESS_FD),
        "--threads",
        "4",
    )
    assert plan.cwd == str(tmp_path)
    assert plan.transport is WorkerSocket.UNIX
    assert plan.env["PYTHONPATH"].split(os.pathsep) == [
        "venv/lib",
        "/abs/lib",
        corral_package_parent(),
    ]
    assert plan.env["CORRAL_ENGINE"] == "python"
    assert plan.env["WSGI_APP"] == "app.wsgi"
    assert plan.env["PATH"] == "/bin"


def test_python_worker_plan_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_MARKER", "inherited")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    plan = python_worker_plan(tmp_path, python="/opt/venv/bin/python", engine="python.3.12")
    assert plan.argv[0] == "/opt/venv/bin/python"
    assert plan.env["CORRAL_TEST_MARKER"] == "inherited"
    assert plan.env["PYTHONPATH"] == corral_package_parent()
    assert plan.env["CORRAL_ENGINE"] == "python.3.12"
    with pytest.raises(ValueError):
        python_worker_plan(tmp_path, threads=0)
