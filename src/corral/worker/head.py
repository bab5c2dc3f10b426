"""A WSGI response's head: the status and headers an application gives ``start_response``,
checked (PEP 3333: native latin-1 strings; HTTP: header names are tokens, values hold no control
characters, no hop-by-hop header, one Content-Length) and encoded as the CGI head the front
reads (``Status: ...`` and the header lines, without the blank line).

The same few statuses and (name, value) pairs come with every response: each one checked is
remembered with its encoded line in a bounded table (emptied when full), so a known pair costs
one look-up instead of a type check, a regular expression and an encoding. Stdlib only.
"""

from __future__ import annotations

import re

from corral.protocol.memo import remember

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_STATUS = re.compile(r"[1-9][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LATIN1 = "status and headers must be latin-1 (PEP 3333)"


class InvalidResponse(ValueError):
    """The application's status or headers break PEP 3333 or HTTP (raised by start_response)."""


#: Statuses already checked -> their ``Status:`` line.
_GOOD_STATUSES: dict[str, bytes] = {}
_STATUSES_MAX = 512
#: Header names already checked -> their lower-case form.
_GOOD_NAMES: dict[str, str] = {}
_NAMES_MAX = 512
#: Header pairs already checked -> (their encoded line, the Content-Length they declare or -1);
#: pairs with long values (a session cookie) are not remembered. Each table is emptied when full
#: (``corral.protocol.memo``), so that it follows what the app sends lately.
_GOOD_PAIRS: dict[tuple[str, str], tuple[bytes, int]] = {}
PAIRS_MAX = 512
_PAIR_VALUE_MAX = 512


def encode_head(status: str, headers: list[tuple[str, str]]) -> tuple[bytes, int | None]:
    """Check the status and headers; return the head (without the blank line), encoded, and
    the declared Content-Length. Raises InvalidResponse."""
    line = _GOOD_STATUSES.get(status) if type(status) is str else None
    if line is None:
        line = _status_line(status)
    if not isinstance(headers, list):
        raise InvalidResponse(f"headers must be a list, not {type(headers).__name__}")
    parts = [line]
    length: int | None = None
    good = _GOOD_PAIRS
    for item in headers:
        known = None
        if type(item) is tuple:
            try:
                known = good.get(item)
            except TypeError:  # an unhashable name or value: _check_pair says what is wrong
                pass
        if known is None:
            known = _check_pair(item)
        declared = known[1]
        if declared >= 0:
            if length is not None and length != declared:
                raise InvalidResponse("conflicting Content-Length headers")
            length = declared
        parts.append(known[0])
    return b"".join(parts), length


def _status_line(status: str) -> bytes:
    """Validate a status; return its CGI ``Status:`` line."""
    if type(status) is not str:
        raise InvalidResponse(f"status must be a str, not {type(status).__name__}")
    if _STATUS.match(status) is None:
        raise InvalidResponse(f"status {status!r} is not 'NNN reason'")
    if status[0] == "1":
        raise InvalidResponse(f"status {status!r}: a WSGI response cannot be informational")
    try:
        line = f"Status: {status}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidResponse(_LATIN1) from None
    return remember(_GOOD_STATUSES, status, line, _STATUSES_MAX)


def _check_pair(item: object) -> tuple[bytes, int]:
    """Validate a header; return its encoded line and the Content-Length it declares (-1 for
    another header), and remember them."""
    if type(item) is not tuple or len(item) != 2:
        raise InvalidResponse(f"header {item!r} is not a (name, value) tuple")
    name, value = item
    if type(name) is not str or type(value) is not str:
        raise InvalidResponse(f"header {item!r}: name and value must be str")
    lower = _GOOD_NAMES.get(name)
    if lower is None:
        lower = _check_name(name)
    if _BAD_VALUE.search(value) is not None:
        raise InvalidResponse(f"header {name!r}: its value holds control characters")
    declared = -1
    if lower == "content-length":
        stripped = value.strip()
        if not stripped.isdigit() or not stripped.isascii():
            raise InvalidResponse(f"Content-Length {value!r} is not a number")
        declared = int(stripped)
    try:
        known = (f"{name}: {value}\r\n".encode("latin-1"), declared)
    except UnicodeEncodeError:
        raise InvalidResponse(_LATIN1) from None
    if len(value) <= _PAIR_VALUE_MAX:
        remember(_GOOD_PAIRS, (name, value), known, PAIRS_MAX)
    return known


def _check_name(name: str) -> str:
    """Validate a header name; return its lower-case form."""
    if _TOKEN.match(name) is None:
        raise InvalidResponse(f"header name {name!r} is not an HTTP token")
    lower = name.lower()
    if lower in HOP_BY_HOP:
        raise InvalidResponse(
            f"header {name!r} is hop-by-hop: a WSGI application must not send it (PEP 3333)"
        )
    if lower == "status":
        raise InvalidResponse("'Status' is not a response header (use the status argument)")
    return remember(_GOOD_NAMES, name, lower, _NAMES_MAX)
