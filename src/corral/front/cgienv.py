"""The CGI/1.1 variables sent to a backend with each request (FastCGI PARAMS).

Three layers, so that the hot path only builds what changes per request:

- per application (route): GATEWAY_INTERFACE, SERVER_SOFTWARE, SCRIPT_NAME, DOCUMENT_ROOT;
- per client connection: REMOTE_ADDR, REMOTE_PORT, SERVER_ADDR and the listener's SERVER_PORT;
- per request: everything else.

Header policy (RFC 9110 section 7.6.1, CGI RFC 3875 section 4.1.18):

- hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
  Upgrade, and any field named in Connection) are not forwarded;
- ``Proxy`` is dropped (httpoxy: it would become HTTP_PROXY, which many libraries read as their
  outgoing proxy);
- a field name holding ``_`` is dropped: ``X_Forwarded_For`` would otherwise be indistinguishable
  from ``X-Forwarded-For`` once mapped to HTTP_X_FORWARDED_FOR (spoofing);
- the forwarding fields (X-Forwarded-For, -Proto, -Host, ``Forwarded``: ``FORWARDING``) are
  dropped here, from every client: a client that is no trusted proxy must not fool an app that
  believes them (Django's ``SECURE_PROXY_SSL_HEADER``, werkzeug's ProxyFix). From a trusted
  proxy the exchange adds them back, resolved (``forward.from_proxy``), as an HTTP backend gets
  them;
- Content-Type and Content-Length become CONTENT_TYPE and CONTENT_LENGTH (the latter only when the
  body length is known: a chunked body is sent without it);
- repeated fields are joined with ", " (``; `` for Cookie), as RFC 9110 section 5.3 allows.

Script backends (php-cgi, php-fpm: a file handler such as ``*.php``) get the variables that name
the script file, as nginx's ``fastcgi_params`` and IIS's FastCGI module send them: see
``script_params``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from corral.protocol.memo import remember

Pairs = list[tuple[bytes, bytes]]

SERVER_SOFTWARE: Final = b"Corral"
#: Sent with every request of an application in development mode (DEVELOPMENT_MODE), so that
#: Corral's worker may show what only a developer should see (``corral.worker.info``).
DEVELOPMENT_PARAM: Final = b"CORRAL_DEVELOPMENT"
#: Sent, with a development application's requests only, when the client is local
#: (``details.local``): the worker may then answer an exception with its traceback page.
LOCAL_PARAM: Final = b"CORRAL_LOCAL_CLIENT"

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: The fields by which a proxy says who the client is (lower-case): believed only from a trusted
#: proxy (``FrontSettings.trusted_proxies``), never passed on as the client sent them.
FORWARDING: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)

#: Field name as received -> (CGI variable name, what the caller wants of it: ``_ROLES``), or
#: None to drop it. Bounded (hostile clients may send endless distinct names): emptied when
#: full (``corral.protocol.memo``).
_NAME_CACHE: dict[bytes, tuple[bytes, int] | None] = {}
_NAME_CACHE_MAX: Final = 2048
_PLAIN, _HOST, _REFERER, _AGENT, _COOKIE = range(5)
_ROLES: dict[bytes, int] = {
    b"HTTP_HOST": _HOST,
    b"HTTP_REFERER": _REFERER,
    b"HTTP_USER_AGENT": _AGENT,
    b"HTTP_COOKIE": _COOKIE,
}


def _cgi_name(name: bytes) -> bytes | None:
    lower = name.lower()
    if lower in HOP_BY_HOP or lower == b"proxy" or b"_" in name or lower in FORWARDING:
        return None
    if lower == b"content-type":
        return b"CONTENT_TYPE"
    if lower == b"content-length":
        return None  # CONTENT_LENGTH comes from the framing, never from the raw field
    return b"HTTP_" + name.upper().replace(b"-", b"_")


def _mapped(name: bytes) -> tuple[bytes, int] | None:
    """``_NAME_CACHE``'s entry for ``name`` (made and remembered on a miss)."""
    try:
        return _NAME_CACHE[name]
    except KeyError:
        key = _cgi_name(name)
        mapped = None if key is None else (key, _ROLES.get(key, _PLAIN))
        return remember(_NAME_CACHE, name, mapped, _NAME_CACHE_MAX)


def cgi_name(name: bytes) -> bytes | None:
    """Map a request field name to its CGI variable (None: not forwarded)."""
    mapped = _mapped(name)
    return None if mapped is None else mapped[0]


def route_params(script_name: bytes, document_root: bytes) -> Pairs:
    """Variables fixed for one application."""
    return [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", SERVER_SOFTWARE),
        (b"SCRIPT_NAME", script_name),
        (b"DOCUMENT_ROOT", document_root),
    ]


