"""The front's compiled hot path: which modules a wheel compiles with mypyc, and which run so.

``pip install .`` (``setup.py``) compiles the modules of ``COMPILED`` when it can and builds a
pure-Python wheel when it cannot (no C compiler, no Python headers, mypyc failing) or when
``CORRAL_PURE_PYTHON=1``; an editable install is always pure. The compiled and the pure modules
behave the same; ``corral --version`` and the start-up log line say which run (``describe``).

Stdlib only, and nothing imported: what runs is read from the files next to the package (an
extension module beside its ``.py`` is the one Python's importer takes), so that ``--version``
stays instant and ``setup.py`` can read ``COMPILED`` without importing Corral.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path
from typing import Final

#: The modules compiled with mypyc (dotted names): the front's per-request path of a kept-alive
#: request to a FastCGI worker, as measured (bench/README.md, "A compiled hot path"). None of
#: the worker's modules (``corral.worker``, ``corral.protocol.fastcgi``...): a worker in another
#: interpreter imports Corral's pure ``.py`` files (``supervision/launch.worker_import_dir``).
COMPILED: Final = (
    "corral.backends.fastcgi",
    "corral.backends.pairmemo",
    "corral.backends.writebatch",
    "corral.front.cgienv",
    "corral.front.exchange",
    "corral.front.h2stream",
    "corral.front.http1",
    "corral.front.http1response",
    "corral.front.parsing",
    "corral.front.proxy",
    "corral.front.requestlog",
    "corral.front.stats",
    "corral.front.stream",
    "corral.protocol.cgi",
    "corral.protocol.http1.parser",
    "corral.protocol.http1.writer",
    "corral.supervision.dispatch",
)

PURE: Final = "pure Python"
COMPILED_WORD: Final = "compiled (mypyc)"


def _package_root() -> Path:
    return Path(__file__).resolve().parent


def compiled_modules(root: Path | None = None) -> list[str]:
    """The modules of ``COMPILED`` that import as extension modules from the package at
    ``root`` (this one by default)."""
    base = _package_root() if root is None else root
    found = []
    for name in COMPILED:
        stem = base.joinpath(*name.split(".")[1:])
        if any(
            stem.with_name(stem.name + suffix).is_file()
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
        ):
            found.append(name)
    return found


def describe(root: Path | None = None) -> str:
    """``compiled (mypyc)``, ``pure Python``, or a partly compiled build with what is not."""
    found = compiled_modules(root)
    if not found:
        return PURE
    if len(found) == len(COMPILED):
        return COMPILED_WORD
    missing = ", ".join(name for name in COMPILED if name not in found)
    return f"partly compiled (pure: {missing})"
