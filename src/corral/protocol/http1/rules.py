"""The request parser's tables: request-target and Host syntax, methods and trailer fields
refused, and how an llhttp error maps to a status (see ``parser.py``)."""

from __future__ import annotations

import re
from typing import Final

import httptools

from .errors import HTTPProtocolError

# RFC 3986 authority: [ userinfo "@" ] host [ ":" port ], host a reg-name or an IP literal.
_HOST: Final = (
    rb"(?:\[[0-9A-Fa-f:.]+\]"  # IPv6
    rb"|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"  # IPvFuture
    rb"|[A-Za-z0-9\-._~!$&'()*+,;=%]+)"  # reg-name / IPv4
)
_ABSOLUTE_FORM: Final = re.compile(
    rb"[A-Za-z][A-Za-z0-9+.\-]*://(?:[A-Za-z0-9\-._~!$&'()*+,;=:%]*@)?"
    + _HOST
    + rb"(?::[0-9]*)?(?=[/?#]|\Z)"
)
_AUTHORITY_FORM: Final = re.compile(_HOST + rb":[0-9]+\Z")
#: RFC 9110 7.2: Host = uri-host [ ":" port ] (empty allowed). Checked because the front
#: routes on it: no "/", "\\", "@" or whitespace can reach a virtual-host lookup.
_HOST_FIELD: Final = re.compile(rb"(?:" + _HOST + rb"(?::[0-9]*)?)?\Z")

#: Methods llhttp accepts only with the RTSP/1.0 protocol: seeing one means the request line
#: said RTSP, not HTTP (httptools does not expose the protocol name). A backstop behind the
#: byte checks of ``_check_request_line`` and ``_check_pipelined``.
_RTSP_ONLY_METHODS: Final = frozenset(
    {
        b"DESCRIBE",
        b"ANNOUNCE",
        b"SETUP",
        b"PLAY",
        b"PAUSE",
        b"TEARDOWN",
        b"GET_PARAMETER",
        b"SET_PARAMETER",
        b"REDIRECT",
        b"RECORD",
        b"FLUSH",
    }
)

#: RFC 9110 6.5.1: fields that cannot be processed outside the header section (framing,
#: routing, connection control, request modifiers, authentication). We refuse them in
#: trailers rather than risk a component merging them; other trailers are passed on.
_FORBIDDEN_TRAILERS: Final = frozenset(
    {
        b"transfer-encoding",
        b"content-length",
        b"host",
        b"trailer",
        b"te",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"expect",
        b"max-forwards",
        b"authorization",
        b"proxy-authorization",
        b"content-encoding",
        b"content-range",
    }
)


def _map_llhttp_error(exc: Exception) -> HTTPProtocolError:
    """Turn an httptools error (llhttp's static reason strings) into a status."""
    message = str(exc)
    if isinstance(exc, httptools.HttpParserCallbackError):
        # One of our callbacks failed without an HTTPProtocolError: a bug, not bad input.
        cause = exc.__context__
        return HTTPProtocolError(500, f"request parser failure ({type(cause).__name__})")
    if isinstance(exc, httptools.HttpParserInvalidURLError):
        return HTTPProtocolError(400, f"invalid request target ({message})")
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return HTTPProtocolError(400, f"invalid or unknown method ({message})")
    if message == "Invalid HTTP version" or message.startswith("Pause on PRI"):
        return HTTPProtocolError(505, "HTTP version not supported")
    if message in ("Content-Length overflow", "Chunk size overflow"):
        return HTTPProtocolError(413, message)
    return HTTPProtocolError(400, f"malformed request ({message})")
