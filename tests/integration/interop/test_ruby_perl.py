"""Ruby and Perl end to end: `corral serve` runs examples/rack (Rack: rackup, and puma) and
examples/psgi (PSGI: plackup over HTTP, and over FastCGI on Corral's fd-0 socket) with Debian's
interpreters and servers, as installed by .ci/run. Each serves a page, its request variables and
a request body; a backend killed from outside costs nothing but its restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.harness import WAIT, CorralServer, Response, request

from conftest import require_program
from ports import Lease, engine_ports_toml, ports

__all__ = ["ports"]  # the port-lease fixture

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example(name: str, root: Path, taken: Lease, engine: str | None = None) -> Path:
    """A copy of examples/NAME, run by `engine` instead of the one its corral.toml names, its
    workers on the ports of `taken` (no other test's backend can answer in their place)."""
    site = Path(os.path.realpath(root)) / name
    shutil.copytree(EXAMPLES / name, site)
    toml = site / "corral.toml"
    text = toml.read_text()
    lines = [line for line in text.splitlines() if line.startswith("engine = ")]
    assert len(lines) == 1, text
    if engine is not None:
        text = text.replace(lines[0], f'engine = "{engine}"')
    else:
        engine = lines[0].split('"')[1]
    toml.write_text(text + engine_ports_toml([engine], taken))
    return site


@contextlib.contextmanager
def serving(site: Path) -> Iterator[CorralServer]:
    server = CorralServer(site, args=("--no-access-log",))
    try:
        server.start(wait_ready=False)
        yield server
    finally:
        server.stop()


def fields(response: Response, separator: str) -> dict[str, str]:
    assert response.status == 200, (response.status, response.body[:2000])
    text = response.body.decode()
    return dict(line.split(separator, 1) for line in text.splitlines() if separator in line)


def env_of(server: CorralServer, path: str, body: bytes = b"") -> dict[str, str]:
    """The request variables the example app reports (Rack: JSON, PSGI: NAME=value lines)."""
    method = "POST" if body else "GET"
    response = request(server.port, method=method, path=path, body=body)
    if path.startswith("/env.json"):
        import json

        assert response.status == 200, (response.status, response.body[:2000])
        return {
            key: "" if value is None else str(value)
            for key, value in json.loads(response.body).items()
        }
    return fields(response, "=")


def check_app(server: CorralServer, greeting: bytes, env_path: str, env_name: str) -> None:
    hello = request(server.port, path="/")
    assert hello.status == 200 and hello.body.startswith(greeting), (hello, server.text())
    seen = env_of(server, f"{env_path}?a=1&b=two")
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["SCRIPT_NAME"] == ""
    assert seen["PATH_INFO"] == env_path
    assert seen["QUERY_STRING"] == "a=1&b=two"
    assert seen["body_bytes"] == "0"
    assert_own_backend(server, int(seen["pid"]))
    assert seen[env_name] in ("production", "deployment")
    body = os.urandom(200_000)
    posted = env_of(server, env_path, body=body)
    assert posted["REQUEST_METHOD"] == "POST"
    assert posted["body_bytes"] == str(len(body))


def assert_own_backend(server: CorralServer, pid: int) -> None:
    """The process that answered is one this server started (not another test's backend)."""
    assert server.proc is not None
    ours = psutil.Process(server.proc.pid).children(recursive=True)
    assert pid in {child.pid for child in ours}, (pid, server.text())


def check_restart_after_kill(server: CorralServer, env_path: str) -> None:
    """Killing the backend from outside: the next requests start a new one."""
    before = int(env_of(server, env_path)["pid"])
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while True:
        response = request(server.port, path=env_path)
        if response.status == 200:
            break
        # Only the request that raced the kill may fail.
        assert response.status in (502, 503), (response.status, server.text())
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.1)
    after = int(env_of(server, env_path)["pid"])
    assert after != before
    assert_own_backend(server, after)


# -- Perl / PSGI ---------------------------------------------------------------------------------


def test_psgi_over_fastcgi_on_corrals_socket(tmp_path: Path, ports: Lease) -> None:
    require_program("perl")
    require_program("plackup")
    with serving(example("psgi", tmp_path, ports, engine="perl.psgi.fastcgi")) as server:
        check_app(server, b"Hello from PSGI on Perl", "/env.txt", "PLACK_ENV")
        check_restart_after_kill(server, "/env.txt")


def test_psgi_over_http_with_plackup(tmp_path: Path, ports: Lease) -> None:
    require_program("perl")
    require_program("plackup")
    with serving(example("psgi", tmp_path, ports)) as server:
        check_app(server, b"Hello from PSGI on Perl", "/env.txt", "PLACK_ENV")
        assert env_of(server, "/env.txt")["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
        check_restart_after_kill(server, "/env.txt")


# -- Ruby / Rack ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "server_program"), [("ruby.rack", "rackup"), ("ruby.puma", "puma")]
)
def test_rack_over_http(tmp_path: Path, ports: Lease, engine: str, server_program: str) -> None:
    require_program("ruby")
    require_program(server_program)
    require_program("puma")  # rackup serves with puma (Debian's ruby has no WEBrick)
    with serving(example("rack", tmp_path, ports, engine=engine)) as server:
        check_app(server, b"Hello from Rack on Ruby", "/env.json", "RACK_ENV")
        assert env_of(server, "/env.json")["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
        check_restart_after_kill(server, "/env.json")


def test_puma_on_a_private_unix_socket(tmp_path: Path) -> None:
    """puma with the engine's transport "unix" (docs/engines.md's example): it binds the path
    Corral gives it (`-b unix://%SOCKET%`), nothing of it listens on TCP, and a killed puma
    is replaced by one on a socket of its own."""
    require_program("ruby")
    require_program("puma")
    site = Path(os.path.realpath(tmp_path)) / "rack"
    shutil.copytree(EXAMPLES / "rack", site)
    toml = site / "corral.toml"
    text = toml.read_text()
    [line] = [line for line in text.splitlines() if line.startswith("engine = ")]
    toml.write_text(
        text.replace(line, 'engine = "ruby.puma"')
        + '\n[engines."ruby.puma"]\ntransport = "unix"\n'
        + 'arguments = \'-b "unix://%SOCKET%" --environment %RACK_ENV% "%RACK_CONFIG%"\'\n'
    )
    with serving(site) as server:
        check_app(server, b"Hello from Rack on Ruby", "/env.json", "RACK_ENV")
        pid = int(env_of(server, "/env.json")["pid"])
        line = server.wait_log(r"started worker pid \d+ on /")
        path = line.rsplit(" on ", 1)[1].split()[0]
        assert path.endswith(".sock") and os.path.exists(path), line
        tree = psutil.Process(pid)
        listening = [
            conn
            for proc in (tree, *tree.children(recursive=True))
            for conn in proc.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]
        assert listening == []
        check_restart_after_kill(server, "/env.json")
