"""Build hook: the front's hot path compiled with mypyc, else a pure-Python build.

setuptools stays the build backend (``pyproject.toml``); this file only adds the extension
modules. ``pip install .`` and ``pip wheel .`` compile the modules listed in
``src/corral/hotpath.py`` (``COMPILED``) when they can, and build pure Python, with one warning
line, when they cannot: mypyc missing or failing, no C compiler, no Python headers.
``CORRAL_PURE_PYTHON=1`` asks for the pure build. An editable install (``pip install -e``) is
always pure: a developer edits the ``.py`` files, and an extension module beside one would
shadow the edit. No build leaves an extension module in ``src/``, and every build starts from a
build folder without Corral's extension modules, so none can be stale (docs/architecture.md,
"The compiled hot path").
"""

from __future__ import annotations

import importlib.machinery
import os
import runpy
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PURE_SWITCH = "CORRAL_PURE_PYTHON"
#: setuptools' commands of an editable install: PEP 660's and the legacy ``setup.py develop``.
EDITABLE_COMMANDS = frozenset({"editable_wheel", "develop"})


def warn(message: str) -> None:
    print(f"corral: {message}", file=sys.stderr, flush=True)


def is_editable(argv: Sequence[str]) -> bool:
    """Whether setuptools was asked for an editable install (the commands in ``argv``)."""
    return any(arg in EDITABLE_COMMANDS for arg in argv[1:])


def pure_requested(environ: dict[str, str] | os._Environ[str]) -> bool:
    return environ.get(PURE_SWITCH, "").strip().lower() not in ("", "0", "no", "false")


def compiled_paths(src: Path) -> list[str]:
    """The source files of ``hotpath.COMPILED``, relative to ``src``, read without importing
    Corral (whose dependencies a build environment need not have)."""
    names = runpy.run_path(str(src / "corral" / "hotpath.py"))["COMPILED"]
    return [str(Path(*name.split(".")).with_suffix(".py")) for name in names]


def extension_files(build_lib: Path) -> list[Path]:
    """Corral's extension modules in a build folder, and mypyc's shared library for them."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = [p for p in (build_lib / "corral").rglob("*") if p.name.endswith(suffixes)]
    found += [p for p in build_lib.glob("*__mypyc*") if p.name.endswith(suffixes)]
    return found


def mypyc_extensions(src: Path) -> list[object]:
    """mypyc's extension modules for the hot path, or none (with the warning) if it fails."""
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        warn(f"mypyc is not available ({exc}): building pure Python")
        return []
    # mypy's own defaults, not the project's strict configuration: a build environment may lack
    # Corral's dependencies (their types are then Any), which strict checking would refuse.
    config = Path(tempfile.mkdtemp(prefix="corral-mypyc-")) / "mypy.ini"
    config.write_text("[mypy]\n")
    previous = os.getcwd()
    os.chdir(src)
    try:
        return list(
            mypycify(
                [
                    "--config-file",
                    str(config),
                    "--ignore-missing-imports",
                    "--cache-dir",
                    str(config.parent / "cache"),
                    *compiled_paths(src),
                ],
                opt_level="3",
                group_name="corral",
                target_dir=str(HERE / "build" / "mypyc"),
            )
        )
    except (Exception, SystemExit) as exc:  # mypyc reports its errors and exits
        warn(f"mypyc failed ({exc!r}): building pure Python")
        return []
    finally:
        os.chdir(previous)
        shutil.rmtree(config.parent, ignore_errors=True)


class CleanBuildPy(build_py):
    """``build_py`` that first removes Corral's extension modules a previous build left in the
    build folder (a pure build must not ship them; a compiled one makes them afresh)."""

    def run(self) -> None:
        for path in extension_files(Path(self.build_lib)):
            path.unlink()
        super().run()


#: Stands for mypyc's extension modules in a command that builds nothing (pip's metadata step,
#: ``sdist``): mypyc runs only for the commands that build (``BUILDING``).
PLACEHOLDER = Extension("corral__mypyc", sources=[])
#: setuptools' commands that build the package (``bdist_wheel`` is pip's).
BUILDING = frozenset({"build", "build_ext", "bdist_wheel", "bdist", "bdist_egg", "install"})


class FallbackBuildExt(build_ext):
    """``build_ext`` that builds pure Python when the C compiler fails, and never in place."""

    def run(self) -> None:
        if self.inplace or self.editable_mode:
            warn("extension modules are never built in place (an editable install is pure)")
            self.extensions = []
            return
        if self.extensions == [PLACEHOLDER]:  # (a building command BUILDING does not know)
            warn("mypyc did not run for this command: building pure Python")
            self.extensions = []
            return
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, no compiler, no headers...
            for path in extension_files(Path(self.build_lib)):
                path.unlink()
            self.extensions = []
            warn(f"compiling the hot path failed ({exc}): building pure Python")


def compiler_problem() -> str | None:
    """Why C extension modules cannot be built here (None: a C compiler builds a file that
    includes Python.h), so that a machine without one skips mypyc and gets a pure wheel."""
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    folder = Path(tempfile.mkdtemp(prefix="corral-cc-"))
    try:
        source = folder / "probe.c"
        source.write_text("#include <Python.h>\nint corral_probe(void) { return 0; }\n")
        compiler = new_compiler()
        customize_compiler(compiler)
        compiler.compile(
            [str(source)],
            output_dir=str(folder),
            include_dirs=[sysconfig.get_paths()["include"], sysconfig.get_paths()["platinclude"]],
        )
    except Exception as exc:  # CompileError, no compiler on PATH, no Python.h...
        return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return None


def ext_modules(argv: Sequence[str], environ: dict[str, str] | os._Environ[str]) -> list[object]:
    if is_editable(argv):
        return []
    if pure_requested(environ):
        warn(f"{PURE_SWITCH} is set: building pure Python")
        return []
    problem = compiler_problem()
    if problem is not None:
        warn(f"no usable C compiler ({problem}): building pure Python")
        return []
    if not any(arg in BUILDING for arg in argv[1:]):
        return [PLACEHOLDER]
    return mypyc_extensions(HERE / "src")


if __name__ == "__main__":
    setup(
        ext_modules=ext_modules(sys.argv, os.environ),
        cmdclass={"build_py": CleanBuildPy, "build_ext": FallbackBuildExt},
    )
