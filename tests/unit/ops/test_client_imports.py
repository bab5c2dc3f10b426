"""The `corral status|restart|...|top` client starts fast: it imports the stdlib only, and of
Corral only the CLI and the client's own modules (none of the server's: no asyncio, no
configuration model, no psutil), nor the stdlib's heavier modules it has no use for."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
before = set(sys.modules)
import corral.cli
from corral.ops import client, controlcli, screen, top
new = set(sys.modules) - before
print(" ".join(sorted(m for m in new if m.split(".")[0] not in sys.stdlib_module_names)))
print(" ".join(sorted(m for m in new if m in ("asyncio", "inspect", "dataclasses", "hashlib"))))
"""


def test_the_client_path_imports_only_the_stdlib_and_its_own_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-c", CODE], capture_output=True, text=True, timeout=30, check=True
    )
    ours, heavy = result.stdout.split("\n")[:2]
    assert ours.split() == [
        "corral",
        "corral.cli",
        "corral.errors",
        "corral.hotpath",  # (stdlib only: which build runs, for --version)
        "corral.ops",
        "corral.ops.client",
        "corral.ops.controlcli",
        "corral.ops.controlproto",
        "corral.ops.rundir",
        "corral.ops.screen",
        "corral.ops.top",
    ]
    assert heavy == ""
