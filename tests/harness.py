"""Harness for the front's end-to-end tests: `corral serve` in a subprocess, raw-socket clients.

The other front test modules import from here. Every network wait is bounded; every process is
started in its own process group and killed in teardown by that group.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

WAIT = 20.0  # upper bound for any single wait in these tests (seconds)

#: Numbers the control sockets of the servers started here (``CorralServer.own_control``).
_CONTROL_NUMBERS = itertools.count()

_SERVING = re.compile(r"serving .* on https?://(?P<host>[^\s:]+|\[[^\]]+\]):(?P<port>\d+)")


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Conn:
    """A raw client connection with a byte buffer and a tiny HTTP/1.1 response reader."""

    def __init__(self, port: int, timeout: float = WAIT, address: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((address, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buf[:200]!r}")
        index = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:index], self.buf[index:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def response(self, *, head: bool = False) -> Response:
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version.startswith("HTTP/1."), lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        response = Response(int(status), reason[0] if reason else "", headers, b"", raw)
        code = response.status
        if head or code in (204, 304) or 100 <= code < 200:
            return response
        length = response.header("content-length")
        if response.header("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")  # no trailers from Corral
                    break
                body += self.read_exact(size)
                assert self.read_exact(2) == b"\r\n"
            response.body = body
        elif length is not None:
            response.body = self.read_exact(int(length))
        else:
            response.body = self.read_to_eof()
        return response

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def request(
    port: int,
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    headers: str = "",
    *,
    host: str = "localhost",
    address: str = "127.0.0.1",
) -> Response:
    """One request on a fresh connection (Connection: close), to ``address``:``port``."""
    with Conn(port, address=address) as conn:
        extra = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
        conn.send(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}{headers}"
            "\r\n".encode("latin-1")
            + body
        )
        return conn.response(head=method == "HEAD")


def run_corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`corral ARGS` to completion (bounded by WAIT), its output captured as text; ``env`` is
    added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


#: The test application: routes that exercise every path through the front.
APP = textwrap.dedent(
    """
    import os, sys, time, json

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/hello":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
            return [b"Hello, world!\\n"]
        if path.startswith("/env"):
            keys = {k: v for k, v in environ.items() if isinstance(v, str)}
            body = json.dumps(keys, sort_keys=True).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if path == "/echo":
            body = environ["wsgi.input"].read()
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/count":
            # Reads the body in pieces and answers its length and a checksum.
            import hashlib
            digest = hashlib.sha256()
            total = 0
            stream = environ["wsgi.input"]
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    break
                digest.update(chunk)
                total += len(chunk)
            body = f"{total} {digest.hexdigest()}".encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
        if path == "/stream":
            n = int(environ.get("QUERY_STRING") or "10")
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return (bytes([i % 256]) * 65536 for i in range(n))
        if path == "/big":
            n = int(environ.get("QUERY_STRING") or "10")
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(n * 65536))])
            return (bytes([i % 256]) * 65536 for i in range(n))
        if path == "/sleep":
            time.sleep(float(environ.get("QUERY_STRING") or "1"))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"slept\\n"]
        if path == "/gate":
            # Holds the worker until the file named by the query string exists (30 s at most).
            deadline = time.monotonic() + 30
            while not os.path.exists(environ["QUERY_STRING"]) and time.monotonic() < deadline:
                time.sleep(0.01)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"opened\\n"]
        if path == "/pid":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(os.getpid()).encode()]
        if path == "/die":
            os._exit(3)
        if path == "/die-midway":
            def gen():
                yield b"x" * 65536
                sys.stdout.flush()
                os._exit(3)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return gen()
        if path == "/crash":
            raise RuntimeError("the app crashed on purpose")
        if path == "/status":
            code = environ.get("QUERY_STRING") or "204"
            start_response(f"{code} Whatever", [])
            return []
        if path == "/hop":
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Kept", "yes"),
                                      ("Content-Length", "2")])
            return [b"ok"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such route\\n"]
    """
)


@dataclass
class CorralServer:
    """A `corral serve` subprocess on a free port, with its log collected in the background."""

    site: Path | None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    #: How to run Corral (default: this interpreter's ``-m corral``), e.g. an installed script.
    command: tuple[str, ...] = (sys.executable, "-m", "corral")
    cwd: Path | None = None
    #: A control socket of its own (``--control``, a fresh name in the runtime folder), so that
    #: servers of one configuration may run side by side (each with other settings); False:
    #: the default place, named after the configuration (the control socket's own tests).
    own_control: bool = True
    proc: subprocess.Popen[bytes] | None = None
    #: ``--listen`` (every site on that one address); None: the configuration's bindings.
    listen: str | None = "127.0.0.1:0"
    port: int = 0
    log: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start(self, wait_ready: bool = True) -> CorralServer:
        env = dict(os.environ)
        env.update(self.env or {})
        env["PYTHONUNBUFFERED"] = "1"
        site = [] if self.site is None else [str(self.site)]
        control: list[str] = []
        if self.own_control and "--control" not in self.args:
            # The tests' runtime folder (tests/conftest.py): short, as a socket path must be.
            folder = Path(env.get("XDG_RUNTIME_DIR") or "/tmp")
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            number = next(_CONTROL_NUMBERS)
            control = ["--control", str(folder / f"test-{os.getpid()}-{number}.sock")]
        self.proc = subprocess.Popen(
            [
                *self.command,
                "serve",
                *site,
                *(("--listen", self.listen) if self.listen is not None else ()),
                *control,
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                match = _SERVING.search(line)
                if match and not self.port:
                    self.port = int(match.group("port"))
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(WAIT) or not self.port:
            self.stop()
            raise AssertionError("corral serve did not start:\n" + self.text())
        if wait_ready:
            try:
                response = request(self.port, path="/hello")
                assert response.status == 200, self.text()
            except BaseException:
                self.stop()  # never leave a server behind a failed start
                raise
        return self

    def text(self) -> str:
        return "\n".join(self.log)

    def wait_log(self, pattern: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.log):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.text()}")

    def workers(self) -> list[psutil.Process]:
        """The host's workers: its children, and those forked by its templates (preloaded
        workers), never the templates themselves."""
        assert self.proc is not None
        found: list[psutil.Process] = []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            if child.pid in set(self.templates()):
                with contextlib.suppress(psutil.Error):
                    found += child.children(recursive=False)
            else:
                found.append(child)
        return found

    def templates(self) -> list[int]:
        """The pids of the host's templates (``corral template ...`` in ``ps``)."""
        assert self.proc is not None
        pids: list[int] = []
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=False):
                with contextlib.suppress(psutil.Error):
                    if child.cmdline()[:1] and child.cmdline()[0].startswith("corral template"):
                        pids.append(child.pid)
        return pids

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the host's process group and every worker group it started (teardown)."""
        if self.proc is None:
            return
        groups = {self.proc.pid}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, OSError):
                    groups.add(os.getpgid(child.pid))
        if self.proc.poll() is None:
            # SIGINT: as graceful as SIGTERM, without the drain delay of an admin listener.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)


