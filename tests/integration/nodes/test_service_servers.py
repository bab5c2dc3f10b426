"""A ``tcp.service`` engine over several servers, end to end: a real `corral serve` spreading
requests over three HTTP servers on loopback; one is stopped under load and started again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import WAIT, CorralServer, request, run_corral
from tests.loadgen import Load
from tests.ports import port

BACKEND = Path(__file__).resolve().parents[2] / "apps" / "http_backend.py"


class Backends:
    """Three HTTP servers (tests/apps/http_backend.py) on fixed loopback ports."""

    def __init__(self, count: int) -> None:
        self.ports = [port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count

    def start(self, index: int) -> int:
        proc = subprocess.Popen(
            [sys.executable, str(BACKEND), "127.0.0.1", str(self.ports[index])],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[index] = proc
        deadline = time.monotonic() + WAIT
        while True:
            try:
                request(self.ports[index], path="/pid")
                return proc.pid
            except OSError:
                assert time.monotonic() < deadline, "the HTTP backend did not listen"
                time.sleep(0.05)

    def stop(self, index: int, signum: int = signal.SIGTERM) -> None:
        proc = self.procs[index]
        assert proc is not None
        proc.send_signal(signum)
        proc.wait(WAIT)
        self.procs[index] = None

    def close(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc is not None:
                self.stop(index, signal.SIGKILL)


@pytest.fixture
def backends() -> Iterator[Backends]:
    group = Backends(3)
    try:
        yield group
    finally:
        group.close()


def status(control: Path) -> dict[str, object]:
    result = run_corral("status", "--json", "--control", str(control))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def servers_of(control: Path) -> dict[str, dict[str, object]]:
    (app,) = status(control)["apps"]  # type: ignore[misc]
    return {server["address"]: server for server in app["servers"]}


def test_a_service_spreads_requests_over_servers_and_survives_one_stopping(
    backends: Backends, tmp_path: Path
) -> None:
    pids = [backends.start(index) for index in range(3)]
    site = tmp_path / "front"
    site.mkdir()
    servers = " ".join(f"127.0.0.1:{number}" for number in backends.ports)
    (site / "corral.toml").write_text(
        '[engines.tier]\ntransport = "tcp.service"\nprotocol = "http"\n'
        f'servers = "{servers}"\nhealth_check = "/pid"\nhealth_interval = 0.3\n'
        "slow_start = 1\nmax_instances = 8\n"
        '[apps.tier]\nengine = "tier"\n'
    )
    control = tmp_path / "c.sock"
    front = CorralServer(site, args=("--no-access-log", "--control", str(control))).start()
    try:
        with Load(front.port, path="/x", clients=4) as load:
            began = time.monotonic()
            for pid in pids:  # every server gets requests
                assert load.wait_for(f"{pid} GET /x", 5, began), front.text()
            stopped_at = time.monotonic()
            backends.stop(1)
            time.sleep(1.0)
            after_stop = load.since(stopped_at + 0.05)
            assert after_stop, "no requests while the server was down"
            assert not any(f"{pids[1]} GET".encode() in o.body for o in after_stop)
            shown = servers_of(control)[f"127.0.0.1:{backends.ports[1]}"]
            assert shown["state"] == "down", shown
            assert shown["failures"] >= 1  # type: ignore[operator]
            back = backends.start(1)
            back_at = time.monotonic()
            assert load.wait_for(f"{back} GET /x", 5, back_at), front.text()
            time.sleep(1.5)  # past the slow start: a full share again
            share_from = time.monotonic()
            time.sleep(1.0)
            recent = load.since(share_from)
        served = [o for o in recent if f"{back} GET".encode() in o.body]
        assert len(served) >= len(recent) / 6, (len(served), len(recent))
        # Requests in flight on the stopped server, and those that met its broken connections,
        # were sent to another server: no request failed at all.
        failures = load.failures()
        assert failures == [], failures[:5]
        assert len(load.outcomes) > 200
        shown = servers_of(control)[f"127.0.0.1:{backends.ports[1]}"]
        assert shown["state"] == "up", shown
        screen = run_corral("status", "--control", str(control))
        assert f"127.0.0.1:{backends.ports[1]}" in screen.stdout
        assert "SERVER" in screen.stdout and "FAILURES" in screen.stdout
    finally:
        front.stop()


def test_with_every_server_down_the_request_is_a_503_naming_them(
    backends: Backends, tmp_path: Path
) -> None:
    backends.start(0)
    site = tmp_path / "front"
    site.mkdir()
    servers = f"127.0.0.1:{backends.ports[0]},127.0.0.1:{backends.ports[1]}"
    (site / "corral.toml").write_text(
        '[engines.tier]\ntransport = "tcp.service"\nprotocol = "http"\n'
        f'servers = "{servers}"\nhealth_interval = 30\n'
        '[apps.tier]\nengine = "tier"\n'
    )
    front = CorralServer(site, args=("--no-access-log",)).start()
    try:
        # Without active checks, a refused connection takes the second server out at once and
        # the request goes to the first.
        for _ in range(4):
            assert request(front.port, path="/a").status == 200
        backends.stop(0)
        down = request(front.port, path="/b")
        assert down.status == 503
        assert f"127.0.0.1:{backends.ports[0]}".encode() in down.body
    finally:
        front.stop()
