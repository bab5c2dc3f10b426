"""Suite-wide fixtures and policies.

External programs (nginx, php-cgi, node, curl, chromium, wrk) are found with `require_program`,
which skips with a reason when one is missing, except under CORRAL_REQUIRE_EXTERNAL=1 (set by
.ci/run), where a missing program fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import NoReturn

import pytest
from hypothesis import settings

REQUIRE_EXTERNAL = os.environ.get("CORRAL_REQUIRE_EXTERNAL") == "1"

# No time limit per example: a property is about what the code does, and the suite runs in
# parallel on busy machines (hypothesis's 200 ms default is a timed test in disguise; speed is
# measured in bench/). A test's own @settings still sets its number of examples.
settings.register_profile("corral", deadline=None)
settings.load_profile("corral")


def require_program(name: str, *alternatives: str) -> str:
    """Return the path of an external program, or skip (fail under CORRAL_REQUIRE_EXTERNAL=1)."""
    for candidate in (name, *alternatives):
        path = shutil.which(candidate) or (
            candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else None
        )
        if path:
            return path
    unavailable(f"external program {name!r} is not installed")


def unavailable(message: str) -> NoReturn:
    """Skip with ``message`` for what this machine lacks (a program, root, a kernel feature),
    or fail under CORRAL_REQUIRE_EXTERNAL=1."""
    if REQUIRE_EXTERNAL:
        pytest.fail(message + " (CORRAL_REQUIRE_EXTERNAL=1 forbids skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _the_expected_build() -> None:
    """Under CORRAL_EXPECT_COMPILED=1 (scripts/test-compiled) the compiled modules must be the
    ones imported: a matrix that silently ran pure Python would prove nothing."""
    if os.environ.get("CORRAL_EXPECT_COMPILED") == "1":
        from corral import hotpath

        assert hotpath.describe() == hotpath.COMPILED_WORD, hotpath.describe()


@pytest.fixture(scope="session", autouse=True)
def _private_state_and_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What Corral writes outside site folders (the bundled example's logs under
    $XDG_STATE_HOME, the worker's modules under $XDG_CACHE_HOME from a wheel, control sockets
    under $XDG_RUNTIME_DIR) goes to this session's temporary folders, never the user's."""
    names = ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")
    saved = {name: os.environ.get(name) for name in names}
    base = tmp_path_factory.mktemp("xdg")
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")
    # Control sockets (``corral serve``'s, in $XDG_RUNTIME_DIR/corral): one folder per test
    # process, so that servers of the same configuration in parallel tests never meet; short
    # (a Unix socket's path has at most 103 bytes), hence not under the pytest folder.
    runtime = tempfile.mkdtemp(prefix="corral-test-run-")
    os.environ["XDG_RUNTIME_DIR"] = runtime
    yield
    shutil.rmtree(runtime, ignore_errors=True)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
