"""The package's shape limits (issue 9's acceptance): no module over 800 lines, no class over 30
methods, and no ``Any`` on the seam between the front, the lease sources and the backends.

Big modules and classes grow by accretion; these limits make a reviewer split one before it
becomes a god object again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "corral"
MAX_LINES = 800
MAX_METHODS = 30
#: The seam: what the front drives and what gives it backends.
SEAM = (
    "backends/__init__.py",
    "supervision/lease.py",
    "front/routes.py",
    "front/stream.py",
    "front/exchange.py",
)


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_is_at_most_800_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines: split it"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_classes_have_at_most_30_methods(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            methods = [
                item
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            assert len(methods) <= MAX_METHODS, (
                f"{path.relative_to(SRC)}: class {node.name} has {len(methods)} methods"
            )


@pytest.mark.parametrize("name", SEAM)
def test_the_seam_has_no_any(name: str) -> None:
    tree = ast.parse((SRC / name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "Any":
            raise AssertionError(f"{name}:{node.lineno}: Any on the seam")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "getattr", f"{name}:{node.lineno}: getattr on the seam"
