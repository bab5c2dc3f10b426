"""Logs and the process, end to end through a real `corral serve`: the access log to a file in
each format (the real client behind a trusted proxy, the application's time), reopened on
SIGUSR1 without losing a line, a reload changing its format, the server log's level, and the
pid file (written once listening, removed at exit, a stale one replaced, a live one refused)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.harness import WAIT, Conn, CorralServer, make_site, request

from ports import port as leased_port

APP_TOML = '[apps.main]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
#: The JSON format's keys (docs/operating.md, "Logs").
JSON_KEYS = {
    "time",
    "client",
    "method",
    "target",
    "protocol",
    "status",
    "bytes",
    "referer",
    "user_agent",
    "host",
    "app",
    "duration",
    "upstream",
}
CORRAL_SERVE = (sys.executable, "-m", "corral", "serve")
CLF_TIME = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


@pytest.fixture
def servers() -> Iterator[list[CorralServer]]:
    started: list[CorralServer] = []
    yield started
    for server in started:
        server.stop()


def _lines(path: Path, count: int, timeout: float = WAIT) -> list[str]:
    """The file's lines once it has ``count`` of them (the access log is written twice a
    second)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path}: {len(lines)} lines, not {count}: {lines}")


def _get(port: int, target: str, headers: bytes = b"") -> None:
    with Conn(port) as conn:
        conn.send(
            b"GET " + target.encode() + b" HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n"
            b"Referer: http://r.test/\r\nUser-Agent: tester/1.0\r\n" + headers + b"\r\n"
        )
        assert conn.response().status == 200


@pytest.mark.parametrize("fmt", ["combined", "extended", "json"])
def test_access_log_to_a_file_in_each_format_with_the_client_behind_a_trusted_proxy(
    tmp_path: Path, servers: list[CorralServer], fmt: str
) -> None:
    site = make_site(tmp_path)
    (site / "logs").mkdir()
    # A relative path is the folder of the file that sets it.
    (site / "corral.toml").write_text(
        "[server]\n"
        'access_log = "logs/access.log"\n'
        f'access_log_format = "{fmt}"\n'
        'trusted_proxies = ["127.0.0.1"]\n\n' + APP_TOML
    )
    server = CorralServer(site).start()  # (its own GET /hello is line 1)
    servers.append(server)
    _get(server.port, "/hello?a=1")
    _get(server.port, "/sleep?0.3", b"X-Forwarded-For: 198.51.100.9, 203.0.113.7\r\n")
    log = site / "logs" / "access.log"
    first, direct, proxied = _lines(log, 3)
    # Nothing of it on stderr.
    assert not any("/sleep?0.3" in line for line in server.log)
    if fmt == "json":
        records = [json.loads(line) for line in (first, direct, proxied)]
        for record in records:
            assert set(record) == JSON_KEYS
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", record["time"])
            assert record["app"] == "default:/:main"
            assert record["protocol"] == "HTTP/1.1"
            assert 0 < record["upstream"] <= record["duration"]
        assert records[1]["client"] == "127.0.0.1"
        assert records[1]["target"] == "/hello?a=1"
        assert records[1]["host"] == "app.test"
        assert records[1]["status"] == 200 and records[1]["bytes"] == 14
        assert records[1]["referer"] == "http://r.test/"
        assert records[1]["user_agent"] == "tester/1.0"
        # The client the trusted proxy names (the nearest untrusted address in the chain).
        assert records[2]["client"] == "203.0.113.7"
        assert records[2]["upstream"] >= 0.3
        return
    request_part = r' - - {t} "GET {target} HTTP/1\.1" 200 {size} "http://r\.test/" "tester/1\.0"'
    tail = (
        r' "app\.test" "default:/:main" (\d+\.\d{{6}}) (\d+\.\d{{6}})' if fmt == "extended" else ""
    )
    pattern = "{client}" + request_part + tail
    direct_match = re.fullmatch(
        pattern.format(client=r"127\.0\.0\.1", t=CLF_TIME, target=r"/hello\?a=1", size=14),
        direct,
    )
    proxied_match = re.fullmatch(
        pattern.format(client=r"203\.0\.113\.7", t=CLF_TIME, target=r"/sleep\?0\.3", size=6),
        proxied,
    )
    assert direct_match, direct
    assert proxied_match, proxied
    if fmt == "extended":
        duration, upstream = (float(x) for x in proxied_match.groups())
        assert 0.3 <= upstream <= duration


