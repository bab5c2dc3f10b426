"""A request's PEP 3333 environ from its FastCGI PARAMS: names and values decoded as latin-1
(native strings), then normalised (``finish_environ``).

``environ_from_params`` is the worker's hot path (a whole PARAMS stream, straight into the
environ); ``build_environ`` the general one over decoded pairs (``records.decode_pairs``),
which also reports a malformed stream. Both give the same environ for any params (tested with
hypothesis). Stdlib and the codec's records only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.protocol.fastcgi import records

#: Decoded param names (the same few dozen arrive with every request).
PARAM_NAMES: dict[bytes, str] = {}
_NAMES_MAX = 512
#: A 4-byte length field: its top bit set, the length in the other 31.
_LONG_LENGTH = 0x7FFFFFFF


def environ_from_params(base: dict[str, Any], data: bytes) -> dict[str, Any]:
    """``build_environ`` for a whole PARAMS stream, decoded straight into the environ.

    The stream is decoded as latin-1 once, and names and values are slices of that text (a
    latin-1 text has one character per byte, so the lengths read from ``data`` index it too):
    no decode call per name and per value. Pairs with 1-byte lengths (names, and values under
    128 bytes: most of them) take the short loop; from the first pair with a 4-byte length on
    (a long cookie or user agent), ``_long_pairs`` goes on. A malformed stream goes through
    ``build_environ`` over ``records.decode_pairs``, which reports it.

    The pairs an application's streams begin with alike (the front sends its route's first:
    GATEWAY_INTERFACE, SERVER_SOFTWARE, SCRIPT_NAME, DOCUMENT_ROOT) are remembered decoded
    (``_Prefix``): a stream that begins with their bytes starts from them."""
    prefix = _prefix
    if prefix is not None and prefix.base is base and data.startswith(prefix.data):
        environ = prefix.environ.copy()
        pos = len(prefix.data)
    else:
        environ = base.copy()
        pos = 0
        _missed(base, data)
    text = data.decode("latin-1")
    end = len(data)
    try:
        while pos < end:
            n = data[pos]
            v = data[pos + 1]
            if (n | v) & 128:
                break
            start = pos + 2
            mid = start + n
            pos = mid + v
            # (A pair that overruns the stream is cut by the slice: then ``pos`` is past
            # ``end`` and the general path reports it.)
            environ[text[start:mid]] = text[mid:pos]
    except IndexError:  # a value length missing: malformed
        return build_environ(base, records.decode_pairs(data))
    if pos == end or (pos < end and _long_pairs(environ, data, text, pos)):
        return finish_environ(environ)
    return build_environ(base, records.decode_pairs(data))


class _Prefix:
    """Whole pairs that began the last PARAMS streams alike: their bytes, and ``base`` with
    them decoded (never changed once made: copied for each request)."""

    __slots__ = ("base", "data", "environ")

    def __init__(self, base: dict[str, Any], data: bytes, environ: dict[str, Any]) -> None:
        self.base = base
        self.data = data
        self.environ = environ


_prefix: _Prefix | None = None
#: Streams that found no prefix to start from (after the pairs all streams begin with alike
#: ran out, a new start from a stream now and then).
_misses = 0
_PREFIX_MAX = 2048


def _missed(base: dict[str, Any], data: bytes) -> None:
    """A stream that does not begin with the remembered pairs: keep those it begins with too
    (the first stream's pairs at first, then fewer and fewer: what every stream begins with).
    With none left, a new start from a stream at every 1024th (a front whose first pair
    changes with each request, say QUERY_STRING, costs next to nothing)."""
    global _prefix, _misses
    prefix = _prefix
    if prefix is None or prefix.base is not base:
        _misses += 1
        if _misses > 1 and _misses & 1023:
            return
        same = min(len(data), _PREFIX_MAX)
    else:
        # The bytes the remembered pairs and this stream begin with (a binary search).
        known = prefix.data
        same = 0
        high = min(len(data), len(known))
        while same < high:
            mid = (same + high + 1) // 2
            if data.startswith(known[same:mid], same):
                same = mid
            else:
                high = mid - 1
    # The whole pairs (1-byte lengths) within those bytes.
    environ = base.copy()
    pos = 0
    while pos + 2 <= same:
        n = data[pos]
        v = data[pos + 1]
        mid = pos + 2 + n
        stop = mid + v
        if (n | v) & 128 or stop > same:
            break
        environ[data[pos + 2 : mid].decode("latin-1")] = data[mid:stop].decode("latin-1")
        pos = stop
    _prefix = _Prefix(base, data[:pos], environ) if pos else None


def _long_pairs(environ: dict[str, Any], data: bytes, text: str, pos: int) -> bool:
    """The pairs from ``pos`` on, with 1- or 4-byte lengths, into ``environ``; False when the
    stream is malformed (the caller starts again the general way)."""
    end = len(data)
    while pos < end:
        n = data[pos]
        if n > 127:
            if pos + 4 > end:
                return False
            n = int.from_bytes(data[pos : pos + 4], "big") & _LONG_LENGTH
            pos += 4
        else:
            pos += 1
        if pos >= end:
            return False
        v = data[pos]
        if v > 127:
            if pos + 4 > end:
                return False
            v = int.from_bytes(data[pos : pos + 4], "big") & _LONG_LENGTH
            pos += 4
        else:
            pos += 1
        mid = pos + n
        stop = mid + v
        if stop > end:
            return False
        environ[text[pos:mid]] = text[mid:stop]
        pos = stop
    return True


def build_environ(base: dict[str, Any], params: Iterable[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The environ for one request from its FastCGI params.

    Names and values are decoded as latin-1 (PEP 3333 native strings). SCRIPT_NAME and
    PATH_INFO are taken as the front sent them (PATH_INFO is already URL-decoded by the front,
    per CGI): they are never unquoted here. Defaults (from ``base``) fill what WSGI requires.
    """
    environ = base.copy()
    names = PARAM_NAMES
    for name, value in params:
        key = names.get(name)
        if key is None:
            key = param_name(name)
        environ[key] = value.decode("latin-1")
    return finish_environ(environ)


def param_name(name: bytes) -> str:
    """A param's name as an environ key (remembered in ``PARAM_NAMES``)."""
    key = name.decode("latin-1")
    if len(PARAM_NAMES) < _NAMES_MAX:
        PARAM_NAMES[name] = key
    return key


def finish_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """Normalise an environ filled from a front's params (see ``build_environ``)."""
    script_name = environ["SCRIPT_NAME"]
    if script_name[-1:] == "/":
        # PEP 3333: the root is "", and PATH_INFO carries the slash.
        stripped = script_name.rstrip("/")
        path_info = environ["PATH_INFO"]
        environ["SCRIPT_NAME"] = stripped
        if not path_info.startswith("/"):
            environ["PATH_INFO"] = "/" + path_info
    # CGI puts these two without the HTTP_ prefix; some fronts send both.
    if "HTTP_CONTENT_TYPE" in environ:
        value = environ.pop("HTTP_CONTENT_TYPE")
        environ.setdefault("CONTENT_TYPE", value)
    if "HTTP_CONTENT_LENGTH" in environ:
        value = environ.pop("HTTP_CONTENT_LENGTH")
        environ.setdefault("CONTENT_LENGTH", value)
    if "HTTPS" in environ:
        https = environ["HTTPS"]
        if https and https.lower() in ("on", "1", "yes", "true"):
            environ["wsgi.url_scheme"] = "https"
    return environ
