"""The link between the supervisor and its front processes (``front_processes`` > 1), sans-IO.

Each message is a 4-byte big-endian length followed by that many bytes of compact JSON: an
object whose ``"t"`` names the message. A front's first message is ``Hello`` with the
``VERSION`` it speaks; the supervisor refuses another version (the two come from one
installation, so a mismatch is a bug, not a negotiation).

From the supervisor to a front::

    Routes(apps, reload)    the applications' ids (by site, virtual path, name); ``reload``:
                            read the configuration again first (SIGHUP, corral reload)
    Grant(app, slot, ...)   one slot of a worker (one of its connections) is the front's
    Revoke(app, slot)       give that slot back as soon as it is idle (its worker drains)
    Limit(app, keep)        hold at most ``keep`` slots (another front waits); -1: no limit
    Refuse(app, error)      the application's answer instead of a slot (503 and why)
    Drain() / Stop(grace) / Reopen()

From a front to the supervisor::

    Hello(pid, version)
    Demand(app, want)       how many of its requests wait for a slot now (absolute)
    Give(app, slot, lost, stuck)  a slot back; ``lost``: its worker closed the connection
                            (dead?); ``stuck``: its request got no answer in time (504)
    Stats(...)              its counters (totals), about once a second
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

#: The link's version, in ``Hello``.
VERSION = 1
#: A message larger than this is a broken peer, not a message (a Stats of many apps is a few
#: KiB).
MAX_MESSAGE = 16 * 1024 * 1024

_LENGTH = struct.Struct(">I")

#: A worker's address: a Unix socket's path, or (host, port).
WireAddress = str | tuple[str, int]


class LinkError(ValueError):
    """The peer sent something that is not a message of this link."""


@dataclass(frozen=True, slots=True)
class Figures:
    """One ``RequestStats``'s counters (``front/stats.py``), as plain values."""

    count: int = 0
    by_class: tuple[int, ...] = ()
    buckets: tuple[int, ...] = ()
    duration_sum: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a front's requests get no slot: the ``PoolError`` the supervisor's source raised."""

    #: "overloaded", "unavailable", "closed", "deploying", "deploy_failed".
    kind: str
    reason: str = ""
    stderr_tail: str = ""
    failures: int = 0
    retry_in: float | None = None
    gave_up: bool = False
    public: bool = False
    queue_size: int = 0


@dataclass(frozen=True, slots=True)
class Hello:
    pid: int
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Routes:
    #: (site, virtual path, name, app id) of every application with workers of its own.
    apps: tuple[tuple[str, str, str, int], ...]
    reload: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    app: int
    slot: int
    worker_id: int
    pid: int
    address: WireAddress


@dataclass(frozen=True, slots=True)
class Revoke:
    app: int
    slot: int


@dataclass(frozen=True, slots=True)
class Limit:
    app: int
    keep: int


@dataclass(frozen=True, slots=True)
class Refuse:
    app: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Drain:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    grace: float


@dataclass(frozen=True, slots=True)
class Reopen:
    pass


@dataclass(frozen=True, slots=True)
class Demand:
    app: int
    want: int


@dataclass(frozen=True, slots=True)
class Give:
    app: int
    slot: int
    lost: bool = False
    #: The request on it got no sign of life in time (the front's 504): its worker is taken
    #: for stuck, as past the request timeout.
    stuck: bool = False


@dataclass(frozen=True, slots=True)
class Stats:
    #: (app id, its figures).
    apps: tuple[tuple[int, Figures], ...] = ()
    connections_opened: int = 0
    #: Client connections open now.
    connections: int = 0
    #: (status, count) of requests refused before routing.
    protocol_errors: tuple[tuple[int, int], ...] = ()
    unrouted: Figures = Figures()


Message = (
    Hello | Routes | Grant | Revoke | Limit | Refuse | Drain | Stop | Reopen | Demand | Give | Stats
)


# ------------------------------------------------------------------------------- encoding


def _figures(f: Figures) -> list[object]:
    return [f.count, list(f.by_class), list(f.buckets), f.duration_sum, f.bytes_sent,
            f.bytes_received]  # fmt: skip


def _body(message: Message) -> dict[str, object]:
    if isinstance(message, Hello):
        return {"t": "hello", "pid": message.pid, "v": message.version}
    if isinstance(message, Routes):
        return {"t": "routes", "apps": [list(a) for a in message.apps], "reload": message.reload}
    if isinstance(message, Grant):
        address = message.address
        return {
            "t": "grant",
            "app": message.app,
            "slot": message.slot,
            "worker": message.worker_id,
            "pid": message.pid,
            "address": address if isinstance(address, str) else list(address),
        }
    if isinstance(message, Revoke):
        return {"t": "revoke", "app": message.app, "slot": message.slot}
    if isinstance(message, Limit):
        return {"t": "limit", "app": message.app, "keep": message.keep}
    if isinstance(message, Refuse):
        e = message.error
        return {
            "t": "refuse",
            "app": message.app,
            "kind": e.kind,
            "reason": e.reason,
            "tail": e.stderr_tail,
            "failures": e.failures,
            "retry_in": e.retry_in,
            "gave_up": e.gave_up,
            "public": e.public,
            "queue_size": e.queue_size,
        }
    if isinstance(message, Drain):
        return {"t": "drain"}
    if isinstance(message, Stop):
        return {"t": "stop", "grace": message.grace}
    if isinstance(message, Reopen):
        return {"t": "reopen"}
    if isinstance(message, Demand):
        return {"t": "demand", "app": message.app, "want": message.want}
    if isinstance(message, Give):
        return {
            "t": "give",
            "app": message.app,
            "slot": message.slot,
            "lost": message.lost,
            "stuck": message.stuck,
        }
    return {
        "t": "stats",
        "apps": [[app, _figures(f)] for app, f in message.apps],
        "opened": message.connections_opened,
        "open": message.connections,
        "errors": [list(pair) for pair in message.protocol_errors],
        "unrouted": _figures(message.unrouted),
    }


def encode(message: Message) -> bytes:
    """One message, framed."""
    data = json.dumps(_body(message), separators=(",", ":")).encode()
    return _LENGTH.pack(len(data)) + data


# ------------------------------------------------------------------------------- decoding


def _int(body: dict[str, object], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise LinkError(f"{key!r} is not an integer")
    return value


def _float(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LinkError(f"{key!r} is not a number")
    return float(value)


def _str(body: dict[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise LinkError(f"{key!r} is not a string")
    return value


def _bool(body: dict[str, object], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise LinkError(f"{key!r} is not a boolean")
    return value


def _list(value: object, key: str) -> list[object]:
    if not isinstance(value, list):
        raise LinkError(f"{key!r} is not a list")
    return value


def _ints(value: object, key: str) -> tuple[int, ...]:
    items = _list(value, key)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise LinkError(f"{key!r} holds a non-integer")
    return tuple(i for i in items if isinstance(i, int))


def _read_figures(value: object) -> Figures:
    items = _list(value, "figures")
    if len(items) != 6:
        raise LinkError("figures need 6 values")
    count, by_class, buckets, duration, sent, received = items
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in (count, sent, received)):
        raise LinkError("figures: counts must be integers")
    assert isinstance(count, int) and isinstance(sent, int) and isinstance(received, int)
    return Figures(
        count,
        _ints(by_class, "by_class"),
        _ints(buckets, "buckets"),
        _float(duration, "duration_sum"),
        sent,
        received,
    )


def _address(value: object) -> WireAddress:
    if isinstance(value, str):
        return value
    items = _list(value, "address")
    if len(items) == 2 and isinstance(items[0], str) and isinstance(items[1], int):
        return (items[0], items[1])
    raise LinkError("address: a path or [host, port]")


def _route(value: object) -> tuple[str, str, str, int]:
    items = _list(value, "apps")
    if len(items) == 4:
        site, path, name, ident = items
        if (
            isinstance(site, str)
            and isinstance(path, str)
            and isinstance(name, str)
            and isinstance(ident, int)
        ):
            return (site, path, name, ident)
    raise LinkError("routes: [site, path, name, id] expected")


def decode(data: bytes) -> Message:
    """One message's JSON (without its length). Raises ``LinkError``."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LinkError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise LinkError("not an object")
    kind = body.get("t")
    if kind == "hello":
        return Hello(_int(body, "pid"), _int(body, "v"))
    if kind == "routes":
        return Routes(tuple(_route(a) for a in _list(body.get("apps"), "apps")),
                      _bool(body, "reload"))  # fmt: skip
    if kind == "grant":
        return Grant(
            _int(body, "app"),
            _int(body, "slot"),
            _int(body, "worker"),
            _int(body, "pid"),
            _address(body.get("address")),
        )
    if kind == "revoke":
        return Revoke(_int(body, "app"), _int(body, "slot"))
    if kind == "limit":
        return Limit(_int(body, "app"), _int(body, "keep"))
    if kind == "refuse":
        retry = body.get("retry_in")
        return Refuse(
            _int(body, "app"),
            ErrorInfo(
                _str(body, "kind"),
                _str(body, "reason"),
                _str(body, "tail"),
                _int(body, "failures"),
                None if retry is None else _float(retry, "retry_in"),
                _bool(body, "gave_up"),
                _bool(body, "public"),
                _int(body, "queue_size"),
            ),
        )
    if kind == "drain":
        return Drain()
    if kind == "stop":
        return Stop(_float(body.get("grace"), "grace"))
    if kind == "reopen":
        return Reopen()
    if kind == "demand":
        return Demand(_int(body, "app"), _int(body, "want"))
    if kind == "give":
        return Give(
            _int(body, "app"), _int(body, "slot"), _bool(body, "lost"), _bool(body, "stuck")
        )
    if kind == "stats":
        errors: list[tuple[int, int]] = []
        for pair in _list(body.get("errors"), "errors"):
            values = _ints(pair, "errors")
            if len(values) != 2:
                raise LinkError("stats: [status, count] expected")
            errors.append((values[0], values[1]))
        apps: list[tuple[int, Figures]] = []
        for item in _list(body.get("apps"), "apps"):
            entry = _list(item, "apps")
            if len(entry) != 2 or not isinstance(entry[0], int):
                raise LinkError("stats: [app, figures] expected")
            apps.append((entry[0], _read_figures(entry[1])))
        return Stats(
            tuple(apps),
            _int(body, "opened"),
            _int(body, "open"),
            tuple(errors),
            _read_figures(body.get("unrouted")),
        )
    raise LinkError(f"unknown message {kind!r}")


class Decoder:
    """Bytes from the link in, whole messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """The messages ``data`` completes. Raises ``LinkError`` (then the link is broken)."""
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        while len(buffer) >= 4:
            (size,) = _LENGTH.unpack_from(buffer)
            if size > MAX_MESSAGE:
                raise LinkError(f"a message of {size} bytes")
            if len(buffer) < 4 + size:
                break
            messages.append(decode(bytes(buffer[4 : 4 + size])))
            del buffer[: 4 + size]
        return messages
