"""Slow clients cannot take an application down: a real `corral serve` with a two-worker
php-cgi application, raw-socket clients on loopback.

- Two uploaders trickling a body (one byte every 1.5 s) hold no worker: with request buffering
  (on for PHP) the worker is leased only once the body is complete; they still get their
  correct answer.
- Two readers that read nothing of a 16 MiB response for 6 s hold no worker: the response is
  spilled to a temporary file past write_buffer_high, the worker released at its end; they
  still get every byte.
- Meanwhile 50 requests from other clients are all answered promptly.
- A body arriving below min_body_rate (after body_rate_grace) gets 408.

Without these, the four slow clients held both workers: the other clients waited for the
uploaders (for ever: body_timeout only counts gaps between bytes) or for response_timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import Conn, CorralServer, request
from tests.integration.interop.test_php import php_site, serving

from conftest import require_program

BIG = 16 * 1024 * 1024
SCRIPTS = {
    "md5.php": "<?php echo md5(file_get_contents('php://input'));\n",
    "big.php": "<?php echo str_repeat('0123456789abcdef', 1024 * 1024);\n",
    "hello.php": "<?php echo 'hello';\n",
}
BIG_MD5 = hashlib.md5(b"0123456789abcdef" * (1024 * 1024)).hexdigest()


def php_app(tmp_path: Path) -> Path:
    require_program("php-cgi")
    site = php_site(tmp_path)
    for name, text in SCRIPTS.items():
        (site / name).write_text(text)
    return site


def two_workers(*extra: str) -> tuple[str, ...]:
    return ("--set", "min_instances=2", "--set", "max_instances=2", *extra)


def slow_upload(server: CorralServer, body: bytes, gap: float, results: list[object]) -> None:
    try:
        with Conn(server.port, timeout=60) as conn:
            conn.send(
                b"POST /md5.php HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            for byte in body:
                time.sleep(gap)
                conn.send(bytes([byte]))
            answer = conn.response()
            results.append((answer.status, answer.body))
    except Exception as exc:  # reported by the test
        results.append(exc)


def slow_read(server: CorralServer, stall: float, results: list[object]) -> None:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        sock.connect(("127.0.0.1", server.port))
        conn = Conn.__new__(Conn)
        conn.sock, conn.buf = sock, b""
        with conn:
            conn.send(b"GET /big.php HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            time.sleep(stall)  # reads nothing meanwhile
            answer = conn.response()
            results.append((answer.status, len(answer.body), hashlib.md5(answer.body).hexdigest()))
    except Exception as exc:
        results.append(exc)


def test_slow_uploaders_and_readers_leave_the_app_to_other_clients(tmp_path: Path) -> None:
    site = php_app(tmp_path)
    with serving(site, *two_workers()) as server:
        assert request(server.port, path="/hello.php").body == b"hello"
        uploads: list[object] = []
        reads: list[object] = []
        body = b"abcdef"
        threads = [
            threading.Thread(target=slow_upload, args=(server, body, 1.5, uploads)),
            threading.Thread(target=slow_upload, args=(server, body, 1.5, uploads)),
            threading.Thread(target=slow_read, args=(server, 6.0, reads)),
            threading.Thread(target=slow_read, args=(server, 6.0, reads)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # the four are connected and stuck
        started = time.monotonic()
        slowest = 0.0
        for _ in range(50):
            before = time.monotonic()
            answer = request(server.port, path="/hello.php")
            slowest = max(slowest, time.monotonic() - before)
            assert (answer.status, answer.body) == (200, b"hello")
        took = time.monotonic() - started
        # The slow clients are all still at it: the others were served meanwhile.
        assert not uploads and not reads, (uploads, reads)
        assert took < 4.0 and slowest < 2.0, (took, slowest)
        for thread in threads:
            thread.join(60)
        assert uploads == [(200, hashlib.md5(body).hexdigest().encode())] * 2, uploads
        assert reads == [(200, BIG, BIG_MD5)] * 2, reads


def test_a_body_below_the_minimum_rate_gets_408(tmp_path: Path) -> None:
    site = php_app(tmp_path)
    rate = ("--set", "min_body_rate=100", "--set", "body_rate_grace=1")
    with serving(site, *two_workers(*rate)) as server:
        started = time.monotonic()
        with Conn(server.port, timeout=30) as conn:
            conn.send(b"POST /md5.php HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
            # One byte every 0.5 s (2 bytes/s, far below 100) until the server answers.
            while not select.select([conn.sock], [], [], 0.5)[0]:
                conn.send(b"x")
                assert time.monotonic() - started < 10.0
            answer = conn.response()
        assert answer.status == 408, answer
        assert time.monotonic() - started < 5.0
        # A body at a normal pace is served.
        body = b"y" * 100_000
        answer = request(server.port, "POST", "/md5.php", body=body)
        assert (answer.status, answer.body) == (200, hashlib.md5(body).hexdigest().encode())


def spill_files(server: CorralServer) -> int:
    """Temporary files of the front's spool folder open in the server process."""
    assert server.proc is not None
    folder = f"/proc/{server.proc.pid}/fd"
    count = 0
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            count += "/corral-spool-" in os.readlink(f"{folder}/{name}")
    return count


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_spilled_response_nobody_reads_is_dropped_after_response_timeout(
    tmp_path: Path,
) -> None:
    """The spill frees the worker at once, but not the disk for ever: a client that reads
    nothing for response_timeout is cut off (and its temporary file freed)."""
    site = php_app(tmp_path)
    with serving(site, *two_workers("--set", "response_timeout=1")) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(b"GET /big.php HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert wait_for(lambda: spill_files(server) == 1)
            server.wait_log("client stopped reading")
            assert wait_for(lambda: spill_files(server) == 0)
        finally:
            sock.close()
        assert request(server.port, path="/hello.php").body == b"hello"


def spill_sizes(server: CorralServer) -> list[int]:
    assert server.proc is not None
    folder = f"/proc/{server.proc.pid}/fd"
    sizes = []
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            if "/corral-spool-" in os.readlink(f"{folder}/{name}"):
                sizes.append(os.stat(f"{folder}/{name}").st_size)
    return sizes


def test_spills_stay_within_response_spill_total(tmp_path: Path) -> None:
    """Past response_spill_total the application is paused instead (back-pressure): the file
    stops growing near the bound, and the slow reader still gets every byte."""
    site = php_app(tmp_path)
    bound = 2 * 1024 * 1024
    with serving(site, *two_workers("--set", f"response_spill_total={bound}")) as server:
        results: list[object] = []
        reader = threading.Thread(target=slow_read, args=(server, 3.0, results))
        reader.start()
        assert wait_for(lambda: bool(spill_sizes(server)))
        time.sleep(1.0)  # the application would have written all 16 MiB by now
        sizes = spill_sizes(server)
        reader.join(60)
        # (one backend read may land past the bound before the pause)
        assert sizes and max(sizes) <= bound + 1024 * 1024, sizes
        assert results == [(200, BIG, BIG_MD5)], results