def test_sigusr1_reopens_the_access_log_and_no_line_is_lost(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    log = tmp_path / "access.log"
    server = CorralServer(make_site(tmp_path), args=("--access-log", str(log))).start()
    servers.append(server)
    for i in range(20):
        request(server.port, path=f"/hello?before={i}")
    # logrotate: rename, then SIGUSR1 (lines still buffered go to the renamed file).
    rotated = tmp_path / "access.log.1"
    log.rename(rotated)
    server.signal(signal.SIGUSR1)
    server.wait_log(f"access log reopened: {re.escape(str(log))}")
    for i in range(20):
        request(server.port, path=f"/hello?after={i}")
    new = _lines(log, 20)
    old = rotated.read_text().splitlines()
    assert len(old) == 21  # the harness's first GET /hello, then the 20 before the rotation
    assert all("?before=" in line for line in old[1:])
    assert [line.split('"')[1] for line in new] == [
        f"GET /hello?after={i} HTTP/1.1" for i in range(20)
    ]


def test_a_reload_changes_the_access_log_format(
    tmp_path: Path, servers: list[CorralServer]
) -> None:
    site = make_site(tmp_path)
    config = site / "corral.toml"
    config.write_text('[server]\naccess_log = "access.log"\n\n' + APP_TOML)
    server = CorralServer(site).start()
    servers.append(server)
    config.write_text(
        '[server]\naccess_log = "access.log"\naccess_log_format = "json"\n\n' + APP_TOML
    )
    server.signal(signal.SIGHUP)
    server.wait_log("configuration reloaded")
    request(server.port, path="/hello?json")
    lines = _lines(site / "access.log", 2)
    assert lines[0].startswith("127.0.0.1 - - [")
    assert json.loads(lines[-1])["target"] == "/hello?json"


def _start_quiet(site: Path, port: int, *args: str) -> subprocess.Popen[str]:
    """`corral serve` on ``port``, its output kept (the harness's CorralServer waits for an
    INFO line that a higher log level hides)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral",
            "serve",
            str(site),
            "--listen",
            f"127.0.0.1:{port}",
            *list(args),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> str:
    """The pid file's text once it names ``proc``."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == f"{proc.pid}\n":
            return path.read_text()
        if proc.poll() is not None:
            raise AssertionError(f"corral exited {proc.returncode}: {proc.communicate()[0]}")
        time.sleep(0.05)
    raise AssertionError(f"{path} does not name {proc.pid}")


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_log_level_and_pid_file(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    pid_file = tmp_path / "run" / "corral.pid"
    pid_file.parent.mkdir()
    port = leased_port()
    proc = _start_quiet(site, port, "--log-level", "warning", "--pid-file", str(pid_file))
    try:
        # Written once it listens: a request succeeds as soon as it is there.
        assert _wait_for(pid_file, proc) == f"{proc.pid}\n"
        assert request(port, path="/hello").status == 200
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=WAIT)[0]
        assert proc.returncode == 0
    finally:
        _kill(proc)
    assert not pid_file.exists()  # removed at exit
    # At "warning", no INFO line ("serving ...", "stopping ..."); the access log is on.
    assert " INFO " not in output, output
    assert '"GET /hello HTTP/1.1" 200 14' in output


def test_a_stale_pid_file_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    pid_file = tmp_path / "corral.pid"
    # Stale: a live process that is not Corral (its id reused).
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    pid_file.write_text(f"{other.pid}\n")
    port = leased_port()
    first = _start_quiet(site, port, "--no-access-log", "--pid-file", str(pid_file))
    try:
        assert _wait_for(pid_file, first) == f"{first.pid}\n"
        # Live: another Corral on the same pid file is a clear startup error.
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "corral",
                "serve",
                str(site),
                "--listen",
                "127.0.0.1:0",
                "--pid-file",
                str(pid_file),
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
        assert second.returncode == 2, second.stderr
        assert f"Corral is already running as process {first.pid}" in second.stderr
        assert pid_file.read_text() == f"{first.pid}\n"
        assert request(port, path="/hello").status == 200
    finally:
        _kill(first)
        other.kill()
        other.wait()
    # A process that has gone: replaced too.
    pid_file.write_text(f"{first.pid}\n")
    third = _start_quiet(site, port, "--no-access-log", "--pid-file", str(pid_file))
    try:
        assert _wait_for(pid_file, third) == f"{third.pid}\n"
    finally:
        _kill(third)


def test_access_log_file_that_cannot_be_opened_is_a_startup_error(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    missing = tmp_path / "no-such-folder" / "access.log"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "corral",
            "serve",
            str(site),
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert f"cannot open the access log {missing}" in result.stderr
