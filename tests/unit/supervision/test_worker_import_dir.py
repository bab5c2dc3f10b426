"""What a foreign interpreter gets on its path for Corral's worker: the worker's pure modules,
never the site-packages that holds Corral's other dependencies (issue 10, item 2)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import corral
from corral.supervision.launch import import_dir_for, worker_module_files

PACKAGE = Path(corral.__file__).resolve().parent


def _imported_corral_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name == "corral" or name.startswith("corral.")}


def test_the_worker_modules_are_closed_under_their_own_imports() -> None:
    files = set(worker_module_files())
    expected = {"__init__.py", "errors.py", "worker/__main__.py", "protocol/fastcgi/records.py"}
    assert expected <= files
    for rel in files:
        for name in _imported_corral_modules(PACKAGE / rel):
            parts = name.split(".")[1:]
            module = "/".join(parts)
            candidates = {f"{module}.py", f"{module}/__init__.py"} if parts else {"__init__.py"}
            attribute = "/".join(parts[:-1]) + ".py" if len(parts) > 1 else None
            # ``from corral.worker import wsgi`` names a module; ``from corral.errors import
            # ExitCode`` an attribute of one: either must be among the files.
            assert candidates & files or attribute in files, f"{rel} imports {name}"


def _fake_site_packages(root: Path) -> Path:
    site = root / "site-packages"
    shutil.copytree(PACKAGE, site / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "idna").mkdir()
    (site / "idna" / "__init__.py").write_text("__version__ = 'Corral-s own'\n")
    (site / "corral-0.1.0.dist-info").mkdir()
    return site


def test_a_site_packages_is_never_on_the_workers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = _fake_site_packages(tmp_path)
    staged = Path(import_dir_for(str(site)))
    assert staged.is_relative_to(tmp_path / "cache" / "corral")
    assert [p.name for p in staged.iterdir()] == ["corral"]
    copied = sorted(str(p.relative_to(staged / "corral")) for p in staged.rglob("*") if p.is_file())
    assert copied == worker_module_files(site / "corral")
    assert not (staged / "corral" / "supervision").exists()
    assert not (staged / "corral" / "protocol" / "http1").exists()
    # Made once: the next host start reuses it; changed worker code gets a folder of its own.
    assert import_dir_for(str(site)) == str(staged)
    main = site / "corral" / "worker" / "__main__.py"
    main.write_text(main.read_text() + "\n# changed\n")
    changed = import_dir_for(str(site))
    assert changed != str(staged)
    assert Path(changed, "corral", "worker", "__main__.py").read_text().endswith("# changed\n")


def test_a_folder_holding_only_corral_is_used_as_it_is(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "corral.egg-info").mkdir()
    assert import_dir_for(str(src)) == str(src)


def test_a_cache_folder_others_may_write_to_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    (shared / "corral").mkdir(parents=True)
    (shared / "corral").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    staged = import_dir_for(str(_fake_site_packages(tmp_path)))
    assert Path(staged).is_relative_to(tmp_path / "home" / ".cache" / "corral")