def make_site(root: Path, app: str = APP) -> Path:
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "wsgi.py").write_text(app)
    return site


@contextlib.contextmanager
def serving(
    root: Path, *args: str, app: str = APP, wait_ready: bool = True, **kwargs: object
) -> Iterator[CorralServer]:
    server = CorralServer(make_site(root, app), args=args, **kwargs)  # type: ignore[arg-type]
    try:
        yield server.start(wait_ready=wait_ready)
    finally:
        server.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., CorralServer]]:
    """``serve(path, *args, env=None)`` starts `corral serve PATH --no-access-log *ARGS` (without
    waiting for an application to answer); every server started is stopped at teardown."""
    servers: list[CorralServer] = []

    def start(path: Path, *args: str, env: dict[str, str] | None = None) -> CorralServer:
        server = CorralServer(path, args=("--no-access-log", *args), env=env)
        servers.append(server)
        return server.start(wait_ready=False)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    """One shared server (2 workers) for the tests that do not disturb it."""
    with serving(
        tmp_path_factory.mktemp("front"),
        "--min",
        "2",
        "--max",
        "2",
        "--no-access-log",
        "--set",
        "response_timeout=20",
    ) as server:
        yield server


#: The test applications (WSGI and ASGI apps, backends) that test sites import.
APPS = Path(__file__).resolve().parent / "apps"


def serve_asgi(tmp_path: Path, asgi_app: str, *args: str) -> CorralServer:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    marker = tmp_path / "lifespan.log"
    env = {
        "ASGI_APP": asgi_app,
        "LIFESPAN_MARKER": str(marker),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
    }
    return CorralServer(site, args=("--no-access-log", *args), env=env)
