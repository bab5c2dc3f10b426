"""Sites as files (`[server] include`), end to end: a real `corral serve` of a server file whose
sites live in a folder of site files, changed under load by writing files (the configuration
watcher sees them; no signal is sent).

- Site B's file is added, changed, broken, fixed and removed while clients keep asking site A:
  zero failed requests for A, whose worker is never restarted; B answers with the version its
  file names at each step; a broken file is refused with its file and line in the log and B
  keeps its previous state, while another file's change (site C added) still applies.
- A site file binding a port nothing listens on yet is listened on at once.
- A site folder (include "vhosts/*/") with its own web.config is a site named after its folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.harness import WAIT, CorralServer, request, serve
from tests.ports import port

__all__ = ["serve"]  # the shared server fixture

APP = """import os

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{name}|" + str(os.getpid()).encode()]
"""


def make_app(folder: Path, name: str) -> None:
    folder.mkdir(parents=True)
    (folder / "wsgi.py").write_text(APP.replace("{name}", name))
    (folder / "corral.toml").write_text(
        '[apps.app]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
    )


def site_toml(site: str, folder: str, port: int = 8080) -> str:
    return (
        f'[sites.{site}]\nbindings = ["127.0.0.1:{port}:{site}.test"]\n'
        f'[sites.{site}.apps."/"]\nphysical_path = "../apps/{folder}"\n'
    )


def write(path: Path, text: str) -> None:
    """As an editor saving it would, in one step (a hidden name first: no pattern matches it)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def wait_new(server: CorralServer, seen: int, pattern: str) -> int:
    """Wait for a log line matching ``pattern`` after the first ``seen`` lines; the count of
    lines up to and with it."""
    import re

    regex = re.compile(pattern)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        lines = list(server.log)
        for index in range(seen, len(lines)):
            if regex.search(lines[index]):
                return index + 1
        time.sleep(0.05)
    raise AssertionError(f"no new log line matching {pattern!r}:\n{server.text()}")


def body(port: int, host: str) -> bytes:
    response = request(port, host=host)
    return response.body if response.status == 200 else f"{response.status}".encode()


def until(check: Callable[[], Any], what: str, server: CorralServer) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{server.text()}")
        time.sleep(0.05)


