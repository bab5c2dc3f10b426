"""What `contrib/` ships for production (docs/production.md): the systemd units are valid
(`systemd-analyze verify`) and carry what Corral needs; the Containerfile's commands are
Corral's real options and the ones the documentation shows. No image is built (no network in
tests)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import require_program
from corral.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
SERVICE = ROOT / "contrib" / "systemd" / "corral.service"
SOCKET = ROOT / "contrib" / "systemd" / "corral.socket"
CONTAINERFILE = ROOT / "contrib" / "container" / "Containerfile"
PRODUCTION = ROOT / "docs" / "production.md"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections: key -> every value it is given."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze")
    corral = Path(sys.executable).with_name("corral")
    assert corral.exists(), corral
    service = SERVICE.read_text()
    assert "ExecStart=/usr/local/bin/corral " in service
    # (verify checks that ExecStart's program exists: this checkout's.)
    (tmp_path / "corral.service").write_text(
        service.replace("ExecStart=/usr/local/bin/corral ", f"ExecStart={corral} ")
    )
    shutil.copy(SOCKET, tmp_path / "corral.socket")
    result = subprocess.run(
        [analyze, "verify", "--man=no", "corral.service", "corral.socket"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "corral.service" in line or "corral.socket" in line
    ]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_the_service_unit_has_what_corral_needs() -> None:
    sections = unit(SERVICE)
    service = {key: values[-1] for key, values in sections["Service"].items()}
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert re.fullmatch(r"\d+s", service["WatchdogSec"])
    # SIGTERM to the host only: it stops its workers (own process groups) itself.
    assert service["KillMode"] == "mixed"
    assert service["KillSignal"] == "SIGTERM"
    # More than the default shutdown_grace (30 s).
    assert int(service["TimeoutStopSec"].removesuffix("s")) > 30
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == value, key
    assert service["ReadWritePaths"]
    assert service["User"] != "root"
    assert "MemoryDenyWriteExecute" not in service  # (JITs: docs/production.md)
    # ExecStart is a command line Corral takes.
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/corral")
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve" and args.access_log == "/var/log/corral/access.log"
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_socket_unit_passes_addresses_a_binding_can_match() -> None:
    socket_section = unit(SOCKET)["Socket"]
    for value in socket_section["ListenStream"]:
        host, _, port = value.rpartition(":")
        assert host and port.isdigit(), value  # an address and a port, never a port alone
    assert unit(SOCKET)["Install"]["WantedBy"] == ["sockets.target"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """The Containerfile's instructions (continuation lines joined)."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), " ".join(rest.split())))
    return found


def test_the_containerfile_runs_corral_as_documented() -> None:
    steps = instructions(CONTAINERFILE)
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in steps:
        by_keyword.setdefault(keyword, []).append(rest)
    # Two stages on one Debian slim: the build stage (a compiler and Python's headers, so that
    # pip compiles the hot path), then the image, which copies the virtualenv and has neither.
    froms = by_keyword["FROM"]
    assert steps[0][0] == "FROM" and re.fullmatch(r"debian:\w+-slim AS build", froms[0])
    assert froms[1:] == [froms[0].removesuffix(" AS build")]
    image = steps[[keyword for keyword, _ in steps].index("FROM", 1) :]
    build = steps[: len(steps) - len(image)]
    assert any("python3-dev gcc" in rest for keyword, rest in build if keyword == "RUN")
    assert ("COPY", "--from=build /opt/corral /opt/corral") in image
    assert not any("gcc" in rest for _, rest in image)
    assert by_keyword["USER"] == ["corral"]
    assert by_keyword["STOPSIGNAL"] == ["SIGTERM"]
    docs = PRODUCTION.read_text()
    # The command, as the documentation shows it, is Corral's real command line.
    (cmd,) = by_keyword["CMD"]
    assert f"CMD {cmd}" in docs
    command = json.loads(cmd)
    assert command[:2] == ["corral", "serve"]
    args, rest = build_parser().parse_known_args(command[1:])
    assert args.path == "/srv/site" and args.listen == ("0.0.0.0", 8080)
    # --admin is the admin listener's option (its own work): known, or the only one left.
    admin = command[command.index("--admin") + 1]
    assert rest in ([], ["--admin", admin])
    # The health check asks that listener's /healthz.
    (health,) = by_keyword["HEALTHCHECK"]
    assert f"http://{admin}/healthz" in health
    assert f"`GET http://{admin}/healthz`" in docs
    # The build and run commands of the file's comment are the documented ones.
    for line in CONTAINERFILE.read_text().splitlines():
        if line.startswith("#   podman "):
            assert line.removeprefix("#   ") in docs, line
    # Corral is installed from the checkout (the build context), not from elsewhere.
    assert any(rest.startswith(". ") for keyword, rest in steps if keyword == "COPY")
