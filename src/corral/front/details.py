"""Who may see an error's details (a traceback, a deploy script's output), and the reference id
that everyone else gets instead (pure policy, plus the log line).

The rule (issue 10, item 3): details go to a development application's clients
(DEVELOPMENT_MODE), or, with ``show_errors_to_loopback`` (the default), to a *local* client that
is not behind a proxy. Local is decided after the trusted-proxy policy:

- from a trusted proxy (``trusted_proxies``), the client is the one the proxy names
  (``forward.from_proxy``): local only if that address is a loopback one; a proxy that names no
  client hides it, so the request is not local;
- from any other peer, the peer is the client: local if it is a loopback address and the request
  carries no forwarding field (X-Forwarded-*, Forwarded, X-Real-IP). Such a field from a
  loopback peer means an untrusted proxy on this host (a same-host nginx left out of
  ``trusted_proxies``) stands between: its visitors are strangers.

Everyone else gets the friendly page and a reference id; the log line has the same id with the
details, so an operator can find the traceback a visitor reports.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from corral.front import forward
from corral.front.context import FrontContext
from corral.front.routes import AppRoute
from corral.protocol.http1.events import Request
from corral.supervision.lease import PoolUnavailable

if TYPE_CHECKING:
    from corral.front.stream import ClientStream

logger = logging.getLogger("corral.front")


def client(stream: ClientStream, named: str | None) -> str:
    """The client's address for a log line: the one a trusted proxy named, else the peer."""
    return named if stream.trusted and named else stream.remote_host


def allowed(
    server: FrontContext,
    route: AppRoute,
    stream: ClientStream,
    named: str | None,
    request: Request | None,
) -> bool:
    """Whether this request may see error details (see the module doc). ``named``: the client
    a trusted proxy named for it (``Exchange.client``)."""
    if route.development:
        return True
    if not server.settings.show_errors_to_loopback:
        return False
    return local(server, stream, named, request)


def local(
    server: FrontContext, stream: ClientStream, named: str | None, request: Request | None
) -> bool:
    """Whether the client is on this machine (see the module doc), whatever the settings: the
    rule for error details, and for the worker's development page (``cgienv.LOCAL_PARAM``)."""
    if stream.trusted:
        return named is not None and server.is_loopback(named)
    return stream.loopback and request is not None and not forward.proxied(request.headers)


def log_503(name: str, reason: str, text: str, shown: bool, who: str) -> str:
    """Log an application's 503 with a new reference id (returned, for the page); with the
    details when the client was not shown them."""
    reference = os.urandom(4).hex()
    if shown:
        logger.error("%s: answered 503 (reference %s): %s", name, reference, reason)
    else:
        logger.error(
            "%s: answered 503 (reference %s; details withheld from %s): %s\n%s",
            name,
            reference,
            who,
            reason,
            text,
        )
    return reference


def unavailable_details(exc: PoolUnavailable) -> str:
    """What a developer needs on the "cannot start" page: why, the worker's error output
    (the traceback), and when Corral tries again."""
    lines = [exc.reason]
    if exc.failures:
        if exc.gave_up:
            when = f"in {exc.retry_in:.0f} s" if exc.retry_in is not None else "on the next request"
            lines.append(
                f"The application failed to start {exc.failures} times in a row and is marked "
                f"failed: Corral tries again {when}, or as soon as its files change."
            )
        elif exc.retry_in is not None:
            lines.append(
                f"Failed starts in a row: {exc.failures}. Corral tries again in "
                f"{exc.retry_in:.0f} s, or as soon as the application's files change."
            )
    if exc.stderr_tail:
        lines.append(f"The worker's error output (last lines):\n\n{exc.stderr_tail}")
    return "\n\n".join(lines).strip()
