"""How long static-file serving holds the front's event loop (docs/architecture.md, step 3).

    .venv/bin/python bench/static_read.py [--size-mib 64] [--downloads 3]

1. ``os.pread`` of one piece (``staticserve.CHUNK``, 256 KiB) from a file in the page cache:
   median and p99 over every piece of the file.
2. The front itself (uvloop, ``ConfigRouter`` over a static site, ``StaticResponse``) serving
   the file to fast loopback clients (curl processes) while a ticker task measures the loop's
   lag (how late a 1 ms sleep wakes up): throughput, and the lag's p50 / p99 / max; and the
   time of each pump turn (one connection's reads and writes before it yields), wall and CPU.
   On a busy machine the wall figures include time the process was not scheduled; the CPU
   figures do not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from corral.config import load_site
from corral.front import staticserve
from corral.front.routes import ConfigRouter
from corral.front.server import FrontServer


def pread_times(path: str, size: int) -> list[float]:
    fd = os.open(path, os.O_RDONLY)
    try:
        times = []
        for offset in range(0, size, staticserve.CHUNK):
            start = time.perf_counter()
            os.pread(fd, staticserve.CHUNK, offset)
            times.append(time.perf_counter() - start)
        return times
    finally:
        os.close(fd)


async def download(port: int, size: int) -> None:
    """A client in its own process (curl), so that only the server runs on the measured loop."""
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        f"http://127.0.0.1:{port}/big.bin",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert int(out) == size, out


#: (wall seconds, CPU seconds of this thread) of every StaticResponse._pump call: one loop turn's
#: work for one connection.
TURNS: list[tuple[float, float]] = []


def _instrument() -> None:
    pump = staticserve.StaticResponse._pump

    def timed(self: staticserve.StaticResponse) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        pump(self)
        TURNS.append((time.perf_counter() - wall, time.thread_time() - cpu))

    staticserve.StaticResponse._pump = timed  # type: ignore[method-assign]


async def serve_and_measure(folder: str, size: int, downloads: int) -> tuple[float, list[float]]:
    config = load_site(folder)
    front = FrontServer(ConfigRouter(config, {}, by_port=False))
    [(_, port)] = await front.listen("127.0.0.1", 0)
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    tick = asyncio.create_task(ticker())
    start = time.perf_counter()
    await asyncio.gather(*(download(port, size) for _ in range(downloads)))
    elapsed = time.perf_counter() - start
    done = True
    await tick
    await front.stop(1.0)
    return downloads * size / elapsed, lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--downloads", type=int, default=3, help="concurrent downloads")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    import uvloop

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.bin")
        with open(path, "wb") as out:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                out.write(block)
        pread_times(path, size)  # warm the page cache
        times = sorted(pread_times(path, size))
        p99 = times[int(len(times) * 0.99) - 1]
        print(
            f"pread {staticserve.CHUNK // 1024} KiB (page cache): "
            f"median {statistics.median(times) * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"
        )
        _instrument()
        rate, lags = uvloop.run(serve_and_measure(folder, size, args.downloads))
        lags.sort()
        print(
            f"front, {args.downloads} x {args.size_mib} MiB to loopback clients: "
            f"{rate / 1e6:.0f} MB/s; loop lag p50 {statistics.median(lags) * 1e3:.2f} ms, "
            f"p99 {lags[int(len(lags) * 0.99) - 1] * 1e3:.2f} ms, max {lags[-1] * 1e3:.2f} ms "
            f"({len(lags)} ticks)"
        )
        walls = sorted(wall for wall, _ in TURNS)
        cpus = sorted(cpu for _, cpu in TURNS)
        print(
            f"one pump turn (<= {staticserve.TURN_BUDGET // 1024} KiB read and written): "
            f"wall p50 {statistics.median(walls) * 1e3:.2f} ms, max {walls[-1] * 1e3:.2f} ms; "
            f"CPU p50 {statistics.median(cpus) * 1e3:.2f} ms, max {cpus[-1] * 1e3:.2f} ms "
            f"({len(TURNS)} turns)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
