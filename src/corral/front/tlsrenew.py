"""Fresh TLS contexts for the https listeners, now and then: how session ticket keys rotate.

OpenSSL encrypts session tickets with keys it draws at random when a context is made and never
changes; the keys used are those of the context the listener was created with (see
``front/tls.py``), and an asyncio server keeps that context for its life. So every
``tls_ticket_key_lifetime`` seconds each https listener's asyncio server is replaced: a new one
is started over a duplicate of the same listening socket with a fresh context, then the old one
stops accepting. Both accept from the one kernel queue meanwhile, so no connection is refused,
and the connections the old one accepted go on as they are (closing a server closes only its
listening socket). Tickets issued before the renewal no longer resume a session: those clients
make a full handshake once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("corral.front.tls")

_NEVER = float("inf")


@dataclass(slots=True)
class _Listener:
    server: asyncio.Server
    make_context: Callable[[], ssl.SSLContext]
    factory: Callable[[], asyncio.Protocol]
    backlog: int


class TlsRenewal:
    """The https listeners of a front server, renewed every ``lifetime`` seconds (0: never)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lifetime = 0.0
        self.handshake_timeout = 10.0
        #: When the next renewal is due (the loop's clock); the server's sweep checks it.
        self.due = _NEVER
        self.renewals = 0
        self._listeners: list[_Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def servers(self) -> list[asyncio.Server]:
        return [listener.server for listener in self._listeners]

    def configure(self, lifetime: float, handshake_timeout: float) -> None:
        """The settings in force (at start and on reloads); a new lifetime counts from now."""
        self.handshake_timeout = handshake_timeout
        if lifetime != self.lifetime:
            self.lifetime = lifetime
            self._schedule()

    def add(
        self,
        server: asyncio.Server,
        make_context: Callable[[], ssl.SSLContext],
        factory: Callable[[], asyncio.Protocol],
        backlog: int,
    ) -> None:
        self._listeners.append(_Listener(server, make_context, factory, backlog))
        self._schedule()

    def _schedule(self) -> None:
        if self.lifetime > 0 and self._listeners and not self._stopped:
            self.due = self.loop.time() + self.lifetime
        else:
            self.due = _NEVER

    def renew(self) -> None:
        """Start a renewal (when ``due``); the next one is due a lifetime later."""
        self._schedule()
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self.renew_now())

    async def renew_now(self) -> None:
        """Replace every https listener's server by one with a fresh context."""
        for listener in list(self._listeners):
            if self._stopped:
                return
            fresh: list[asyncio.Server] = []
            try:
                for sock in listener.server.sockets:
                    fresh.append(await self._serve_on(listener, sock.fileno()))
            except (OSError, ssl.SSLError) as exc:
                for server in fresh:
                    server.close()
                logger.error("cannot renew an https listener's TLS context: %s", exc)
                continue
            except BaseException:  # cancelled: the front is stopping
                for server in fresh:
                    server.close()
                raise
            if self._stopped:  # (the front stopped meanwhile: these must not accept)
                for server in fresh:
                    server.close()
                return
            replacements = [
                _Listener(server, listener.make_context, listener.factory, listener.backlog)
                for server in fresh
            ]
            position = self._listeners.index(listener)
            self._listeners[position : position + 1] = replacements
            listener.server.close()
        self.renewals += 1
        logger.debug("https listeners renewed (new session ticket keys)")

    async def _serve_on(self, listener: _Listener, fileno: int) -> asyncio.Server:
        """A server with a fresh context over a duplicate of a listening socket."""
        dup = socket.socket(fileno=os.dup(fileno))
        try:
            return await self.loop.create_server(
                listener.factory,
                sock=dup,
                backlog=listener.backlog,
                ssl=listener.make_context(),
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except BaseException:
            dup.close()
            raise

    def stop(self) -> None:
        """No renewal from now on (the front is stopping; it closes the servers)."""
        self._stopped = True
        self.due = _NEVER
        if self._task is not None:
            self._task.cancel()
