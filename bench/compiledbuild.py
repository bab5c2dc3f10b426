"""The compiled build for the tests and the bench: a wheel of this checkout compiled with mypyc,
installed into a virtualenv, both cached by a hash of the sources (so built once per change).

    .venv/bin/python bench/compiledbuild.py [--cache DIR]   # prints the virtualenv's folder

The virtualenv reaches Corral's dependencies through a ``.pth`` line naming this interpreter's
site-packages (no network; not the checkout's editable ``corral``, whose finder that folder's
own ``.pth`` files install and a plain path line does not run). A lock file lets parallel
callers (pytest-xdist's workers, the bench) wait for one build instead of making their own. The
build fails, rather than falling back to pure Python, if mypyc or the compiler cannot build it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / "build" / "compiled"
BUILD_TIMEOUT = 600.0
#: What a wheel is built from (and what its hash covers).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "src")


def source_files(root: Path = ROOT) -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = root / name
        if path.is_file():
            files.append(path)
            continue
        files += sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and not any(part.endswith(".egg-info") for part in p.parts)
            and not p.name.endswith((".pyc", ".so"))
        )
    return files


def source_hash(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def copy_sources(dest: Path, root: Path = ROOT) -> Path:
    """The files a wheel is built from, without build leftovers or caches."""
    for path in source_files(root):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("CORRAL_PURE_PYTHON", None)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


def build_wheel(source: Path, dist: Path, env: dict[str, str]) -> tuple[Path, str]:
    """``pip wheel`` of ``source`` (offline, this interpreter's setuptools and mypy) into
    ``dist``: the wheel and the build's output."""
    out = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-v",
            "-w",
            str(dist),
            str(source),
        ],
        cwd=source,
        env=env,
    )
    wheels = sorted(dist.glob("corral-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {dist}, found {wheels}")
    return wheels[0], out


def make_venv(venv: Path, wheel: Path) -> Path:
    """A fresh virtualenv with ``wheel`` installed and this interpreter's packages reachable."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        cwd=venv.parent,
        env=clean_env(),
    )
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=venv.parent,
    ).strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "corral-test-deps.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    return venv


def compiled_venv(cache: Path = DEFAULT_CACHE) -> Path:
    """The cached virtualenv of the compiled build of the current sources (built if missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"venv-{source_hash()}"
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "ok").is_file():
            return final
        shutil.rmtree(final, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="build-", dir=cache) as tmp:
            work = Path(tmp)
            wheel, out = build_wheel(copy_sources(work / "source"), work / "dist", clean_env())
            if "building pure Python" in out:
                raise RuntimeError(f"the compiled build fell back to pure Python:\n{out}")
            make_venv(final, wheel)
            (final / "dist").mkdir()
            shutil.copy2(wheel, final / "dist" / wheel.name)
        check = _run(
            [
                str(final / "bin" / "python"),
                "-c",
                "from corral import hotpath; print(hotpath.describe())",
            ],
            cwd=cache,
            env=clean_env(),
        ).strip()
        if check != "compiled (mypyc)":
            raise RuntimeError(f"the compiled build's venv runs {check!r}")
        (final / "ok").write_text(check + "\n")
        for old in cache.glob("venv-*"):  # (earlier sources' builds)
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final


def compiled_wheel(cache: Path = DEFAULT_CACHE) -> Path:
    """The compiled wheel of the current sources (``compiled_venv``'s, built if missing)."""
    (wheel,) = (compiled_venv(cache) / "dist").glob("corral-*.whl")
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    print(compiled_venv(parser.parse_args().cache))


if __name__ == "__main__":
    main()