def connection_params(remote_addr: bytes, remote_port: bytes, server_addr: bytes) -> Pairs:
    """Variables fixed for one client connection."""
    return [
        (b"REMOTE_ADDR", remote_addr),
        (b"REMOTE_PORT", remote_port),
        (b"SERVER_ADDR", server_addr),
    ]


#: Corral's own cookie (the admin token after a dashboard or console login: ``ops.token``).
#: Cookies ignore ports, so a browser logged in to the admin listener on ``localhost`` sends it
#: to every application on ``localhost`` too: the front never passes it on.
ADMIN_COOKIE: Final = b"corral_admin"


def without_admin_cookie(value: bytes) -> bytes:
    """A Cookie field's value without Corral's own cookie (``ADMIN_COOKIE``); b"" when it
    held nothing else. Only called when the value contains the name."""
    kept = [
        pair
        for pair in value.split(b";")
        if pair.strip().partition(b"=")[0].strip() != ADMIN_COOKIE
    ]
    return b";".join(kept).strip()


def header_params(
    headers: Iterable[tuple[bytes, bytes]], out: Pairs
) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
    """Append the HTTP_* and CONTENT_TYPE variables to ``out``.

    Returns ``(host, referer, user_agent, connection)`` for the caller's own use (routing, access
    log, hop-by-hop names).
    """
    host = referer = agent = connection = None
    seen: dict[bytes, int] | None = None
    first = len(out)
    names = _NAME_CACHE
    for name, value in headers:
        mapped = names.get(name) or _mapped(name)
        if mapped is None:
            # Dropped; Connection (hop-by-hop) may name more fields to drop (below).
            if len(name) == 10 and name.lower() == b"connection":
                connection = value if connection is None else connection + b", " + value
            continue
        key, role = mapped
        if role:
            if role == _HOST:
                if host is None:
                    host = value
            elif role == _REFERER:
                referer = value
            elif role == _AGENT:
                agent = value
            elif ADMIN_COOKIE in value:
                value = without_admin_cookie(value)
                if not value:
                    continue
        if seen is None:
            seen = {key: len(out)}
            out.append((key, value))
            continue
        index = seen.get(key)
        if index is None:
            seen[key] = len(out)
            out.append((key, value))
        else:
            joiner = b"; " if role == _COOKIE else b", "
            out[index] = (key, out[index][1] + joiner + value)
    if connection is not None and seen is not None:
        _drop_named(connection, out, first)
    return host, referer, agent, connection


def _drop_named(connection: bytes, out: Pairs, first: int) -> None:
    """Remove from ``out[first:]`` the variables of the fields that ``connection`` (the
    Connection field's value) names as hop-by-hop, besides close and keep-alive."""
    dropped = set()
    for token in connection.split(b","):
        token = token.strip().lower()
        if token and token != b"close" and token != b"keep-alive":
            key = cgi_name(token)
            if key is not None:
                dropped.add(key)
    if dropped:
        out[first:] = [pair for pair in out[first:] if pair[0] not in dropped]


def script_params(
    virtual_path: bytes, script: bytes, script_path_info: bytes, physical_path: bytes
) -> Pairs:
    """The variables naming a script file for a file handler's request (php-cgi, php-fpm).

    ``virtual_path``: the application's SCRIPT_NAME prefix (b"" or b"/blog"); ``script`` and
    ``script_path_info``: the split `corral.routing` made below it (b"/dir/index.php",
    b"/extra"); ``physical_path``: the mount's folder (also DOCUMENT_ROOT).

    SCRIPT_NAME is the script's URL path, SCRIPT_FILENAME its file, PATH_INFO what follows it
    (always sent, empty when nothing follows: PHP then derives nothing from it), PATH_TRANSLATED
    that path info under the folder (only when there is one, as RFC 3875 4.1.6 says), and
    REDIRECT_STATUS=200, which php-cgi built with ``cgi.force_redirect`` requires.
    """
    params = [
        (b"SCRIPT_NAME", virtual_path + script),
        (b"SCRIPT_FILENAME", physical_path + script),
        (b"PATH_INFO", script_path_info),
        (b"REDIRECT_STATUS", b"200"),
    ]
    if script_path_info:
        params.append((b"PATH_TRANSLATED", physical_path + script_path_info))
    return params


def replace(params: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    """Set the CGI variable ``name`` (replaced where it is, else appended)."""
    for index, (key, _) in enumerate(params):
        if key == name:
            params[index] = (name, value)
            return
    params.append((name, value))
