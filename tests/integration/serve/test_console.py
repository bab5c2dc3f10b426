"""The web console (CONSOLE_URL) end to end: a real `corral serve`, a WebSocket client, the shell's
processes, the admin token, the switchboard, and Chromium typing into the page.
"""

from __future__ import annotations

import contextlib
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from socket import SO_LINGER, SOL_SOCKET

import psutil  # type: ignore[import-untyped]
import pytest
from tests.harness import CorralServer, request
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

TOKEN = "console-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 20.0

APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app: " + environ.get("PATH_INFO", "").encode()]
"""


def web_config(variables: dict[str, str], switchboard: str = "") -> str:
    adds = "".join(f'<add name="{name}" value="{value}"/>' for name, value in variables.items())
    return (
        "<configuration><system.webServer>"
        f"{switchboard}"
        f'<heliconZoo><application name="app"><environmentVariables>{adds}'
        "</environmentVariables></application></heliconZoo>"
        '<handlers><add name="app" scriptProcessor="python" path="*" verb="*" '
        'modules="HeliconZoo_x64"/></handlers>'
        "</system.webServer></configuration>"
    )


def make_venv(where: Path) -> Path:
    """A virtualenv (no pip: quick) of this interpreter's Python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120
    )
    return where


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("console-venv") / "venv")


def make_site(root: Path, venv: Path, **variables: str) -> Path:
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "wsgi.py").write_text(APP)
    settings = {
        "WSGI_APP": "wsgi.application",
        "VIRTUAL_ENV": str(venv),
        "CONSOLE_URL": "/console",
        "CONSOLE_MARK": "from-the-app",
        **variables,
    }
    (site / "web.config").write_text(web_config(settings))
    return site


@contextlib.contextmanager
def console_server(
    root: Path, venv: Path, *, env: dict[str, str] | None = None, **variables: str
) -> Iterator[CorralServer]:
    site = make_site(root, venv, **variables)
    server = CorralServer(
        site,
        args=("--no-access-log",),
        env={"CORRAL_ADMIN_TOKEN": TOKEN, **(env or {})},
    )
    server.start(wait_ready=False)
    try:
        yield server
    finally:
        server.stop()


def open_console(
    server: CorralServer, headers: dict[str, str] | None = None, path: str = "/console/ws"
) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{server.port}{path}",
        additional_headers=AUTH if headers is None else headers,
        open_timeout=WAIT,
        max_size=None,
    )


def read_until(socket: ClientConnection, pattern: str, timeout: float = WAIT) -> str:
    """The console's output until ``pattern`` (a regex) appears in it."""
    seen = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {pattern!r} in the console's output:\n{seen}")
        try:
            message = socket.recv(timeout=left)
        except TimeoutError:
            continue
        seen += message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return seen


def run(socket: ClientConnection, command: str, marker: str) -> str:
    """Type ``command`` and return the output up to ``marker``'s line."""
    socket.send(f"{command}\r".encode())
    return read_until(socket, marker)


