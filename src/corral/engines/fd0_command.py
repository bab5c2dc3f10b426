"""A command given its listening socket at fd 0 (the FastCGI convention): php-cgi, plackup -s FCGI,
the generic ``fastcgi`` engine, or an HTTP server that accepts on fd 0.

FastCGI commands are ready when they answer FCGI_GET_VALUES; an HTTP one when the socket accepts
a connection (its route is marked ``http`` and ``upgrade``, so WebSocket passes through).
"""

from __future__ import annotations

from corral.config.expand import finish_argv, finish_env
from corral.config.model import AppConfig, EngineConfig, EngineKind
from corral.engines.base import Backend, connect_for, http_capacity, speaks_http
from corral.supervision.launch import LaunchPlan
from corral.supervision.probe import fastcgi_probe, port_probe
from corral.supervision.settings import PoolSettings


class Fd0CommandKind:
    name = "fd0-command"

    def handles(self, engine: EngineConfig) -> bool:
        return engine.kind is EngineKind.COMMAND

    def connections_per_worker(self, engine: EngineConfig) -> int | None:
        return http_capacity(engine)

    def elastic(self, engine: EngineConfig) -> bool:
        return False

    def backend(self, app: AppConfig, settings: PoolSettings) -> Backend:
        env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0)
        argv = finish_argv(app.argv, port=None, host=None, instance_id=0)
        plan = LaunchPlan(argv=tuple(argv), env=env, cwd=app.current_directory)
        if speaks_http(app.engine):
            return Backend(plan, connect_for(app), probe=port_probe, http=True, upgrade=True)
        return Backend(plan, connect_for(app), probe=fastcgi_probe)


KIND = Fd0CommandKind()
