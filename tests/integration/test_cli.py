"""`corral` on the command line: version, usage errors, a missing site, a busy port, defaults."""

from __future__ import annotations

import socket
from pathlib import Path

from test_front_harness import CorralServer, request, run_corral

from corral import __version__
from corral.cli import default_site


def test_version() -> None:
    result = run_corral("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"corral {__version__}"


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
