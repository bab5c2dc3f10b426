"""Server hooks: callables in the application's code that Corral calls at points of a worker's
life (``module:function``, called with no arguments).

* ``app start``: once per process that imported the app: in the template (preloaded workers),
  else in each worker, after the import and before any request.
* ``after fork``: in each worker forked from a template, before it serves (close connections
  inherited from the template, reseed what needs it).
* ``worker exit``: in each worker that stops when asked (SIGTERM), after its last request.

A hook that cannot be found or raises is the app failing to load (its traceback goes to the
app's log): a worker that skipped its ``after fork`` hook must not serve. Stdlib only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from corral.worker import loader


def run(spec: str | None, what: str) -> bool:
    """Call the hook named ``spec`` (nothing if None); False, with the traceback on stderr, if
    it could not be found or raised."""
    if not spec:
        return True
    try:
        hook: Callable[[], object] = loader.resolve(loader.parse_spec(spec))
        if not callable(hook):
            raise TypeError(f"{spec!r} is a {type(hook).__name__}, not a function")
        hook()
    except Exception as exc:
        lines = [f"corral worker: the {what} hook {spec!r} failed: {type(exc).__name__}: {exc}\n"]
        lines += loader.format_app_error(exc)
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
        return False
    return True
