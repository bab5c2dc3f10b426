"""The floor under a 1 MiB response: what moving the bytes alone costs, without HTTP or Python's
per-request work, for one server process writing to the client (gunicorn's path) and for a
front relaying what a worker wrote to it (Corral's path).

    .venv/bin/python bench/relay_floor.py [--mib 3000] [--repeat 5] [--modes ...]

Three processes on loopback, blocking sockets, 1 MiB messages: a producer (the app's worker),
for the relayed modes a relay (the front), and a consumer that reads and drops everything (the
client, wrk). Each prints its own CPU time (user + system, ``os.times``) per MiB. The modes:

- ``direct``: the producer ``sendall``s each MiB into the TCP socket to the consumer (one copy:
  what a prefork server's worker does).
- ``copy``: the producer ``sendall``s into a Unix socket; the relay ``recv_into`` a reused
  256 KiB buffer and ``sendall``s it to TCP (the relay's two copies: out of the Unix socket,
  into TCP).
- ``bytes``: as ``copy``, but the relay ``recv``s a new ``bytes`` per read (uvloop's
  ``data_received``: one more copy in user space).
- ``splice``: Unix socket -> pipe -> TCP with ``os.splice`` in the relay (no copy in the relay
  on paper: pages are moved by reference).
- ``pipe``: the producer writes into a pipe, the relay ``splice``s the pipe to TCP.

The consumer's CPU is the client's, not a server's; it is shown because zero-copy sends can
move work to the receiver. Linux only for ``splice`` and ``pipe`` (``os.splice``). Figures:
bench/README.md, "Performance II (continued): large bodies".
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import statistics
import sys
import time

MIB = 1 << 20
READ = 256 * 1024
#: fcntl's F_SETPIPE_SZ (Linux), for a pipe that holds a whole MiB.
F_SETPIPE_SZ = 1031
MODES = ("direct", "copy", "bytes", "splice", "pipe")


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def report(write_fd: int, role: str, started: float, count: int) -> None:
    os.write(write_fd, f"{role} {1e6 * (cpu() - started) / count:.1f}\n".encode())


def consume(port: int, count: int, out: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    buffer = bytearray(READ)
    total = 0
    started = cpu()
    while total < count * MIB:
        n = sock.recv_into(buffer)
        if not n:
            break
        total += n
    report(out, "consumer", started, count)


def produce(mode: str, target: socket.socket | int, count: int, out: int) -> None:
    body = os.urandom(MIB)
    started = cpu()
    for _ in range(count):
        if isinstance(target, int):  # a pipe
            view = memoryview(body)
            while view:
                view = view[os.write(target, view) :]
        else:
            target.sendall(body)
    report(out, "producer", started, count)


def relay(mode: str, source: socket.socket | int, tcp: socket.socket, count: int) -> float:
    """Move ``count`` MiB from ``source`` to ``tcp``; the relay's CPU per MiB."""
    total = 0
    goal = count * MIB
    started = cpu()
    if mode == "copy":
        assert isinstance(source, socket.socket)
        buffer = bytearray(READ)
        view = memoryview(buffer)
        while total < goal:
            n = source.recv_into(buffer)
            tcp.sendall(view[:n])
            total += n
    elif mode == "bytes":
        assert isinstance(source, socket.socket)
        while total < goal:
            data = source.recv(READ)
            tcp.sendall(data)
            total += len(data)
    elif mode == "splice":
        assert isinstance(source, socket.socket)
        pipe_r, pipe_w = os.pipe()
        fcntl.fcntl(pipe_w, F_SETPIPE_SZ, MIB)
        while total < goal:
            n = os.splice(source.fileno(), pipe_w, MIB)
            left = n
            while left:
                left -= os.splice(pipe_r, tcp.fileno(), left)
            total += n
    else:  # pipe
        assert isinstance(source, int)
        while total < goal:
            total += os.splice(source, tcp.fileno(), MIB)
    return 1e6 * (cpu() - started) / count


def run(mode: str, count: int) -> dict[str, float]:
    """One measurement: CPU µs per MiB of each process."""
    results_r, results_w = os.pipe()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    consumer = os.fork()
    if consumer == 0:
        consume(port, count, results_w)
        os._exit(0)
    tcp, _ = listener.accept()
    listener.close()
    front, back = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sock in (front, back):
        # Corral's worker and front ask for 1 MiB send buffers.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MIB)
    pipe_r, pipe_w = os.pipe()
    if mode == "pipe":
        fcntl.fcntl(pipe_w, F_SETPIPE_SZ, MIB)
    started = time.monotonic()
    producer = os.fork()
    if producer == 0:
        target: socket.socket | int = tcp if mode == "direct" else back
        if mode == "pipe":
            target = pipe_w
        produce(mode, target, count, results_w)
        os._exit(0)
    figures: dict[str, float] = {}
    if mode != "direct":
        figures["relay"] = relay(mode, pipe_r if mode == "pipe" else front, tcp, count)
    for pid in (producer, consumer):
        os.waitpid(pid, 0)
    figures["MiB/s"] = count / (time.monotonic() - started)
    os.close(results_w)
    with os.fdopen(results_r) as lines:
        for line in lines:
            role, value = line.split()
            figures[role] = float(value)
    for thing in (tcp, front, back):
        thing.close()
    for fd in (pipe_r, pipe_w):
        os.close(fd)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=3000, help="MiB moved per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not hasattr(os, "splice"):
        modes = [m for m in modes if m not in ("splice", "pipe")]
    load = os.getloadavg()[0]
    print(f"relay floor: {args.mib} MiB per run, {args.repeat} runs per mode, load {load:.2f}")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode in modes:  # interleaved: the machine's load changes between runs
            runs[mode].append(run(mode, args.mib))
    print(f"{'mode':8} {'producer':>9} {'relay':>9} {'server':>9} {'consumer':>9} {'MiB/s':>7}")
    for mode in modes:

        def median(key: str, mode: str = mode) -> float:
            values = [r[key] for r in runs[mode] if key in r]
            return statistics.median(values) if values else 0.0

        servers = [r["producer"] + r.get("relay", 0.0) for r in runs[mode]]
        print(
            f"{mode:8} {median('producer'):9.1f} {median('relay'):9.1f} "
            f"{statistics.median(servers):9.1f} {median('consumer'):9.1f} "
            f"{median('MiB/s'):7.0f}"
        )
    print("(µs of CPU per MiB, medians; server = producer + relay)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
