"""Events produced by ``FastCGIConnection.next_event`` and accepted by ``send``.

Each event is one logical protocol step, not one record: ``Params`` carries the
whole, assembled PARAMS stream; stream events (``Stdin``, ``Stdout``,
``Stderr``, ``Data``) carry one record's worth of data, and ``data == b""``
marks the end of that stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from corral.protocol.fastcgi.constants import ProtocolStatus, Role


@dataclass(frozen=True, slots=True)
class BeginRequest:
    """FCGI_BEGIN_REQUEST. ``role`` is a ``Role`` member when known, else the raw number."""

    request_id: int
    role: int = Role.RESPONDER
    keep_conn: bool = False


@dataclass(frozen=True, slots=True)
class AbortRequest:
    """FCGI_ABORT_REQUEST: the client gives up on the request (its HTTP client went away)."""

    request_id: int


@dataclass(frozen=True, slots=True)
class EndRequest:
    """FCGI_END_REQUEST. ``protocol_status`` is a ``ProtocolStatus`` member when known."""

    request_id: int
    app_status: int = 0
    protocol_status: int = ProtocolStatus.REQUEST_COMPLETE


@dataclass(frozen=True, slots=True)
class Params:
    """The complete FCGI_PARAMS stream of a request (up to its empty record), decoded."""

    request_id: int
    params: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Stdin:
    """One FCGI_STDIN record; ``data == b""`` ends the stream."""

    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Stdout:
    """One FCGI_STDOUT record; ``data == b""`` ends the stream."""

    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Stderr:
    """One FCGI_STDERR record; ``data == b""`` ends the stream."""

    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Data:
    """One FCGI_DATA record (Filter role); ``data == b""`` ends the stream."""

    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class GetValues:
    """FCGI_GET_VALUES (request id 0): the client asks for these variables."""

    names: list[bytes]


@dataclass(frozen=True, slots=True)
class GetValuesResult:
    """FCGI_GET_VALUES_RESULT (request id 0): the application's answers."""

    values: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class UnknownType:
    """FCGI_UNKNOWN_TYPE: the application did not understand a management record."""

    record_type: int


@dataclass(frozen=True, slots=True)
class UnknownManagementRecord:
    """Responder side only: the client sent a management record (request id 0) of a type
    we do not know. Answer it with ``send(UnknownType(event.record_type))``."""

    record_type: int
    content: bytes = b""


StreamEvent: TypeAlias = Stdin | Stdout | Stderr | Data

Event: TypeAlias = (
    BeginRequest
    | AbortRequest
    | EndRequest
    | Params
    | Stdin
    | Stdout
    | Stderr
    | Data
    | GetValues
    | GetValuesResult
    | UnknownType
    | UnknownManagementRecord
)


class Sentinel(enum.Enum):
    """Non-event results of ``next_event``."""

    #: Feed more bytes with ``receive_data`` before asking again.
    NEED_DATA = "NEED_DATA"
    #: The peer closed the connection (``receive_data(b"")``) at a record boundary.
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED

NextEvent: TypeAlias = Event | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]
