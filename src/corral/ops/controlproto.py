"""The control socket's protocol: one JSON request, one JSON reply, one line each.

A client connects to the server's control socket, writes one request line and reads one reply
line; the server then closes the connection. Both are one JSON object (UTF-8) ending in
``\\n``, and carry the protocol's ``version`` (``VERSION``)::

    {"version": 1, "command": "status"}
    {"version": 1, "command": "restart", "app": "blog"}
    {"version": 1, "command": "scale", "app": "site/blog", "min": 2, "max": 4}

    {"version": 1, "ok": true, "result": ...}
    {"version": 1, "ok": false, "error": "no application 'blgo' (applications: blog, shop)"}

Commands (``COMMANDS``): ``info`` (who is serving: pid, configuration, version), ``status``
(the ``HostStatus`` document), ``restart`` (``app``), ``reload``, ``stop``, ``scale`` (``app``
and ``min`` and/or ``max``). A request of another version, an unknown command, a missing or
ill-typed field, or a line longer than ``MAX_REQUEST`` bytes is answered by an error reply.

Pure and stdlib only: the ``corral`` client imports it, and must start fast (hence named
tuples, not dataclasses, which import ``inspect``).
"""

from __future__ import annotations

import json
from typing import Final, NamedTuple

#: The protocol's version, in every request and reply.
VERSION: Final = 1

#: The longest request line the server reads (bytes, with its newline).
MAX_REQUEST: Final = 4096

INFO: Final = "info"
STATUS: Final = "status"
RESTART: Final = "restart"
RELOAD: Final = "reload"
STOP: Final = "stop"
SCALE: Final = "scale"

COMMANDS: Final = (INFO, STATUS, RESTART, RELOAD, STOP, SCALE)

#: The commands that name an application (``app``).
_WITH_APP: Final = frozenset({RESTART, SCALE})

#: The largest worker bound ``scale`` accepts (a typo guard, far above any real pool).
MAX_WORKERS: Final = 10_000


class ProtocolError(ValueError):
    """A request or reply that does not follow the protocol (the message says how)."""


class Request(NamedTuple):
    """One request (``check_request`` says whether it is well formed; ``encode_request``
    and ``decode_request`` check it)."""

    command: str
    #: The application (``NAME`` or ``SITE/NAME``): ``restart`` and ``scale``.
    app: str | None = None
    #: ``scale``'s new bounds (either may be left as it is).
    min: int | None = None
    max: int | None = None


class Reply(NamedTuple):
    ok: bool
    #: The command's result (``ok``): a JSON value (``status``: the status document).
    result: object = None
    #: Why the command failed (not ``ok``): one line for the user.
    error: str = ""


def check_request(request: Request) -> None:
    """``ProtocolError`` unless ``request`` is a well-formed request."""
    command = request.command
    if command not in COMMANDS:
        raise ProtocolError(f"unknown command {command!r} (commands: {', '.join(COMMANDS)})")
    if command in _WITH_APP:
        if not request.app:
            raise ProtocolError(f"{command}: name the application (app)")
    elif request.app is not None:
        raise ProtocolError(f"{command}: takes no application")
    if command == SCALE:
        low, high = request.min, request.max
        if low is None and high is None:
            raise ProtocolError("scale: give min, max or both")
        for name, value in (("min", low), ("max", high)):
            if value is not None and not 0 <= value <= MAX_WORKERS:
                raise ProtocolError(f"scale: {name} must be within 0..{MAX_WORKERS}, not {value}")
        if high == 0:
            raise ProtocolError("scale: max must be at least 1")
        if low is not None and high is not None and low > high:
            raise ProtocolError(f"scale: min ({low}) must not exceed max ({high})")
    elif request.min is not None or request.max is not None:
        raise ProtocolError(f"{command}: takes no min or max")


def _line(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _object(line: bytes, what: str) -> dict[str, object]:
    if not line.endswith(b"\n"):
        raise ProtocolError(f"the {what} does not end with a newline")
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the {what} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"the {what} is not a JSON object")
    version = document.get("version")
    if type(version) is not int:
        raise ProtocolError(f"the {what} has no version (this side speaks version {VERSION})")
    if version != VERSION:
        raise ProtocolError(f"{what} version {version} is not supported (only {VERSION} is)")
    return document


def _optional_int(document: dict[str, object], key: str) -> int | None:
    value = document.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise ProtocolError(f"{key} must be a whole number, not {value!r}")
    return value


def encode_request(request: Request) -> bytes:
    """The line for ``request``; ``ProtocolError`` when it is not well formed."""
    check_request(request)
    document: dict[str, object] = {"version": VERSION, "command": request.command}
    for key, value in (("app", request.app), ("min", request.min), ("max", request.max)):
        if value is not None:
            document[key] = value
    return _line(document)


def decode_request(line: bytes) -> Request:
    """The request on ``line`` (with its newline); ``ProtocolError`` says what is wrong."""
    if len(line) > MAX_REQUEST:
        raise ProtocolError(f"the request is longer than {MAX_REQUEST} bytes")
    document = _object(line, "request")
    unknown = document.keys() - {"version", "command", "app", "min", "max"}
    if unknown:
        raise ProtocolError(f"unknown request fields: {', '.join(sorted(unknown))}")
    command = document.get("command")
    if not isinstance(command, str):
        raise ProtocolError("the request names no command")
    app = document.get("app")
    if app is not None and not isinstance(app, str):
        raise ProtocolError(f"app must be a string, not {app!r}")
    request = Request(command, app, _optional_int(document, "min"), _optional_int(document, "max"))
    check_request(request)
    return request


def encode_reply(reply: Reply) -> bytes:
    if reply.ok:
        return _line({"version": VERSION, "ok": True, "result": reply.result})
    return _line({"version": VERSION, "ok": False, "error": reply.error or "failed"})


def decode_reply(line: bytes) -> Reply:
    """The reply on ``line`` (with its newline); ``ProtocolError`` says what is wrong."""
    document = _object(line, "reply")
    ok = document.get("ok")
    if ok is True:
        return Reply(True, document.get("result"))
    if ok is False:
        error = document.get("error")
        return Reply(False, error=error if isinstance(error, str) and error else "failed")
    raise ProtocolError("the reply says neither ok true nor ok false")