class Load:
    """Client threads asking one host back to back, each on a new connection; any answer but
    a 200, and any connection error, is a failure."""

    def __init__(self, port: int, host: str, clients: int = 3) -> None:
        self.port, self.host = port, host
        self.bodies: list[bytes] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = request(self.port, host=self.host)
            except Exception as exc:
                self.failures.append(repr(exc))
                continue
            if response.status == 200:
                self.bodies.append(response.body)
            else:
                self.failures.append(f"{response.status}: {response.body[:300]!r}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT)


def test_site_files_come_and_go_under_load_without_a_failed_request_for_the_others(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    for name in ("a", "b1", "b2", "c"):
        make_app(tmp_path / "apps" / name, name)
    sites = tmp_path / "sites.d"
    sites.mkdir()
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    write(sites / "a.toml", site_toml("a", "a"))
    server = serve(tmp_path / "server.toml", "--max", "1")  # one worker: its pid names it
    first = until(
        lambda: body(server.port, "a.test").startswith(b"a|") and body(server.port, "a.test"),
        "site a",
        server,
    )
    load = Load(server.port, "a.test")
    seen = len(server.log)
    b_file = sites / "b.toml"
    try:
        until(lambda: len(load.bodies) > 5, "some requests", server)
        # Added.
        write(b_file, site_toml("b", "b1"))
        seen = wait_new(server, seen, r"configuration reloaded: 1 added, 1 unchanged")
        assert body(server.port, "b.test").startswith(b"b1|")
        # Changed: the new version is started, then takes over.
        write(b_file, site_toml("b", "b2"))
        seen = wait_new(server, seen, r"configuration reloaded: 1 changed, 1 unchanged")
        assert all(body(server.port, "b.test").startswith(b"b2|") for _ in range(5))
        # Broken: refused with file and line; B keeps serving b2; another file still applies.
        write(b_file, site_toml("b", "b1").replace("physical_path", "physical_pat"))
        write(sites / "c.toml", site_toml("c", "c"))
        seen = wait_new(server, seen, rf"site file {b_file} refused; its sites keep their")
        line = wait_new(server, seen - 1, rf"{b_file}:4: physical_pat: unknown setting")
        seen = wait_new(server, max(seen, line), r"configuration reloaded: 1 added, 2 unchanged")
        assert all(body(server.port, "b.test").startswith(b"b2|") for _ in range(5))
        assert body(server.port, "c.test").startswith(b"c|")
        # Fixed.
        write(b_file, site_toml("b", "b1"))
        seen = wait_new(server, seen, r"configuration reloaded: 1 changed, 2 unchanged")
        assert all(body(server.port, "b.test").startswith(b"b1|") for _ in range(5))
        # Removed: drained, then stopped; its host is answered by no site any more.
        b_file.unlink()
        seen = wait_new(server, seen, r"configuration reloaded: 1 removed, 2 unchanged")
        assert request(server.port, host="b.test").status == 404
        wait_new(server, seen, r"removed from the configuration; stopping the old one")
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == []
    assert len(load.bodies) > 50
    # Site A's application was left alone all along: one worker, the first one.
    assert set(load.bodies) == {first}
    assert body(server.port, "c.test").startswith(b"c|")


def test_a_site_file_on_a_port_nothing_listens_on_yet_is_listened_on(tmp_path: Path) -> None:
    ports = [port(), port()]
    make_app(tmp_path / "apps" / "a", "a")
    make_app(tmp_path / "apps" / "b", "b")
    sites = tmp_path / "sites.d"
    sites.mkdir()
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    write(sites / "a.toml", site_toml("a", "a", ports[0]))
    # No --listen: the harness's own would override the bindings; start by hand.
    server = CorralServer(tmp_path / "server.toml")
    server.proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", str(tmp_path / "server.toml"), "--no-access-log"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )

    def read() -> None:
        assert server.proc is not None and server.proc.stdout is not None
        for raw in server.proc.stdout:
            server.log.append(raw.decode("utf-8", "replace").rstrip("\n"))

    server._reader = threading.Thread(target=read, daemon=True)
    server._reader.start()
    try:
        wait_new(server, 0, rf"serving .* on http://127\.0\.0\.1:{ports[0]}")
        assert until(lambda: body(ports[0], "a.test").startswith(b"a|"), "site a", server)
        write(sites / "b.toml", site_toml("b", "b", ports[1]))
        wait_new(server, 0, rf"serving .* on http://127\.0\.0\.1:{ports[1]}")
        wait_new(server, 0, r"configuration reloaded: 1 added, 1 unchanged")
        assert body(ports[1], "b.test").startswith(b"b|")
        assert body(ports[0], "a.test").startswith(b"a|")
    finally:
        server.stop()


WEB_CONFIG = textwrap.dedent(
    """\
    <?xml version="1.0" encoding="UTF-8"?>
    <configuration>
      <system.webServer>
        <heliconZoo>
          <application name="site.app">
            <environmentVariables>
              <add name="WSGI_APP" value="wsgi.application" />
            </environmentVariables>
          </application>
        </heliconZoo>
        <handlers>
          <add name="site.app" scriptProcessor="python.3.wsgi" path="*" verb="*"
               modules="HeliconZoo_x64" />
        </handlers>
      </system.webServer>
    </configuration>
    """
)


def test_site_folders_each_with_its_web_config_are_sites_named_after_them(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    vhosts = tmp_path / "vhosts"
    vhosts.mkdir()
    (tmp_path / "server.toml").write_text(
        '[server]\ninclude = ["vhosts/*/"]\ninclude_bindings = ["127.0.0.1:8080"]\n'
    )
    server = serve(tmp_path / "server.toml")
    assert request(server.port, host="one.example").status == 404  # no site yet
    seen = len(server.log)
    # A new site folder: the folder first, then its files (as a copy would).
    staging = tmp_path / "one.example"
    staging.mkdir()
    (staging / "wsgi.py").write_text(APP.replace("{name}", "one"))
    (staging / "web.config").write_text(WEB_CONFIG)
    os.rename(staging, vhosts / "one.example")
    wait_new(server, seen, r"configuration reloaded: 1 added")
    assert body(server.port, "one.example").startswith(b"one|")
    assert request(server.port, host="two.example").status == 404
    # Removed: moved out of the include folder (as a panel would before deleting it).
    seen = len(server.log)
    os.rename(vhosts / "one.example", tmp_path / "gone")
    wait_new(server, seen, r"configuration reloaded: 1 removed")
    assert request(server.port, host="one.example").status == 404


def test_a_broken_site_file_at_start_is_refused_alone_and_loads_once_fixed(
    tmp_path: Path, serve: Callable[..., CorralServer]
) -> None:
    make_app(tmp_path / "apps" / "a", "a")
    make_app(tmp_path / "apps" / "b", "b")
    sites = tmp_path / "sites.d"
    sites.mkdir()
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    write(sites / "a.toml", site_toml("a", "a"))
    write(sites / "b.toml", "[sites.b]\nbindings = [\n")
    server = serve(tmp_path / "server.toml")
    server.wait_log(rf"site file {sites / 'b.toml'} refused; no site from it")
    server.wait_log(rf"{sites / 'b.toml'}:2: toml: malformed TOML")
    assert until(lambda: body(server.port, "a.test").startswith(b"a|"), "site a", server)
    assert request(server.port, host="b.test").status == 404
    seen = len(server.log)
    write(sites / "b.toml", site_toml("b", "b"))
    wait_new(server, seen, r"configuration reloaded: 1 added, 1 unchanged")
    assert body(server.port, "b.test").startswith(b"b|")


def test_a_site_file_with_https_on_a_new_port_is_not_served_as_plain_http(tmp_path: Path) -> None:
    from tests.tlscerts import make_certificate

    plain, https = port(), port()
    make_app(tmp_path / "apps" / "a", "a")
    make_app(tmp_path / "apps" / "b", "b")
    sites = tmp_path / "sites.d"
    sites.mkdir()
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    write(sites / "a.toml", site_toml("a", "a", plain))
    make_certificate(sites / "certs", "b", ["b.test"])
    server = CorralServer(tmp_path / "server.toml", args=("--no-access-log",), listen=None)
    server.start(wait_ready=False)
    try:
        assert until(lambda: body(plain, "a.test").startswith(b"a|"), "site a", server)
        write(
            sites / "b.toml",
            f'[sites.b]\nbindings = [{{ address = "127.0.0.1", port = {https}, hosts = '
            f'["b.test"], protocol = "https", certificate = "certs/b.pem", key = '
            f'"certs/b.key" }}]\n[sites.b.apps."/"]\nphysical_path = "../apps/b"\n',
        )
        wait_new(server, 0, rf"https binding on a new port \(127\.0\.0\.1:{https}\): restart")
        with pytest.raises(OSError):  # nothing listens there: never plain HTTP for https
            request(https, host="b.test")
    finally:
        server.stop()
