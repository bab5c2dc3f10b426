"""Suite-wide fixtures and policies.

External programs (nginx, php-cgi, node, curl, chromium, wrk) are found with `require_program`,
which skips with a reason when one is missing, except under CORRAL_REQUIRE_EXTERNAL=1 (set by
.ci/run), where a missing program fails the test instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

REQUIRE_EXTERNAL = os.environ.get("CORRAL_REQUIRE_EXTERNAL") == "1"


def require_program(name: str, *alternatives: str) -> str:
    """Return the path of an external program, or skip (fail under CORRAL_REQUIRE_EXTERNAL=1)."""
    for candidate in (name, *alternatives):
        path = shutil.which(candidate) or (
            candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else None
        )
        if path:
            return path
    message = f"external program {name!r} is not installed"
    if REQUIRE_EXTERNAL:
        pytest.fail(message + " (CORRAL_REQUIRE_EXTERNAL=1 forbids skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _private_state_and_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What Corral writes outside site folders (the bundled example's logs under
    $XDG_STATE_HOME, the worker's modules under $XDG_CACHE_HOME from a wheel) goes to this
    session's temporary folder, never the user's home."""
    saved = {name: os.environ.get(name) for name in ("XDG_STATE_HOME", "XDG_CACHE_HOME")}
    base = tmp_path_factory.mktemp("xdg")
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
