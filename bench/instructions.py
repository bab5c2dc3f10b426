"""Instructions per request of a microbenchmark, counted by callgrind: a figure that other load
on the machine does not move (CPU time does, a lot, on a shared machine).

    .venv/bin/python bench/instructions.py tests/apps/microbench_worker.py [--pipelined 4]
    .venv/bin/python bench/instructions.py tests/unit/front/microbench_front.py [--close]

The microbenchmark (any script that takes ``--requests N``) runs twice under ``valgrind
--tool=callgrind``, with ``--small`` and ``--large`` requests (its warm-up, the interpreter's
start and imports are the same in both), and the difference of the two instruction counts is
divided by the difference of requests. Only user space is counted: system calls and the kernel
are not (the microbenchmarks make none). Run a tree before a change with ``PYTHONPATH`` pointing
at its ``src`` (figures: bench/README.md, "Performance II (continued)"). Needs valgrind; takes
about a minute per run, the two runs in parallel.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def start(script: list[str], requests: int, out: Path) -> subprocess.Popen[bytes]:
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        *script,
        "--requests",
        str(requests),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def total(run: subprocess.Popen[bytes], out: Path) -> int:
    _, stderr = run.communicate()
    if run.returncode != 0:
        raise SystemExit(f"the microbenchmark failed under callgrind:\n{stderr.decode()[-2000:]}")
    found = _TOTAL.search(out.read_bytes())
    if found is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=400, help="requests of the first run")
    parser.add_argument("--large", type=int, default=3600, help="requests of the second run")
    args, script = parser.parse_known_args()
    if not script:
        parser.error("name a microbenchmark script (and its own options)")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as folder:
        small_out, large_out = Path(folder, "small.out"), Path(folder, "large.out")
        small = start(script, args.small, small_out)
        large = start(script, args.large, large_out)
        counts = total(small, small_out), total(large, large_out)
    per_request = (counts[1] - counts[0]) / (args.large - args.small)
    print(f"{per_request:,.0f} instructions per request ({' '.join(script)})")


if __name__ == "__main__":
    main()
