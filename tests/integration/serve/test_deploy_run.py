"""DeployRun on its own: a real script's merged output, in order, to DEPLOY_LOG and to
subscribers, whenever they start reading; the time limit kills the script's whole group."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))

from pool_testkit import wait_gone

from corral.runtime.deploy import DeployCommand, DeployRun

SCRIPT = """import sys, time
print("one", flush=True)
print("two on stderr", file=sys.stderr, flush=True)
time.sleep(0.3)
print("three", flush=True)
"""


def command(tmp_path: Path, source: str, **kw: object) -> DeployCommand:
    script = tmp_path / "deploy.py"
    script.write_text(source)
    kw.setdefault("interpreter", sys.executable)
    return DeployCommand(
        script=str(script),
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(tmp_path),
        **kw,  # type: ignore[arg-type]
    )


def test_subscribers_get_everything_whenever_they_start(tmp_path: Path) -> None:
    log = tmp_path / "log" / "deploy.log"
    run = DeployRun(command(tmp_path, SCRIPT, log_path=str(log)), app="t")

    async def main() -> tuple[bytes, bytes, bytes]:
        early = run.subscribe()
        never_read = run.subscribe()  # holds nothing: it is never started
        task = asyncio.ensure_future(run.run())
        live = b"".join([chunk async for chunk in early])
        result = await task
        assert result.ok and result.returncode == 0
        late = b"".join([chunk async for chunk in run.subscribe()])
        del never_read
        return live, late, result.tail.encode()

    live, late, tail = asyncio.run(main())
    expected = b"one\ntwo on stderr\nthree\n"
    assert live.startswith(expected) and late.startswith(expected)
    assert live == late and b"--- the deploy script succeeded" in live
    assert tail == expected  # the tail is the script's output only
    text = log.read_text()
    assert "one\ntwo on stderr\nthree\n" in text and "the deploy script succeeded" in text


def test_the_time_limit_kills_the_script_and_its_children(tmp_path: Path) -> None:
    source = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    run = DeployRun(command(tmp_path, source, timeout=1.0), app="t")
    result = asyncio.run(run.run())
    assert not result.ok and result.timed_out
    child = int(result.tail.split()[0])
    assert "did not finish within its time limit" in result.describe()
    assert wait_gone([child], within=10.0) == []  # the group was signalled, not only the script


def test_a_script_that_was_to_make_the_virtualenv_and_did_not_has_failed(tmp_path: Path) -> None:
    """With a fallback interpreter (the workers' is a virtualenv's Python the script makes), a
    script that exits 0 without making it has failed: the workers could not start."""
    venv_python = tmp_path / "venv" / "bin" / "python"
    lazy = command(
        tmp_path,
        'print("did nothing")\n',
        interpreter=str(venv_python),
        fallback_interpreter=sys.executable,
    )
    result = asyncio.run(DeployRun(lazy, app="t").run())
    assert result.returncode == 0 and not result.ok
    assert result.missing == str(venv_python)
    assert "without making" in result.describe() and "VIRTUAL_ENV" in result.describe()

    maker = f"""import os
os.makedirs({str(venv_python.parent)!r})
os.symlink({sys.executable!r}, {str(venv_python)!r})
"""
    (tmp_path / "deploy.py").write_text(maker)
    result = asyncio.run(DeployRun(lazy, app="t").run())
    assert result.ok and result.missing is None, result.describe()
    # The next run uses the virtualenv it made.
    assert lazy.argv == (str(venv_python), lazy.script)
