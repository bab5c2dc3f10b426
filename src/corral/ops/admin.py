"""The admin listener: a second HTTP listener for operators, off unless configured
(``[server] admin``, ``<heliconZooServer admin="...">`` or ``corral serve --admin HOST:PORT``).

``AdminListener.open`` finds the admin token (``ops.token``: ``CORRAL_ADMIN_TOKEN``, or the
0600 file in the runtime folder, whose path it logs), starts keeping each application's log
tail (``ops.logtail``), listens, and logs where; it warns when the address is not a loopback
one (anyone who can reach it gets /metrics, /healthz and /readyz, and can try tokens). The host
closes it last when it stops, so that ``/readyz`` answers 503 all through the drain.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from corral.config.convert import split_listen
from corral.ops.adminapp import AdminApp
from corral.ops.adminserver import AdminServer
from corral.ops.hostview import AdminHost
from corral.ops.logtail import LogTail
from corral.ops.rundir import ensure, name_for, runtime_dir
from corral.ops.token import AdminToken, TokenGuard, admin_token, metrics_token

logger = logging.getLogger("corral")


class AdminError(OSError):
    """The admin listener cannot start (busy port, no runtime folder for the token)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class _Tokens:
    metrics: str | None


class AdminListener:
    def __init__(self, server: AdminServer, tail: LogTail, token: AdminToken, tokens: _Tokens):
        self._server = server
        self._tail = tail
        self.token = token
        self._tokens = tokens
        self.addresses: list[tuple[str, int]] = []
        self.wanted = ""

    @classmethod
    async def open(
        cls,
        host: AdminHost,
        address: str,
        configured_metrics_token: str | None,
        config_path: Path,
    ) -> AdminListener:
        where, port = split_listen(address)
        try:
            token = admin_token(ensure(runtime_dir()), name_for(config_path))
        except OSError as exc:
            raise AdminError(f"admin listener: no admin token: {exc}") from None
        tokens = _Tokens(metrics_token(configured_metrics_token))
        tail = LogTail()
        app = AdminApp(
            host, TokenGuard(token.token), lambda: tokens.metrics, tail, str(config_path)
        )
        server = AdminServer(app)
        try:
            bound = await server.listen(where, port)
        except OSError as exc:
            await server.close()
            raise AdminError(
                f"admin listener: cannot listen on {address}: {exc.strerror or exc}"
            ) from None
        tail.attach(logging.getLogger("corral"))
        listener = cls(server, tail, token, tokens)
        listener.addresses = bound
        listener.wanted = address
        for shown, actual in bound:
            url = f"http://[{shown}]:{actual}" if ":" in shown else f"http://{shown}:{actual}"
            logger.info("admin listener on %s (/metrics, /healthz, /readyz, dashboard at /)", url)
        if not is_loopback(where):
            logger.warning(
                "the admin listener is on %s, not a loopback address: /metrics, /healthz and "
                "/readyz are open to whoever reaches it%s, and the dashboard to whoever has the "
                "token",
                address,
                "" if tokens.metrics is None else " (/metrics needs its token)",
            )
        if token.path is None:
            logger.info("admin token: from CORRAL_ADMIN_TOKEN")
        else:
            made = "made now" if token.created else "kept from before"
            logger.info("admin token: in %s (%s; mode 0600)", token.path, made)
        return listener

    def reconfigure(self, address: str | None, configured_metrics_token: str | None) -> None:
        """A reloaded configuration: the metrics token applies now; the address does not move
        (that needs a restart)."""
        self._tokens.metrics = metrics_token(configured_metrics_token)
        if address != self.wanted:
            logger.warning(
                "the admin listener's address changed in the configuration (%s -> %s): "
                "restart corral to move it",
                self.wanted,
                address or "none",
            )

    async def close(self) -> None:
        self._tail.detach()
        await self._server.close()
