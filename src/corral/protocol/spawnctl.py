"""The line protocol between the host and an application's template process (preloaded workers).

The template (``corral.worker.template``) imports the application once, then forks workers on
request. Host and template talk over a Unix socketpair, one ASCII line per message, fields
separated by single spaces (the last field of a message may hold spaces: a reason):

Host to template::

    spawn ID            (with SCM_RIGHTS: listener, liveness read end, stdout, stderr)

Template to host::

    ready PID           the app is imported, its start hook ran: the template takes spawns
    nofork REASON       the app cannot be forked safely (threads after import); it exits
    spawned ID PID      worker ID is process PID (a child of the template)
    failed ID REASON    worker ID could not be forked
    exit PID CODE       a worker ended: CODE as asyncio reports it (minus the signal number)

Pure: no I/O. ``Decoder`` splits a byte stream into messages; ``encode`` makes one line.
Imported by the worker too (stdlib only).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The fds sent with ``spawn``, in this order.
SPAWN_FDS = ("listener", "liveness", "stdout", "stderr")
#: The longest line either side accepts (a reason is cut to fit).
MAX_LINE = 4096

_KINDS = {"spawn": 1, "ready": 1, "nofork": 1, "spawned": 2, "failed": 2, "exit": 2}
#: Messages whose last field is free text.
_TEXT_LAST = {"nofork", "failed"}


class ProtocolError(ValueError):
    """A line that is not a message of this protocol."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its kind, its integer fields, and its text (a reason, or "")."""

    kind: str
    numbers: tuple[int, ...] = ()
    text: str = ""


def encode(kind: str, *numbers: int, text: str = "") -> bytes:
    """One message as its line (newline included)."""
    if kind not in _KINDS:
        raise ProtocolError(f"unknown message {kind!r}")
    words = [kind, *(str(int(n)) for n in numbers)]
    count = _KINDS[kind]
    if kind in _TEXT_LAST:
        count -= 1
    if len(numbers) != count:
        raise ProtocolError(f"{kind} takes {count} number(s), not {len(numbers)}")
    if kind in _TEXT_LAST:
        clean = " ".join(text.split()) or "-"
        words.append(clean)
    line = " ".join(words)
    if len(line) >= MAX_LINE:
        line = line[: MAX_LINE - 1]
    return line.encode("ascii", "replace") + b"\n"


def decode(line: bytes) -> Message:
    """The message on one line (without its newline). ``ProtocolError`` if it is not one."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("a line that is not ASCII") from None
    kind, _, rest = text.partition(" ")
    if kind not in _KINDS:
        raise ProtocolError(f"unknown message {kind!r}")
    count = _KINDS[kind]
    if kind in _TEXT_LAST:
        parts = rest.split(" ", count - 1)
        number_fields, reason = parts[:-1], parts[-1]
        if len(number_fields) != count - 1 or not reason:
            raise ProtocolError(f"{kind}: expected {count - 1} number(s) and a reason")
    else:
        number_fields = rest.split(" ") if rest else []
        reason = ""
        if len(number_fields) != count:
            raise ProtocolError(f"{kind}: expected {count} number(s)")
    numbers: list[int] = []
    for field in number_fields:
        if not field or not (field.isdigit() or (field[0] == "-" and field[1:].isdigit())):
            raise ProtocolError(f"{kind}: {field!r} is not a number")
        numbers.append(int(field))
    return Message(kind, tuple(numbers), reason)


class Decoder:
    """Splits received bytes into messages; a line longer than ``MAX_LINE`` is an error."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[Message]:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        if len(self._pending) > MAX_LINE:
            raise ProtocolError("a line longer than the protocol allows")
        return [decode(line) for line in lines]
