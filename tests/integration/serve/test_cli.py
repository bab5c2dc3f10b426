"""`corral` on the command line: version, usage errors, a missing site, a busy port, defaults."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.harness import CorralServer, request, run_corral

from corral import __version__, hotpath
from corral.cli import default_site


def test_version() -> None:
    result = run_corral("--version")
    assert result.returncode == 0
    # (and which build runs: tests/integration/packaging/test_compiled.py)
    assert result.stdout.strip() == f"corral {__version__} ({hotpath.describe()})"
    assert hotpath.describe() in (hotpath.PURE, hotpath.COMPILED_WORD)


def test_missing_site_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_corral("serve", str(missing), "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"corral: site folder or server file {str(missing)!r} does not exist"
    ]


def test_bad_option_is_exit_2() -> None:
    result = run_corral("serve", "--frobnicate")
    assert result.returncode == 2
    assert "unrecognized arguments: --frobnicate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_corral("serve", "--listen", "nonsense:port")
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr


def test_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = run_corral("serve", str(tmp_path), "--listen", f"127.0.0.1:{port}")
    finally:
        holder.close()
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"corral: address already in use: 127.0.0.1:{port}"
    )


def test_serve_without_a_site_serves_the_bundled_example() -> None:
    assert default_site().is_dir()
    server = CorralServer(None, args=("--no-access-log",))
    try:
        server.start(wait_ready=False)
        assert str(default_site().resolve()) in server.wait_log("serving")
        assert request(server.port, path="/").status == 200
    finally:
        server.stop()


EVERY_MISTAKE = """\
<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <heliconZoo>
      <application name="shop">
        <environmentVariables>
          <add name="DEPLOY_TIMEOUT" value="soon" />
          <add name="ERROR_LOG_MAX_KB" value="-3" />
          <add name="DEPLOY_FILE" value="deploy.py" />
          <add name="WSGI_APPP" value="shop:app" />
        </environmentVariables>
      </application>
      <application name="blog">
        <environmentVariables>
          <add name="VIRTUAL_ENV" value="%APPL_PHYSICAL_PATH%\\venv" />
        </environmentVariables>
      </application>
    </heliconZoo>
    <handlers>
      <add name="api" scriptProcessor="python" path="*.api" verb="*" modules="HeliconZoo_x64" />
      <add name="shop" scriptProcessor="ruby.rakc" path="*" verb="*" modules="HeliconZoo_x64" />
      <add name="blog" scriptProcessor="python" path="*.py" verb="*" modules="HeliconZoo_x64" />
    </handlers>
  </system.webServer>
</configuration>
"""


def test_check_reports_every_error_in_one_pass(tmp_path: Path) -> None:
    """Issue 10, item 18: an unknown engine used to hide the application's bad variables, and
    load errors hid what the engines refuse. One run now lists them all, in file order."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "venv").mkdir()  # a virtualenv without an interpreter (copied from Windows, say)
    (site / "web.config").write_text(EVERY_MISTAKE)
    (site / "corral.toml").write_text('[engines.python]\ntransport = "tcp"\n')
    result = run_corral("check", str(site))
    assert result.returncode == 1, result.stdout
    config, toml = site / "web.config", site / "corral.toml"
    lines = result.stderr.splitlines()
    assert lines[0] == f"{site}: 7 configuration errors, corral serve would refuse it:"
    assert lines[1:8] == [
        f"  {config}:7: DEPLOY_TIMEOUT: expected a whole number, got 'soon'",
        f"  {config}:8: ERROR_LOG_MAX_KB: must be at least 1, got -3",
        f"  {config}:9: DEPLOY_FILE: no such file: {site}/deploy.py",
        f"  {config}:15: VIRTUAL_ENV: {site}/venv has no bin/python (a virtualenv made on "
        "Windows has Scripts\\python.exe instead: make one here with python3 -m venv)",
        f"  {config}:21: scriptProcessor: unknown engine 'ruby.rakc'; did you mean "
        "'ruby.rack'? (known: fastcgi, http, nodejs.http, perl.psgi, perl.psgi.fastcgi, "
        "php.fastcgi, python, ruby.puma, ruby.rack; Zoo names python.*, php.*.pipe, "
        "nodejs.http* and ruby.*.pipe also work)",
        f"  {config}:22: handlers: handler 'blog' (path '*.py') can never match: handler "
        f"'shop' at {config}:21 (path '*') comes first and takes every URL it would",
        f"  {toml}:1: transport: engine 'python': Corral's Python worker takes its socket at "
        "fd 0; use transport NamedPipe",
    ]
    assert lines[8:] == [
        "Notices:",
        f"  {config}:10: WSGI_APPP is not a Corral setting; did you mean 'WSGI_APP'? (it is "
        "passed to the application as it is)",
    ]
    # corral serve refuses the same configuration before anything listens.
    serve = run_corral("serve", str(site), "--listen", "127.0.0.1:0")
    assert serve.returncode == 1
    assert f"{config}:9: DEPLOY_FILE: no such file: {site}/deploy.py" in serve.stderr
