"""`front_processes = 2` (issue 16, "The front across cores"), through a real `corral serve`:
two front processes accept on the same socket and lease the same workers from one supervisor;
the worker count stays within max_instances; status sees the whole host; a killed front is
replaced without touching the other one or the workers; reload and rolling restart under load
drop nothing."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.harness import WAIT, Conn, CorralServer, make_site, request, run_corral
from tests.loadgen import Load

#: /work holds its worker 20 ms and answers its pid; /pid answers at once.
APP = textwrap.dedent(
    """
    import os, time

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/work":
            time.sleep(0.02)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    """
)


@pytest.fixture
def control() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="crf-"))
    yield folder / "c.sock"
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()


def start(tmp_path: Path, control: Path, *args: str) -> CorralServer:
    server = CorralServer(
        make_site(tmp_path, APP),
        args=("--no-access-log", "--front-processes", "2", "--control", str(control), *args),
    )
    return server.start()


def fronts(server: CorralServer) -> list[int]:
    """The front processes' pids (the supervisor's children running corral.frontproc)."""
    assert server.proc is not None
    found = []
    for child in psutil.Process(server.proc.pid).children():
        try:
            if "corral.frontproc" in child.cmdline():
                found.append(child.pid)
        except psutil.Error:
            continue
    return sorted(found)


def workers(server: CorralServer) -> list[int]:
    front = set(fronts(server))
    return sorted(p.pid for p in server.workers() if p.pid not in front)


def status(control: Path) -> dict[str, object]:
    result = run_corral("status", "--json", "--control", str(control))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def accepted(port: int, candidates: list[int]) -> dict[int, int]:
    """Client port -> the front process holding the server side of that connection."""
    found: dict[int, int] = {}
    for pid in candidates:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.laddr and conn.laddr.port == port and conn.raddr:
                    found[conn.raddr.port] = pid
        except psutil.Error:
            continue
    return found


def test_two_fronts_accept_and_share_the_same_workers(tmp_path: Path, control: Path) -> None:
    server = start(tmp_path, control, "--min", "2", "--max", "2")
    try:
        front_pids = fronts(server)
        assert len(front_pids) == 2, server.text()
        # Keep-alive connections, each answered by the front that accepted it.
        conns = [Conn(server.port) for _ in range(24)]
        by_front: dict[int, set[int]] = {pid: set() for pid in front_pids}
        lock = threading.Lock()

        def drive(conn: Conn, front: int) -> None:
            for _ in range(15):
                conn.send(b"GET /work HTTP/1.1\r\nHost: x\r\n\r\n")
                response = conn.response()
                assert response.status == 200
                with lock:
                    by_front[front].add(int(response.body))

        for conn in conns:
            conn.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.response().status == 200
        held = accepted(server.port, front_pids)
        owners = [held[conn.sock.getsockname()[1]] for conn in conns]
        # Both fronts accepted connections.
        assert set(owners) == set(front_pids), owners

        def run(front: int | None) -> None:
            threads = [
                threading.Thread(target=drive, args=(conn, owner))
                for conn, owner in zip(conns, owners, strict=True)
                if front is None or owner == front
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)

        # Each front alone under load uses every worker (the workers are not split between
        # the fronts), then both at once share them.
        for front in front_pids:
            run(front)
        run(None)
        for conn in conns:
            conn.close()
        # One set of workers, used by both fronts: max_instances = 2 whatever the fronts.
        pool = workers(server)
        assert len(pool) == 2, pool
        for front, seen in by_front.items():
            assert seen == set(pool), (front, seen, pool)
        document = status(control)
        front = document["front"]
        assert isinstance(front, dict) and sorted(front["processes"]) == front_pids
        apps = document["apps"]
        assert isinstance(apps, list)
        assert len([w for w in apps[0]["workers"] if w["pid"]]) == 2
    finally:
        server.stop()


def test_the_worker_count_stays_within_max_instances(tmp_path: Path, control: Path) -> None:
    server = start(tmp_path, control, "--min", "1", "--max", "3")
    try:
        seen: set[int] = set()
        most = 0
        with Load(server.port, path="/work", clients=12, pause=0.0) as load:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                most = max(most, len(workers(server)))
                time.sleep(0.1)
        assert load.outcomes and all(o.ok for o in load.outcomes), load.outcomes[:3]
        seen = {int(o.body) for o in load.outcomes}
        assert 1 < len(seen) <= 3, seen
        assert most <= 3
        # Every front's requests are counted in the supervisor's status (totals, once a
        # second).
        total = len(load.outcomes) + 1  # (+ the start's /hello)

        def counted() -> int:
            apps = status(control)["apps"]
            assert isinstance(apps, list)
            return int(apps[0]["requests"]["total"])

        deadline = time.monotonic() + 5
        while counted() < total and time.monotonic() < deadline:
            time.sleep(0.2)
        assert counted() == total
    finally:
        server.stop()


def test_a_killed_front_is_replaced_and_loses_only_its_requests(
    tmp_path: Path, control: Path
) -> None:
    server = start(tmp_path, control, "--min", "2", "--max", "2")
    try:
        before = fronts(server)
        pool = workers(server)
        # A kept-alive connection to each front.
        conns = [Conn(server.port) for _ in range(12)]
        for conn in conns:
            conn.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.response().status == 200
        held = accepted(server.port, before)
        victim = held[conns[0].sock.getsockname()[1]]
        survivors = [c for c in conns if held[c.sock.getsockname()[1]] != victim]
        assert survivors
        with Load(server.port, path="/work", clients=4, pause=0.0) as load:
            time.sleep(1.0)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            # The other front keeps serving meanwhile.
            for conn in survivors:
                conn.send(b"GET /work HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.response().status == 200
            server.wait_log(rf"front \d+ \(pid {victim}\) died \(killed by signal 9\)")
            line = server.wait_log(r"front 3 \(pid \d+\) serving")
            replaced_at = time.monotonic()
            time.sleep(1.0)
        after = fronts(server)
        assert len(after) == 2 and victim not in after, (after, line)
        assert set(after) - {victim} >= set(before) - {victim}  # the other one untouched
        failed = [o for o in load.outcomes if not o.ok]
        # Only the requests in flight on the killed front (at most one per client).
        assert len(failed) <= 4, failed
        assert all(o.started <= killed_at + 0.1 for o in failed), failed
        late = [o for o in load.outcomes if o.started > replaced_at]
        assert late and all(o.ok for o in late), server.text()[-2000:]
        # The workers were not touched.
        assert workers(server) == pool
        for conn in conns:
            conn.close()
    finally:
        server.stop()


def test_reload_and_rolling_restart_under_load_drop_nothing(tmp_path: Path, control: Path) -> None:
    server = start(tmp_path, control, "--min", "2", "--max", "2")
    try:
        old = set(workers(server))
        with Load(server.port, path="/work", clients=6, pause=0.0) as load:
            time.sleep(0.5)
            result = run_corral("reload", "--control", str(control))
            assert result.returncode == 0, result.stderr + server.text()
            time.sleep(0.5)
            result = run_corral("restart", "default", "--control", str(control))
            assert result.returncode == 0, result.stderr + server.text()
            time.sleep(1.0)
        failed = [o for o in load.outcomes if not o.ok]
        assert not failed, (failed[:3], server.text()[-3000:])
        new = set(workers(server))
        assert new and not (new & old), (old, new)
        # The new workers serve both fronts.
        assert int(request(server.port, path="/pid").body) in new
    finally:
        server.stop()


def test_a_tcp_service_through_two_fronts_comes_back_after_a_stop(tmp_path: Path) -> None:
    """Each front balances a ``tcp.service`` over its servers with its own active checks: a
    stopped server costs no request, and gets traffic again once it is back."""
    from tests.integration.nodes.test_service_servers import Backends

    backends = Backends(2)
    try:
        pids = [backends.start(index) for index in range(2)]
        site = tmp_path / "front"
        site.mkdir()
        servers = " ".join(f"127.0.0.1:{number}" for number in backends.ports)
        (site / "corral.toml").write_text(
            '[engines.tier]\ntransport = "tcp.service"\nprotocol = "http"\n'
            f'servers = "{servers}"\nhealth_check = "/pid"\nhealth_interval = 0.3\n'
            "slow_start = 1\nmax_instances = 8\n"
            '[apps.tier]\nengine = "tier"\n'
        )
        server = CorralServer(
            site, args=("--no-access-log", "--front-processes", "2"), listen="127.0.0.1:0"
        ).start(wait_ready=False)
        try:
            with Load(server.port, path="/x", clients=4) as load:
                began = time.monotonic()
                for pid in pids:
                    assert load.wait_for(f"{pid} GET /x", 10, began), server.text()
                backends.stop(1)
                time.sleep(1.0)
                back = backends.start(1)
                back_at = time.monotonic()
                assert load.wait_for(f"{back} GET /x", 10, back_at), server.text()[-2000:]
            assert load.failures() == [], load.failures()[:3]
        finally:
            server.stop()
    finally:
        backends.close()
