"""The floor under a small request: what one request costs the server's processes when they do
nothing but move its bytes, for one process answering the client (gunicorn's shape) and for a
front relaying to a worker process (Corral's shape).

    .venv/bin/python bench/hello_floor.py [--duration 5] [--repeat 3] [--modes ...]

wrk (64 connections, the `hello` and `hello-close` scenarios of bench/run.py) drives a server
written to be the cheapest possible in Python: one `epoll` loop per process
(``selectors``), a `recv` per request (wrk sends one request at a time on a connection), a
fixed answer, no HTTP parsing, no WSGI, no logging. What is left is the kernel's work (TCP on
loopback, the Unix socket, waking the processes) and a few Python calls per event, which any
Python server pays. The modes:

- ``direct``: one process answers each request itself; kept alive.
- ``direct-close``: the same, each answer with ``Connection: close`` and the connection closed
  (wrk opens a new one: an accept and a close per request, as gunicorn sync does).
- ``relay``: a front process sends each request over a kept-alive Unix connection to a worker
  process, which answers; the front sends the answer to the client. Kept alive.
- ``relay-close``: the same, the client connection closed after each answer (the Unix
  connections to the worker stay open, as Corral's do).

Printed: req/s, and the CPU (user + system) of the server's processes per request, from
``/proc`` through psutil, for the whole run. bench/README.md, "The floor under a small
request", compares it with the issue's targets.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wrkrun

BODY = b"Hello, world!"
KEEP = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n" + BODY
CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n" + BODY
MODES = ("direct", "direct-close", "relay", "relay-close")


def accept(listener: socket.socket, sel: selectors.BaseSelector) -> socket.socket | None:
    """A new client connection, registered as a client (data True); None if none was there."""
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return None
    conn.setblocking(False)
    sel.register(conn, selectors.EVENT_READ, True)
    return conn


def answer_loop(listener: socket.socket, answer: bytes, close: bool) -> None:
    """Answer every read with ``answer`` (and close, with ``close``), forever."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data is None:
                accept(sock, sel)
                continue
            try:
                data = sock.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                sock.send(answer)
            if not data or close:
                sel.unregister(sock)
                sock.close()


def relay_loop(listener: socket.socket, worker_path: str, close: bool) -> None:
    """Send each client read to a worker connection; each worker read back to its client."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    idle: list[socket.socket] = []
    partner: dict[socket.socket, socket.socket] = {}

    def drop(client: socket.socket) -> None:
        back = partner.pop(client)
        partner.pop(back, None)
        idle.append(back)
        sel.unregister(client)
        client.close()

    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data is None:
                client = accept(sock, sel)
                if client is None:
                    continue
                if idle:
                    back = idle.pop()
                else:
                    back = socket.socket(socket.AF_UNIX)
                    back.connect(worker_path)
                    back.setblocking(False)
                    sel.register(back, selectors.EVENT_READ, False)
                partner[client] = back
                partner[back] = client
                continue
            if key.data:  # a client
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if data:
                    partner[sock].send(data)
                else:
                    drop(sock)
                continue
            data = sock.recv(65536)  # the worker's answer
            client = partner.get(sock)
            if client is None:
                continue
            client.send(data)
            if close:
                drop(client)


def start(mode: str) -> tuple[int, int, str | None]:
    """Fork the server for ``mode``: (its pid, its port, the worker's socket path)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    close = mode.endswith("-close")
    path = None
    pid = os.fork()
    if pid == 0:
        os.setsid()  # its own process group: ended as one
        try:
            if mode.startswith("direct"):
                answer_loop(listener, CLOSE if close else KEEP, close)
            else:
                path = f"/tmp/corral-hello-floor-{os.getpid()}.sock"
                worker = socket.socket(socket.AF_UNIX)
                worker.bind(path)
                worker.listen(1024)
                if os.fork() == 0:
                    listener.close()
                    answer_loop(worker, CLOSE if close else KEEP, False)
                worker.close()
                relay_loop(listener, path, close)
        finally:
            os._exit(0)
    listener.close()
    return pid, port, path


def cpu_of(pid: int) -> float:
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run(mode: str, duration: float) -> tuple[float, float]:
    """One run: (req/s, server CPU µs per request)."""
    pid, port, path = start(mode)
    try:
        time.sleep(0.3)
        script = "close.lua" if mode.endswith("-close") else "get.lua"
        wrk = wrkrun.find_wrk()
        url = f"http://127.0.0.1:{port}/hello"
        wrkrun.run(wrk, url, script, connections=64, duration=1, threads=1, timeout=5)
        before = cpu_of(pid)
        result = wrkrun.run(
            wrk, url, script, connections=64, duration=duration, threads=1, timeout=5
        )
        used = cpu_of(pid) - before
        return result.req_per_s, 1e6 * used / max(result.requests, 1)
    finally:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if path is not None:
            Path(path).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for _ in range(args.repeat):  # interleaved: the machine's load moves all modes alike
        for mode in modes:
            results[mode].append(run(mode, args.duration))
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.repeat} runs")
    print(f"{'mode':<14} {'req/s':>8} {'CPU µs/request':>15}   (each run)")
    for mode, runs in results.items():
        rates = statistics.median(r for r, _ in runs)
        cpus = statistics.median(c for _, c in runs)
        each = ", ".join(f"{c:.1f}" for _, c in runs)
        print(f"{mode:<14} {rates:>8.0f} {cpus:>15.1f}   ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