def wait_gone(pid: int, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_the_console_runs_a_shell_in_the_apps_virtualenv_environment_and_folder(
    tmp_path: Path, venv: Path
) -> None:
    with console_server(tmp_path, venv, ERROR_LOG_DIR="logs") as server:
        with open_console(server) as socket:
            socket.send('{"resize": [132, 40]}')
            out = run(
                socket,
                "python -c 'import sys; print(\"PREFIX=\" + sys.prefix)'; echo CWD=$(pwd) "
                "MARK=$CONSOLE_MARK VENV=$VIRTUAL_ENV SIZE=$(stty size) TERM=$TERM; echo DO\\NE",
                r"DONE\r?\n",
            )
            assert f"PREFIX={venv}" in out, out
            assert f"CWD={tmp_path / 'site'}" in out, out
            assert "MARK=from-the-app" in out, out
            assert f"VENV={venv}" in out, out
            assert "SIZE=40 132" in out, out
            assert "TERM=xterm-256color" in out, out
            # The session is in the app's log, with the client's address.
            server.wait_log(r"console session of 127\.0\.0\.1 started: .* \(pid \d+\) in ")
        server.wait_log(r"console session of 127\.0\.0\.1 ended after \d+ s")
        # ... and in its ERROR_LOG_DIR file (written by a thread: soon).
        log = tmp_path / "site" / "logs" / "default_app.log"
        deadline = time.monotonic() + WAIT
        while "console session of 127.0.0.1 ended" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, sorted(log.parent.glob("*"))
            time.sleep(0.1)
        assert "console session of 127.0.0.1 started" in log.read_text()
        # The application itself still answers its own URLs.
        assert request(server.port, path="/consolex").body == b"the app: /consolex"


def test_the_venv_stays_first_on_path_after_the_users_bashrc(tmp_path: Path, venv: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text('PATH=/usr/bin:"$PATH"; export PATH; BASHRC_RAN=yes\n')
    with (
        console_server(tmp_path, venv, env={"HOME": str(home)}) as server,
        open_console(server) as socket,
    ):
        out = run(socket, "echo RC=$BASHRC_RAN; command -v python; echo DO\\NE", r"DONE\r?\n")
        if "RC=yes" not in out:
            pytest.skip(f"the login shell is not bash: {out}")
        assert f"{venv}/bin/python" in out, out


def test_without_the_token_everything_is_403_even_from_loopback(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv) as server:
        for path in ("/console", "/console/", "/console/assets/xterm.js", "/console/ws"):
            assert request(server.port, path=path).status == 403, path
        wrong = "Authorization: Bearer not-the-token-at-all\r\n"
        assert request(server.port, path="/console", headers=wrong).status == 403
        assert request(server.port, path="/console?token=nope").status == 403
        with pytest.raises(InvalidStatus) as refused:
            open_console(server, headers={})
        assert refused.value.response.status_code == 403
        # With it: the page, its files, and a login that sets a cookie for the console only.
        page = request(server.port, path="/console", headers=f"Authorization: Bearer {TOKEN}\r\n")
        assert page.status == 200 and b"/console/assets/xterm.js" in page.body
        login = request(server.port, path=f"/console/?token={TOKEN}&x=1")
        assert login.status == 303 and login.header("Location") == "/console/?x=1"
        cookie = login.header("Set-Cookie") or ""
        assert "Path=/console;" in cookie and "HttpOnly" in cookie, cookie
        value = cookie.split(";", 1)[0]
        asset = request(
            server.port, path="/console/assets/xterm.js", headers=f"Cookie: {value}\r\n"
        )
        assert asset.status == 200 and b"Terminal" in asset.body


def test_a_cross_origin_handshake_is_refused(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv) as server:
        with pytest.raises(InvalidStatus) as refused:
            open_console(server, headers={**AUTH, "Origin": "http://evil.example"})
        assert refused.value.response.status_code == 403
        same = {**AUTH, "Origin": f"http://127.0.0.1:{server.port}"}
        with connect(
            f"ws://127.0.0.1:{server.port}/console/ws",
            additional_headers=same,
            open_timeout=WAIT,
            origin=None,
        ) as socket:
            assert "ORIGIN-OK" in run(socket, "echo ORIGIN-\\OK", r"ORIGIN-OK")
        server.wait_log(r"foreign Origin 'http://evil\.example': 403")


def test_a_closed_socket_kills_the_shells_processes(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv) as server:
        with contextlib.suppress(ConnectionClosed, OSError), open_console(server) as socket:
            out = run(socket, "sleep 1000 & echo SHELL=$$ CHILD=$!", r"SHELL=\d+ CHILD=\d+")
            # The connection drops (a reset), without a close frame.
            socket.socket.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.close()
        match = re.search(r"SHELL=(\d+) CHILD=(\d+)", out)
        assert match is not None, out
        shell, child = int(match.group(1)), int(match.group(2))
        assert wait_gone(shell), f"the shell {shell} outlived its console"
        assert wait_gone(child), f"the shell's job {child} outlived its console"
        server.wait_log(r"console session of 127\.0\.0\.1 ended after .*: the connection closed")


def test_an_idle_console_is_closed_and_its_shell_killed(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv, CONSOLE_IDLE_TIMEOUT="1.5") as server:
        with open_console(server) as socket:
            out = run(socket, "echo SHELL=$$", r"SHELL=\d+")
            match = re.search(r"SHELL=(\d+)", out)
            assert match is not None
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while time.monotonic() - started < WAIT:
                    socket.recv(timeout=WAIT)
            assert closed.value.rcvd is not None and "idle for 1.5 s" in closed.value.rcvd.reason
            assert time.monotonic() - started < 10
        assert wait_gone(int(match.group(1)))
        server.wait_log(r"ended after \d+ s: idle for 1\.5 s")


def test_the_shell_exiting_closes_the_socket_with_its_status(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv) as server, open_console(server) as socket:
        socket.send(b"exit 3\r")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=WAIT)
        assert closed.value.rcvd is not None
        assert "exited with status 3" in closed.value.rcvd.reason


def test_the_switchboard_can_refuse_the_console(tmp_path: Path, venv: Path) -> None:
    site = make_site(tmp_path, venv)
    (tmp_path / "server.toml").write_text(
        f'[sites.main]\nbindings = ["127.0.0.1:0"]\nswitchboard = {{"console" = false}}\n'
        f'[sites.main.apps."/"]\nphysical_path = "{site}"\n'
    )
    server = CorralServer(
        tmp_path / "server.toml",
        args=("--no-access-log",),
        env={"CORRAL_ADMIN_TOKEN": TOKEN},
    )
    server.start(wait_ready=False)
    try:
        answer = request(server.port, path="/console", headers=f"Authorization: Bearer {TOKEN}\r\n")
        assert answer.status == 403 and b"switchboard" in answer.body
        with pytest.raises(InvalidStatus) as refused:
            open_console(server)
        assert refused.value.response.status_code == 403
    finally:
        server.stop()


def test_no_console_url_no_console(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv, CONSOLE_URL="") as server:
        answer = request(server.port, path="/console", headers=f"Authorization: Bearer {TOKEN}\r\n")
        assert answer.status == 200 and answer.body == b"the app: /console"


def test_a_console_below_an_apps_virtual_path(tmp_path: Path, venv: Path) -> None:
    site = make_site(tmp_path, venv, CONSOLE_URL="tools/sh")
    (tmp_path / "server.toml").write_text(
        '[sites.main]\nbindings = ["127.0.0.1:0"]\n'
        f'[sites.main.apps."/blog"]\nphysical_path = "{site}"\n'
    )
    server = CorralServer(
        tmp_path / "server.toml", args=("--no-access-log",), env={"CORRAL_ADMIN_TOKEN": TOKEN}
    )
    server.start(wait_ready=False)
    try:
        page = request(
            server.port, path="/blog/tools/sh", headers=f"Authorization: Bearer {TOKEN}\r\n"
        )
        assert page.status == 200 and b'data-socket="/blog/tools/sh/ws"' in page.body
        with open_console(server, path="/blog/tools/sh/ws") as socket:
            assert "PWD-OK" in run(socket, "echo PWD-\\OK", "PWD-OK")
        assert request(server.port, path="/blog/tools").body == b"the app: /tools"
    finally:
        server.stop()


#: The terminal's text in the page (xterm.js's buffer).
SCREEN = """(() => {
  const buffer = window.corralTerminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
})()"""


def test_chromium_types_into_the_console_page_and_reads_the_output(
    tmp_path: Path, venv: Path
) -> None:
    """The page as a browser runs it: the ?token= login (cookie), xterm.js from the package, the
    WebSocket with the page's own Origin, keystrokes in, output on the screen."""
    from tests.cdp import Browser

    with console_server(tmp_path, venv) as server:
        with Browser(f"http://127.0.0.1:{server.port}/console?token={TOKEN}") as page:
            page.wait_for("document.getElementById('state').textContent === 'connected'")
            assert page.evaluate("location.search") == ""  # the token left the address bar
            page.wait_for(f"{SCREEN}.includes('(app) ')")  # the prompt
            page.call(
                "Input.insertText",
                text='python -c \'import sys; print("PRE" + "FIX=" + sys.prefix)\'',
            )
            page.call(
                "Input.dispatchKeyEvent",
                type="keyDown",
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                text="\r",
            )
            page.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter")
            screen = page.wait_for(f"{SCREEN}.includes('PREFIX={venv}') && {SCREEN}")
            assert isinstance(screen, str) and f"PREFIX={venv}" in screen
            shot = page.screenshot(tmp_path / "console.png", width=1000, height=500)
            assert shot.stat().st_size > 5000
        server.wait_log(r"console session of 127\.0\.0\.1 ended after")


def test_a_client_that_does_not_read_stops_the_shell_not_corrals_memory(
    tmp_path: Path, venv: Path
) -> None:
    """Back-pressure: 300 MB of output to a client that reads nothing for a while leave
    Corral's memory as it was (the PTY is not read while the client is slow), and the output
    is all there once the client reads."""
    with console_server(tmp_path, venv) as server:
        assert server.proc is not None
        host = psutil.Process(server.proc.pid)
        with open_console(server) as socket:
            run(socket, "stty -echo; echo RE\\ADY", r"READY")
            before = host.memory_info().rss
            socket.send(b"head -c 300000000 /dev/zero | tr '\\0' x; echo; echo FINI\\SHED\r")
            time.sleep(3)
            grown = host.memory_info().rss - before
            assert grown < 40 * 1024 * 1024, f"Corral grew by {grown} bytes"
            received = 0
            tail = ""
            deadline = time.monotonic() + 120
            while "FINISHED" not in tail and time.monotonic() < deadline:
                message = socket.recv(timeout=30)
                assert isinstance(message, bytes)
                received += message.count(b"x")
                tail = (tail + message[-64:].decode("latin-1"))[-128:]
            assert received == 300_000_000 and "FINISHED" in tail


def test_a_reload_moves_the_console_and_an_open_session_goes_on(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv) as server, open_console(server) as socket:
        assert "BEFORE" in run(socket, "echo BEF\\ORE", "BEFORE")
        site = tmp_path / "site"
        settings = {"WSGI_APP": "wsgi.application", "VIRTUAL_ENV": str(venv)}
        (site / "web.config").write_text(web_config({**settings, "CONSOLE_URL": "shell"}))
        server.signal(signal.SIGHUP)
        server.wait_log(r"configuration reloaded: 1 changed")
        auth = f"Authorization: Bearer {TOKEN}\r\n"
        assert request(server.port, path="/console", headers=auth).body == b"the app: /console"
        assert request(server.port, path="/shell", headers=auth).status == 200
        assert "AFTER" in run(socket, "echo AF\\TER", "AFTER")  # (the session is untouched)


class _Collect:
    """A ShellPeer that keeps what the shell writes."""

    def __init__(self) -> None:
        self.seen = b""
        self.why: str | None = None

    def output(self, data: bytes) -> None:
        self.seen += data

    def pause_input(self) -> None:
        return None

    def resume_input(self) -> None:
        return None

    def ended(self, why: str) -> None:
        self.why = why


@pytest.mark.parametrize("program", ["bash", "dash"])
def test_bash_and_posix_shells_put_the_venv_first_again_after_their_startup_files(
    tmp_path: Path, program: str
) -> None:
    """The start-up script of ``console.shell`` through a real PTY: bash's ~/.bashrc and dash's
    $ENV file both put /usr/bin first; the console's script runs after them."""
    import asyncio

    from tests.conftest import require_program

    from corral.console.session import ShellSession
    from corral.console.shell import shell_plan

    shell = require_program(program)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text('PATH=/usr/bin:"$PATH"; export PATH; STARTUP=ran\n')
    (home / ".shrc").write_text('PATH=/usr/bin:"$PATH"; export PATH; STARTUP=ran\n')
    venv = tmp_path / "venv"
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "ENV": str(home / ".shrc"),
    }

    async def session() -> str:
        peer = _Collect()
        started = await ShellSession.start(
            lambda fd: shell_plan(
                env, str(tmp_path), interpreter="", name="demo", shell=shell, rc_fd=fd
            ),
            peer,
            30.0,
        )
        started.write(b'echo "S=$STARTUP P=$PATH E=${ENV:-unset}"; exit 0\n')
        await asyncio.wait_for(started.proc.wait(), WAIT)
        for _ in range(100):  # the session's end (its reaper task) follows the exit
            if peer.why is not None:
                break
            await asyncio.sleep(0.05)
        assert peer.why == "the shell exited with status 0", peer.why
        return peer.seen.decode("utf-8", "replace")

    out = asyncio.run(session())
    assert f"S=ran P={venv}/bin:/usr/bin" in out, out
    assert "(demo) " in out, out  # the prompt names the application
    if program == "dash":  # (restored for the shells started from the console)
        assert f"E={home / '.shrc'}" in out, out


def test_stopping_corral_ends_open_sessions_and_their_shells(tmp_path: Path, venv: Path) -> None:
    with console_server(tmp_path, venv) as server, open_console(server) as socket:
        out = run(socket, "echo SHELL=$$", r"SHELL=\d+")
        match = re.search(r"SHELL=(\d+)", out)
        assert match is not None
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert wait_gone(int(match.group(1)), 5.0)
        with pytest.raises(ConnectionClosed):
            while True:
                socket.recv(timeout=WAIT)
