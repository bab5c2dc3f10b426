"""The request target, taken apart the way CGI wants it (pure functions).

Choices (documented in docs/architecture.md, "The path of a request"):

- PATH_INFO is the percent-decoded path. Bytes go through unchanged to the worker, which decodes
  them as latin-1 as PEP 3333 wants (so UTF-8 paths arrive as the usual "WSGI string").
- ``%2F`` is decoded to ``/`` like nginx, Apache (``AllowEncodedSlashes On``) and gunicorn do; an
  application that must tell them apart reads the raw REQUEST_URI, which is passed unchanged.
- Dot segments (``/a/../b``) are removed after decoding, so that routing by virtual path cannot be
  sidestepped with ``/app/%2e%2e/other``; a path that climbs above the root is a 400.
- A decoded NUL byte is a 400.
- The absolute form (``GET http://host/path``) is split by the parser; its authority is the Host.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_to_bytes

from corral.protocol.memo import remember


class BadTarget(ValueError):
    """The request target cannot be turned into a path (answered with ``status``: 400)."""

    status = 400


class OutsideRoot(BadTarget):
    """The path's ``..`` segments climb above ``/``: it names nothing this server has (404).

    The request is well formed, so the connection stays usable; the answer is the one any
    other missing resource gets, which tells a prober nothing about the file system.
    """

    status = 404


def decode_path(raw_path: bytes) -> bytes:
    """The percent-decoded, dot-segment-free path of a request (raw bytes, not text)."""
    if raw_path[:1] != b"/":
        if raw_path in (b"*", b""):
            return raw_path
        raise BadTarget("the request path does not start with /")
    # (``find``, not ``in``: on Python 3.11 ``bytes in bytes`` first tries the operand as an
    # int, and raises and clears a TypeError each time; these run for every request.)
    path = unquote_to_bytes(raw_path) if raw_path.find(b"%") >= 0 else raw_path
    if path.find(b"\x00") >= 0:
        raise BadTarget("the path contains a NUL byte")
    if path.find(b"/.") >= 0:
        path = remove_dot_segments(path)
    return path


#: Raw paths -> their ``decode_path``: kept-alive clients ask for the same paths again and
#: again. Short paths only; bounded, emptied when full (``corral.protocol.memo``). The caller
#: looks here first (``PATHS.get(raw) or decode_path_remembered(raw)``).
PATHS: dict[bytes, bytes] = {}
_PATHS_MAX: Final = 4096
_PATH_KEPT_MAX: Final = 128


def decode_path_remembered(raw_path: bytes) -> bytes:
    """``decode_path``, remembered in ``PATHS`` when short (raises as it does)."""
    path = decode_path(raw_path)
    if len(raw_path) <= _PATH_KEPT_MAX:
        remember(PATHS, raw_path, path, _PATHS_MAX)
    return path


def remove_dot_segments(path: bytes) -> bytes:
    """Resolve ``.`` and ``..`` segments of an absolute path (RFC 3986 section 5.2.4)."""
    segments = path.split(b"/")
    out: list[bytes] = []
    for segment in segments[1:]:
        if segment == b".":
            continue
        if segment == b"..":
            if not out:
                raise OutsideRoot("the path climbs above the root")
            out.pop()
            continue
        out.append(segment)
    trailing = segments[-1] in (b".", b"..")
    result = b"/" + b"/".join(out)
    if trailing and not result.endswith(b"/"):
        result += b"/"
    return result


def split_host(host: bytes, default_port: bytes) -> tuple[bytes, bytes]:
    """Split a Host value into ``(name, port)``; brackets of an IPv6 literal are kept."""
    if host.startswith(b"["):
        end = host.find(b"]")
        if end < 0:
            return host, default_port
        name = host[: end + 1]
        rest = host[end + 1 :]
        port = rest[1:] if rest.startswith(b":") and rest[1:].isdigit() else default_port
        return name, port
    colon = host.rfind(b":")
    if colon >= 0:
        port = host[colon + 1 :]
        return host[:colon], (port if port.isdigit() else default_port)
    return host, default_port
