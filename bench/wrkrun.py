"""Running wrk (Debian's wrk 4.x) and reading its results.

Each scenario has a Lua script in bench/lua/; the harness appends bench/lua/report.lua, whose
``done`` hook prints one machine-readable line, so nothing depends on wrk's human output format.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "CORRAL_BENCH_JSON "
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


class WrkError(Exception):
    pass


@dataclass(frozen=True)
class WrkResult:
    duration_s: float
    requests: int
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    statuses: dict[int, int]  # only filled with the statuses.lua diagnosis script
    output: str

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed (Debian: apt-get install wrk)")
    return path


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "?"


def parse(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(MARKER):
            data: dict[str, Any] = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError(f"wrk printed no {MARKER.strip()} line; its output was:\n{output}")
    return WrkResult(
        duration_s=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        bytes=int(data["bytes"]),
        errors={kind: int(data["errors"][kind]) for kind in ERROR_KINDS},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()},
        output=output,
    )


def run(
    wrk: str,
    url: str,
    script: str,
    *,
    connections: int,
    duration: float,
    threads: int,
    timeout: float,
    extra: tuple[str, ...] = (),
) -> WrkResult:
    """Run wrk against ``url`` with ``bench/lua/<script>``, the ``extra`` scripts and the report
    hook, concatenated (wrk takes one script)."""
    parts = [script, *extra, "report.lua"]
    source = "\n".join((LUA_DIR / name).read_text() for name in parts)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="corral-bench-") as lua:
        lua.write(source)
        lua.flush()
        cmd = [
            wrk,
            f"--threads={min(threads, connections)}",
            f"--connections={connections}",
            f"--duration={max(1, round(duration))}s",
            f"--timeout={max(1, round(timeout))}s",
            f"--script={lua.name}",
            url,
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=duration + timeout + 60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise WrkError(f"wrk did not finish: {' '.join(cmd)}") from exc
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with status {proc.returncode}: {' '.join(cmd)}\n{output}")
    return parse(output)
