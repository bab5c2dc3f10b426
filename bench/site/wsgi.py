"""Site entry point for every server in the benchmark: exposes bench/app.py's ``application``.

Corral serves this folder (``corral serve bench/site``), gunicorn imports ``wsgi:application``
from it and uWSGI loads it with ``--wsgi-file``. The app is loaded by file path so that it needs
nothing on sys.path and cannot collide with another module named ``app``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_APP_FILE = Path(__file__).resolve().parent.parent / "app.py"
_spec = importlib.util.spec_from_file_location("corral_bench_app", _APP_FILE)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)

application = _module.application
