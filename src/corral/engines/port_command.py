"""A command that listens itself: Zoo's ``tcp`` transport (a port Corral picks per worker), or
Corral's ``unix`` transport (a Unix socket path Corral gives each worker).

Node.js, Rack (rackup, puma), PSGI (plackup) and the generic ``http`` engine: with ``tcp`` the
port comes from portLower..portUpper and is given as PORT/HOST in the environment and
``%PORT%``/``%HOST%`` in the arguments (``supervision.launch.WorkerSocket.PORT``); with ``unix`` the
path (in the pool's private 0700 runtime directory, so no other local user can connect) is given
as SOCKET and ``%SOCKET%`` (``WorkerSocket.UNIX_PATH``). Readiness: the listening socket there is
the worker's own (``probe.owned``, applied by the worker set), then it accepts a connection
(HTTP) or answers FCGI_GET_VALUES (FastCGI).
"""

from __future__ import annotations

import ipaddress
import os

from corral.config.model import AppConfig, EngineConfig, EngineKind, Transport
from corral.engines.base import Backend, connect_for, http_capacity, speaks_http, unsupported
from corral.supervision.launch import LaunchPlan, WorkerSocket
from corral.supervision.probe import fastcgi_port_probe, port_probe
from corral.supervision.settings import PoolSettings


class PortCommandKind:
    name = "port-command"

    def handles(self, engine: EngineConfig) -> bool:
        return engine.transport is Transport.TCP or engine.transport is Transport.UNIX

    def connections_per_worker(self, engine: EngineConfig) -> int | None:
        return http_capacity(engine)

    def elastic(self, engine: EngineConfig) -> bool:
        return False

    def backend(self, app: AppConfig, settings: PoolSettings) -> Backend:
        engine = app.engine
        if engine.kind is not EngineKind.COMMAND:
            raise unsupported(
                app,
                "transport",
                f"engine {engine.name!r}: Corral's Python worker takes its socket at fd 0; "
                "use transport NamedPipe",
            )
        unix = engine.transport is Transport.UNIX
        if not unix and engine.port_lower > engine.port_upper:
            raise unsupported(
                app,
                "portLower",
                f"engine {engine.name!r}: portLower {engine.port_lower} is above portUpper "
                f"{engine.port_upper}",
            )
        if not unix and not _loopback(engine.host):
            raise unsupported(
                app,
                "host",
                f"engine {engine.name!r}: a backend Corral starts listens on loopback only "
                f"(127.0.0.1 or ::1), not {engine.host!r}: other machines and other local "
                "networks must not reach it past the front (or use transport unix)",
            )
        # %PORT%, %HOST%, %SOCKET% and %INSTANCE_ID% stay as written: the process layer fills
        # them in per worker (supervision.process), with PORT and HOST (or SOCKET) and
        # INSTANCE_ID in the environment.
        env = dict(os.environ)
        env.update(app.module_vars)
        env.update(app.env)
        plan = LaunchPlan(
            argv=app.argv,
            env=env,
            cwd=app.current_directory,
            transport=WorkerSocket.UNIX_PATH if unix else WorkerSocket.PORT,
            tcp_host=engine.host,
            port_range=(engine.port_lower, engine.port_upper),
        )
        http = speaks_http(engine)
        probe = port_probe if http else fastcgi_port_probe
        return Backend(plan, connect_for(app), probe=probe, http=http, upgrade=http)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


KIND = PortCommandKind()
