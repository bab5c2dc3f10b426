"""The front's CPU cost of sending a spilled response back out (not collected by pytest).

    .venv/bin/python tests/unit/front/microbench_spill.py [--mib N] [--rounds N]

A ``Spill`` holding N MiB (default 64) is sent to one end of a TCP connection over loopback (a
forked child reads the other end and throws it away), two ways, taking turns: ``read+write``,
the copying path (``Spill.take`` of 256 KiB, then ``send`` of it, as a transport's write does),
and ``sendfile`` (``Spill.send_to``: the file straight to the socket). The figure is this
process's CPU time (user + system) per MiB. Figures: bench/README.md, "Performance II".
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time

from corral.front.spool import Spill

MIB = 1 << 20


def connected() -> tuple[socket.socket, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return server, client


def filled(size: int) -> Spill:
    spill = Spill(limit=1 << 40, total_limit=1 << 40)
    block = os.urandom(MIB)
    for _ in range(size // MIB):
        spill.add([block])
    return spill


def copying(spill: Spill, sock: socket.socket) -> None:
    while data := spill.take():
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                select.select([], [sock], [])


def zero_copy(spill: Spill, sock: socket.socket) -> None:
    while spill.held:
        if not spill.send_to(sock.fileno()):
            select.select([], [sock], [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sock, reader = connected()
    pid = os.fork()
    if pid == 0:
        sock.close()
        buffer = bytearray(MIB)
        while reader.recv_into(buffer):
            pass
        os._exit(0)
    reader.close()
    sock.setblocking(False)
    for _ in range(args.rounds):
        for name, send in (("read+write", copying), ("sendfile", zero_copy)):
            spill = filled(args.mib * MIB)
            started = time.process_time()
            send(spill, sock)
            elapsed = time.process_time() - started
            spill.close()
            print(f"{name:10}  {1e6 * elapsed / args.mib:7.1f} µs CPU per MiB")
    sock.close()
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
