"""Which build runs (``corral.hotpath``) and the build hook's choices (``setup.py``), without
building: tests/integration/packaging/test_compiled.py builds for real."""

from __future__ import annotations

import importlib.machinery
import runpy
from pathlib import Path
from typing import Any

import pytest

from corral import hotpath

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture(scope="module")
def setup_py() -> dict[str, Any]:
    """setup.py's functions (its ``setup()`` call runs only as ``__main__``)."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="corral_setup")


def _package(root: Path, compiled: list[str]) -> Path:
    for name in hotpath.COMPILED:
        path = root.joinpath(*name.split(".")[1:]).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        if name in compiled:
            path.with_name(path.stem + SUFFIX).write_bytes(b"")
    return root


def test_describe_tells_pure_compiled_and_partly_compiled(tmp_path: Path) -> None:
    assert hotpath.describe(_package(tmp_path / "a", [])) == "pure Python"
    assert hotpath.describe(_package(tmp_path / "b", list(hotpath.COMPILED))) == (
        "compiled (mypyc)"
    )
    some = _package(tmp_path / "c", [n for n in hotpath.COMPILED if n != "corral.front.http1"])
    assert hotpath.describe(some) == "partly compiled (pure: corral.front.http1)"


def test_the_checkout_runs_pure_python_and_holds_no_extension_module() -> None:
    """An extension module beside a checkout's ``.py`` would shadow every edit of it (a manual
    ``mypyc`` or ``build_ext --inplace`` leaves one): the source tree never holds one."""
    source = ROOT / "src" / "corral"
    assert hotpath.compiled_modules(source) == []
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert not [p for p in (ROOT / "src").rglob("*") if p.name.endswith(suffixes)]


def test_every_module_of_the_compiled_set_exists_and_none_is_the_workers() -> None:
    for name in hotpath.COMPILED:
        assert ROOT.joinpath("src", *name.split(".")).with_suffix(".py").is_file(), name
        assert not name.startswith(
            ("corral.worker", "corral.protocol.fastcgi", "corral.protocol.websocket")
        ), name
        assert name not in ("corral.errors", "corral.protocol.spawnctl"), name


@pytest.mark.parametrize(
    ("argv", "editable"),
    [
        (["setup.py", "editable_wheel", "--dist-dir", "/tmp/x"], True),  # PEP 660 (pip -e)
        (["setup.py", "develop"], True),  # the legacy ``setup.py develop``
        (["setup.py", "bdist_wheel", "--dist-dir", "/tmp/x"], False),
        (["setup.py", "dist_info", "--output-dir", "/tmp/develop"], False),
    ],
)
def test_an_editable_install_is_told_from_setuptools_commands(
    setup_py: dict[str, Any], argv: list[str], editable: bool
) -> None:
    assert setup_py["is_editable"](argv) is editable


def test_what_the_hook_builds_for_each_command(
    setup_py: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Editable or ``CORRAL_PURE_PYTHON=1``: nothing to compile; a command that builds nothing
    (pip's metadata step): the placeholder, and mypyc does not run."""
    ext_modules = setup_py["ext_modules"]
    ran: list[object] = []
    monkeypatch.setitem(ext_modules.__globals__, "mypyc_extensions", ran.append)
    monkeypatch.setitem(ext_modules.__globals__, "compiler_problem", lambda: None)
    assert ext_modules(["setup.py", "editable_wheel"], {}) == []
    assert ext_modules(["setup.py", "bdist_wheel"], {"CORRAL_PURE_PYTHON": "1"}) == []
    assert ext_modules(["setup.py", "dist_info"], {}) == [setup_py["PLACEHOLDER"]]
    assert ran == []
    ext_modules(["setup.py", "bdist_wheel"], {"CORRAL_PURE_PYTHON": "0"})
    assert ran == [ROOT / "src"]
    monkeypatch.setitem(ext_modules.__globals__, "compiler_problem", lambda: "no cc")
    assert ext_modules(["setup.py", "bdist_wheel"], {}) == []


def test_setup_reads_the_compiled_set_from_hotpath(setup_py: dict[str, Any]) -> None:
    paths = setup_py["compiled_paths"](ROOT / "src")
    assert paths == [f"{name.replace('.', '/')}.py" for name in hotpath.COMPILED]
