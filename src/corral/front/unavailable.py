"""When a request gets no backend: the 503 that says why (``lease_failed``: details such as a
traceback only where ``details.allowed`` says, else a reference id that is also in the log),
and, while an application's deploy script runs, its output streamed to a request that may see
it (``stream_deploy``). Called by ``Exchange`` (``front/exchange.py``).
"""

from __future__ import annotations

import codecs
import html
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from corral.front import details, errorpages
from corral.front.context import FrontContext
from corral.front.routes import AppRoute
from corral.front.stream import ClientStream, Deadline
from corral.protocol.http1.events import Request
from corral.runtime.gate import DeployFailed, DeployInProgress
from corral.supervision.lease import AcquireTimeout, PoolOverloaded, PoolUnavailable

logger = logging.getLogger("corral.front")

_BACKEND = Deadline.BACKEND


def lease_failed(
    server: FrontContext,
    stream: ClientStream,
    route: AppRoute,
    named: str | None,
    request: Request | None,
    exc: Exception,
) -> None:
    """No backend for this request: the 503 that says why. ``named``: the client a trusted
    proxy named (see ``details``)."""
    settings = server.settings
    if isinstance(exc, PoolOverloaded):
        stream.respond_error(503, retry_after=True, message="The application is busy.")
    elif isinstance(exc, DeployInProgress):
        stream.respond_error(
            503,
            retry_after=True,
            message=errorpages.DEPLOYING,
            refresh=settings.retry_after,
        )
    elif isinstance(exc, DeployFailed):
        text = f"{exc.reason}\n\n{exc.stderr_tail}".strip()
        who = details.client(stream, named)
        shown = details.allowed(server, route, stream, named, request)
        reference = details.log_503(route.name, "the deploy script failed", text, shown, who)
        stream.respond_error(
            503,
            retry_after=True,
            message="The application's deploy script failed; the application is stopped "
            "until its files change.",
            details=text if shown else None,
            reference=reference,
        )
    elif isinstance(exc, PoolUnavailable):
        text = details.unavailable_details(exc)
        who = details.client(stream, named)
        shown = details.allowed(server, route, stream, named, request)
        reference = details.log_503(route.name, exc.reason, text, shown, who)
        stream.respond_error(
            503,
            retry_after=True,
            retry_seconds=exc.retry_in,
            message="The application cannot start.",
            details=text if shown else None,
            reference=reference,
        )
    elif isinstance(exc, AcquireTimeout):
        stream.respond_error(503, retry_after=True, message="No application worker was free.")
    else:  # a bug or an unexpected failure below: this request only
        logger.error("%s: cannot lease a worker", route.name, exc_info=exc)
        stream.respond_error(503, retry_after=True)


async def stream_deploy(
    server: FrontContext,
    stream: ClientStream,
    route: AppRoute,
    named: str | None,
    output: AsyncIterator[bytes],
) -> None:
    """Answer with the deploy script's output as it comes (503, of unknown length), in a
    page that reloads itself once the script has ended. Runs in the request's task: a
    client that goes away cancels it, one that stops reading stalls it (and the response
    deadline aborts it). The caller ends the exchange after it."""
    response = stream.response
    retry_after = server.settings.retry_after
    response.stream_head(
        503,
        [
            (b"Server", b"Corral"),
            (b"Content-Type", b"text/html; charset=utf-8"),
            (b"Cache-Control", b"no-store"),
            (b"Retry-After", b"%d" % retry_after),
        ],
    )
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    logger.info(
        "%s: streaming the deploy script's output to %s",
        route.name,
        details.client(stream, named),
    )
    try:
        await response.stream_piece(errorpages.deploy_stream_start(retry_after))
        async for data in output:
            if stream.closed:
                return
            stream.set_deadline(_BACKEND, server.response_timeout)
            if data:
                text = html.escape(decoder.decode(data), quote=False)
                await response.stream_piece(text.encode("utf-8"))
        tail = html.escape(decoder.decode(b"", final=True), quote=False).encode("utf-8")
        await response.stream_piece(
            tail + errorpages.deploy_stream_end("The deploy script has ended.")
        )
        response.stream_end()
    finally:
        if isinstance(output, AsyncGenerator):
            await output.aclose()
