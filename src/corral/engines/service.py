"""``tcp.service``: a server Corral does not start (php-fpm, a shared backend).

Nothing is launched: the pool (``supervision.service.ServicePool``) connects to ``host:portLower``,
or to the Unix socket of a host written ``unix:/path``, or spreads requests over several
servers (``servers``), checked by ``healthCheck``.
"""

from __future__ import annotations

from corral.config.model import AppConfig, EngineConfig, EngineKind, Transport
from corral.engines.base import Backend, connect_for, http_capacity, speaks_http, unsupported
from corral.supervision.balance import BalanceSettings
from corral.supervision.checks import check_for
from corral.supervision.settings import PoolSettings


class ServiceKind:
    name = "service"

    def handles(self, engine: EngineConfig) -> bool:
        return engine.kind is EngineKind.SERVICE or engine.transport is Transport.TCP_SERVICE

    def connections_per_worker(self, engine: EngineConfig) -> int | None:
        return http_capacity(engine)

    def elastic(self, engine: EngineConfig) -> bool:
        return False

    def backend(self, app: AppConfig, settings: PoolSettings) -> Backend:
        engine = app.engine
        http = speaks_http(engine)
        try:
            addresses = engine.service_addresses()
        except ValueError as exc:
            raise unsupported(app, "servers", str(exc)) from None
        try:
            check = check_for(engine.health_check)
        except ValueError as exc:
            name = "health_check" if engine.origin == "toml" else "healthCheck"
            raise unsupported(app, name, str(exc)) from None
        balance = BalanceSettings(
            retry_after=settings.health_interval, slow_start=engine.slow_start
        )
        return Backend(
            None,
            connect_for(app),
            addresses=addresses,
            check=check,
            balance=balance,
            http=http,
            upgrade=http,
        )


KIND = ServiceKind()
