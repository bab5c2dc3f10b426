"""Small HTML error pages, whole responses ready to write.

Every error response closes the connection (``Connection: close``) except the ones the front
answers with on behalf of a healthy connection (none today): after an error the front does not
trust the framing of what follows.

Details (such as a failing application's traceback) are shown only when the caller passes them;
the front passes them only to a development application's clients and to local clients that are
not behind a proxy (``Exchange._may_see_details``), so that a production site does not hand its
stack traces to the world. Everyone gets the page's ``reference``, an id that is also in the
server's log line (with the details), so that an operator can find them.
"""

from __future__ import annotations

import html
from http import HTTPStatus

from corral.protocol.http1.writer import response_head

_TEMPLATE = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8">{refresh}<title>{code} {reason}</title>'
    "</head>\n<body><h1>{code} {reason}</h1>\n<p>{message}</p>\n{reference}{details}"
    "<hr><address>Corral</address></body></html>\n"
)

MESSAGES: dict[int, str] = {
    400: "The request could not be understood.",
    404: "No application is configured for this address.",
    408: "The request was not received in time.",
    413: "The request body is larger than this server accepts.",
    414: "The request target is longer than this server accepts.",
    431: "The request header fields are larger than this server accepts.",
    500: "The server failed to answer this request.",
    501: "This server does not implement the request's method or transfer coding.",
    502: "The application failed to answer this request.",
    503: "The application is not available right now.",
    504: "The application did not answer in time.",
    505: "This server speaks HTTP/1.0 and HTTP/1.1 only.",
}


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def refresh_meta(seconds: int | None) -> str:
    """A ``<meta>`` that makes the browser load the page again ``seconds`` after it loaded."""
    return "" if seconds is None else f'<meta http-equiv="refresh" content="{int(seconds)}">'


def error_body(
    status: int,
    message: str | None = None,
    details: str | None = None,
    *,
    refresh: int | None = None,
    reference: str | None = None,
) -> bytes:
    reason = reason_phrase(status)
    text = message if message is not None else MESSAGES.get(status, reason)
    detail_html = f"<pre>{html.escape(details)}</pre>\n" if details else ""
    return _TEMPLATE.format(
        code=status,
        reason=html.escape(reason),
        message=html.escape(text),
        details=detail_html,
        refresh=refresh_meta(refresh),
        reference=(
            f"<p>Reference: <code>{html.escape(reference)}</code> (in the server's log)</p>\n"
            if reference
            else ""
        ),
    ).encode("utf-8")


DEPLOYING = "Application deployment in progress. This page reloads by itself when it is done."


def deploy_stream_start(refresh: int) -> bytes:
    """The start of the page that shows a deploy script's output as it runs (the output goes in
    the ``<pre>``, escaped, then ``deploy_stream_end``). The refresh fires once it has loaded."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"{refresh_meta(refresh)}<title>Application deployment in progress</title></head>\n"
        "<body><h1>Application deployment in progress</h1>\n"
        "<p>The application's deploy script runs; its output follows.</p>\n<pre>"
    ).encode()


def deploy_stream_end(summary: str) -> bytes:
    return (
        f"</pre>\n<p>{html.escape(summary)} This page reloads by itself.</p>\n"
        "<hr><address>Corral</address></body></html>\n"
    ).encode()


def error_response(
    status: int,
    *,
    message: str | None = None,
    details: str | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
    head_only: bool = False,
    date: bytes = b"",
    close: bool = True,
    refresh: int | None = None,
    reference: str | None = None,
) -> bytes:
    """A complete HTTP/1.1 error response (head and body, or only the head for HEAD)."""
    body = error_body(status, message, details, refresh=refresh, reference=reference)
    fields = [
        (b"Server", b"Corral"),
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
    ]
    if close:
        fields.append((b"Connection", b"close"))
    fields += ((name.encode("latin-1"), value.encode("latin-1")) for name, value in extra_headers)
    if date:
        fields.append((b"Date", date))
    head = response_head(status, reason_phrase(status).encode("latin-1"), fields)
    return head if head_only else head + body


_CACHE: dict[tuple[int, bool, bool], bytes] = {}


def canned(status: int, *, head_only: bool = False, close: bool = True) -> bytes:
    """The plain error response for ``status`` (no Date, no details), built once."""
    key = (status, head_only, close)
    page = _CACHE.get(key)
    if page is None:
        page = _CACHE[key] = error_response(status, head_only=head_only, close=close)
    return page
