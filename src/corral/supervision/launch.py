"""How to start one backend worker: the command, its environment and where it listens.

A ``LaunchPlan`` is plain, frozen data. Engines (Python, PHP, any FastCGI command) build one; the
process mechanism (``supervision.process``) carries it out for each worker it spawns. The plan
says nothing about sockets' paths: the host creates a fresh listening socket per worker and hands
it over as fd 0 (the FastCGI convention that nginx, mod_fcgid and spawn-fcgi follow).
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

#: Where a worker listens: a Unix socket path, or a (host, port) pair.
Address: TypeAlias = str | tuple[str, int]

#: The fd at which a worker receives the read end of its liveness pipe.
LIVENESS_FD = 3


class Transport(enum.Enum):
    """How the host and a worker are connected."""

    #: A Unix listening socket, created by the host in its private (0700) runtime directory and
    #: passed to the worker as fd 0.
    UNIX = "unix"
    #: A TCP listening socket on loopback, created by the host on an ephemeral port and passed
    #: to the worker as fd 0.
    TCP = "tcp"
    #: The command listens itself, on a port the host picks per worker from
    #: ``LaunchPlan.port_range`` on ``LaunchPlan.tcp_host`` and hands over as the variables
    #: PORT and HOST and as ``%PORT%``/``%HOST%`` (and ``%INSTANCE_ID%``) in its arguments and
    #: variables (Helicon Zoo's ``tcp`` transport: Node.js, any HTTP server). Nothing is at fd 0.
    PORT = "port"


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """Everything needed to start one worker of an application.

    ``env`` is the worker's complete environment (nothing is inherited implicitly); it is
    copied into a read-only mapping. Every worker also receives the read end of a liveness pipe
    at fd ``LIVENESS_FD`` (3); commands that do not know about it simply ignore the fd.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    transport: Transport = Transport.UNIX
    #: Loopback address to bind for ``Transport.TCP``, or for the worker to listen on for
    #: ``Transport.PORT``.
    tcp_host: str = "127.0.0.1"
    #: Ports (inclusive) that ``Transport.PORT`` picks from: one free port per worker.
    port_range: tuple[int, int] = (49152, 65535)

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("LaunchPlan.argv must name a program")
        low, high = self.port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"LaunchPlan.port_range must be within 1..65535, not {low}..{high}")
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))


def corral_package_parent() -> str:
    """The directory that contains the ``corral`` package (for a foreign interpreter's path)."""
    return str(Path(__file__).resolve().parent.parent.parent)


def python_worker_plan(
    app_root: str | os.PathLike[str],
    *,
    python: str = sys.executable,
    app_env: Mapping[str, str] | None = None,
    threads: int = 1,
    engine: str = "python",
    base_env: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """The plan for Corral's own Python worker (``python -m corral.worker``).

    Args:
        app_root: the application's folder; the worker's working directory.
        python: the interpreter to run, possibly another virtualenv's.
        app_env: the application's variables (engine and app settings, already expanded).
        threads: requests one worker serves at once.
        engine: the engine's name, exported as ``CORRAL_ENGINE``.
        base_env: the environment the app's variables are laid over; ``os.environ`` if None.

    ``PYTHONPATH`` is the app's entries followed, last, by the directory that contains the
    ``corral`` package, so that an interpreter from another virtualenv (without Corral's
    dependencies) can import ``corral.worker``, and the app's own modules win any name clash.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    env = dict(os.environ if base_env is None else base_env)
    env.update(app_env or {})
    entries = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    corral_dir = corral_package_parent()
    if corral_dir not in entries:
        entries.append(corral_dir)
    env["PYTHONPATH"] = os.pathsep.join(entries)
    env["CORRAL_ENGINE"] = engine
    argv: Sequence[str] = (
        python,
        "-m",
        "corral.worker",
        "--liveness-fd",
        str(LIVENESS_FD),
        "--threads",
        str(threads),
    )
    return LaunchPlan(argv=tuple(argv), env=env, cwd=os.fspath(app_root))
