"""systemd, end to end through a real `corral serve`: the notifications a service manager gets
(a real Unix datagram socket as NOTIFY_SOCKET) through start, the watchdog, a SIGHUP reload and
SIGTERM; and socket activation by the real `systemd-socket-activate`."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import WAIT, CorralServer, make_site, request

from conftest import require_program
from ports import port as leased_port


class Manager:
    """A service manager's notify socket: every datagram received, in order."""

    def __init__(self) -> None:
        # (A short path: sun_path holds 108 bytes at most.)
        self.folder = tempfile.mkdtemp(prefix="corral-sd-", dir="/tmp")
        self.path = os.path.join(self.folder, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._done = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        return [text for _, text in self.messages]

    def wait(self, prefix: str, after: int = 0, timeout: float = WAIT) -> int:
        """The index of the first message from ``after`` on that starts with ``prefix``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, text in enumerate(self.texts()[after:], after):
                if text.startswith(prefix):
                    return index
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} after message {after}: {self.texts()}")

    def close(self) -> None:
        self._done = True
        self._thread.join(2)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.folder)


@pytest.fixture
def manager() -> Iterator[Manager]:
    found = Manager()
    yield found
    found.close()


def test_notifications_through_start_watchdog_reload_and_stop(
    tmp_path: Path, manager: Manager
) -> None:
    site = make_site(tmp_path)
    server = CorralServer(
        site,
        args=("--no-access-log",),
        env={"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "300000"},
    )
    server.start()
    try:
        ready = manager.wait("READY=1")
        assert manager.texts()[:ready] == ["STATUS=starting"]
        assert manager.texts()[ready] == (
            f"READY=1\nSTATUS=serving 1 application on 127.0.0.1:{server.port}"
        )
        # The watchdog: WATCHDOG=1 every half WATCHDOG_USEC while the loop turns.
        time.sleep(1.5)
        pings = [at for at, text in manager.messages if text == "WATCHDOG=1"]
        assert len(pings) >= 3, manager.texts()
        assert all(b - a > 0.1 for a, b in itertools.pairwise(pings)), pings
        # The workers do not inherit systemd's variables.
        worker_env = json.loads(request(server.port, path="/env").body)
        assert "NOTIFY_SOCKET" not in worker_env and "WATCHDOG_USEC" not in worker_env
        # SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 again.
        count = len(manager.messages)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        server.signal(signal.SIGHUP)
        reloading = manager.wait("RELOADING=1", count)
        lines = manager.texts()[reloading].split("\n")
        assert lines[0] == "RELOADING=1"
        stamp = int(lines[1].removeprefix("MONOTONIC_USEC="))
        assert before <= stamp <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert lines[2] == "STATUS=reloading the configuration (SIGHUP)"
        again = manager.wait("READY=1", reloading)
        assert manager.texts()[again].startswith("READY=1\nSTATUS=serving 1 application")
        # A reload refused (a broken configuration): READY=1 again, and the status says so.
        count = len(manager.messages)
        (site / "corral.toml").write_text("[apps.main\n")
        server.signal(signal.SIGHUP)
        refused = manager.wait("READY=1", count)
        assert manager.texts()[refused].endswith(
            "; the last reload was refused (configuration errors, see the log)"
        )
        assert request(server.port, path="/hello").status == 200
        # SIGTERM: STOPPING=1, and no watchdog ping once stopped.
        count = len(manager.messages)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        stopping = manager.wait("STOPPING=1", count)
        assert manager.texts()[stopping] == (
            "STOPPING=1\nSTATUS=stopping: finishing requests in flight (up to 30 s)"
        )
        time.sleep(0.5)
        after = [text for text in manager.texts()[stopping:] if text != "WATCHDOG=1"]
        assert after == [manager.texts()[stopping]]
    finally:
        server.stop()


def test_no_watchdog_for_another_process(tmp_path: Path, manager: Manager) -> None:
    server = CorralServer(
        make_site(tmp_path),
        args=("--no-access-log",),
        env={"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"},
    )
    server.start()
    try:
        manager.wait("READY=1")
        time.sleep(0.6)
        assert "WATCHDOG=1" not in manager.texts()
    finally:
        server.stop()


def _activate(
    tmp_path: Path, passed: list[int], bound: int
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """`systemd-socket-activate -l ... corral serve SERVER.TOML`: a server TOML with two sites,
    one on ``passed[0]`` (given as a passed socket), one on ``bound`` (bound as usual); the other
    passed sockets match no binding."""
    program = require_program("systemd-socket-activate")
    site = make_site(tmp_path)
    (site / "corral.toml").write_text(
        '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
    )
    config = tmp_path / "server.toml"
    config.write_text(
        f'[sites.one]\nbindings = ["127.0.0.1:{passed[0]}:"]\n[sites.one.apps."/"]\n'
        'physical_path = "site"\n'
        f'[sites.two]\nbindings = ["127.0.0.1:{bound}:"]\n[sites.two.apps."/"]\n'
        'physical_path = "site"\n'
    )
    names = ":".join(f"sock{i}" for i in range(len(passed)))
    command = [program, *(f"--listen=127.0.0.1:{p}" for p in passed), f"--fdname={names}"]
    command += [sys.executable, "-m", "corral", "serve", str(config), "--no-access-log"]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.append(raw.decode("utf-8", "replace").rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, log


def _wait_line(log: list[str], pattern: str) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in list(log):
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(log))


def test_socket_activation_by_systemd_socket_activate(tmp_path: Path) -> None:
    passed = [leased_port(), leased_port()]
    bound = leased_port()
    proc, log = _activate(tmp_path, passed, bound)
    try:
        _wait_line(log, "Listening on 127.0.0.1")
        # The first connection starts Corral (exec'd in place: LISTEN_PID is its process), which
        # serves it on the socket it was given.
        assert request(passed[0], path="/hello").status == 200
        line = _wait_line(log, "listening on the socket passed by the service manager")
        assert f"127.0.0.1:{passed[0]} (fd 3, name sock0)" in line
        # A passed socket no binding wants: closed, with a warning.
        line = _wait_line(log, "matches no binding: closed")
        assert f"127.0.0.1:{passed[1]} (fd 4, name sock1)" in line
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", passed[1]), timeout=2).close()
        # A binding without a passed socket: bound as usual.
        _wait_line(log, f"serving .* on http://127.0.0.1:{bound}")
        assert request(bound, path="/hello").status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # (Workers have process groups of their own; the host stops them on SIGTERM.)
