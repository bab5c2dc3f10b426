"""``tcp.service``: a server Corral does not start (php-fpm, a shared backend).

Nothing is launched: the pool (``supervision.service.ServicePool``) connects to ``host:portLower``,
or to the Unix socket of a host written ``unix:/path``.
"""

from __future__ import annotations

from corral.config.model import AppConfig, EngineConfig, EngineKind, Transport
from corral.engines.base import Backend, connect_for, http_capacity, speaks_http
from corral.supervision.settings import PoolSettings


class ServiceKind:
    name = "service"

    def handles(self, engine: EngineConfig) -> bool:
        return engine.kind is EngineKind.SERVICE or engine.transport is Transport.TCP_SERVICE

    def connections_per_worker(self, engine: EngineConfig) -> int | None:
        return http_capacity(engine)

    def backend(self, app: AppConfig, settings: PoolSettings) -> Backend:
        http = speaks_http(app.engine)
        return Backend(
            None, connect_for(app), address=app.engine.service_address(), http=http, upgrade=http
        )


KIND = ServiceKind()
