"""FastCGI 1.0 constants (record types, roles, protocol statuses, limits).

Stdlib only: imported by the worker inside the application's own interpreter.
"""

from __future__ import annotations

import enum
from typing import Final

#: The only protocol version FastCGI defines.
FCGI_VERSION_1: Final = 1
#: Every record starts with an 8-byte header.
HEADER_LEN: Final = 8
#: The content length field is 16 bits wide.
MAX_CONTENT_LEN: Final = 0xFFFF
#: The padding length field is 8 bits wide.
MAX_PADDING_LEN: Final = 0xFF
#: Management records (GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE) use request id 0.
FCGI_NULL_REQUEST_ID: Final = 0
#: Highest request id (16 bits).
MAX_REQUEST_ID: Final = 0xFFFF
#: BEGIN_REQUEST flag: keep the connection open after this request ends.
FCGI_KEEP_CONN: Final = 1

#: Names a client may ask about with GET_VALUES.
FCGI_MAX_CONNS: Final = b"FCGI_MAX_CONNS"
FCGI_MAX_REQS: Final = b"FCGI_MAX_REQS"
FCGI_MPXS_CONNS: Final = b"FCGI_MPXS_CONNS"
#: Not FastCGI 1.0: the FCGI_GET_VALUES name by which Corral's worker says that it serves
#: requests queued on one connection one after another (the front's pipelining). Other
#: responders do not know the name and leave it out of their answer, as the spec says.
CORRAL_PIPELINE = b"CORRAL_PIPELINE"
#: Not FastCGI 1.0 either: Corral's worker answers "1" when it starts a thread per connection on
#: demand, up to FCGI_MAX_CONNS, and lets idle ones go: the host may then open as few of those
#: connections as the load needs (adaptive concurrency, ``supervision/concurrency.py``).
CORRAL_ELASTIC = b"CORRAL_ELASTIC"
#: Most requests one connection carries at once when requests queue on it (Corral's
#: pipelining): the bound of ``pipeline_depth``, and the size of the FastCGI client's tables of
#: request ids. One number, here, where the worker can import it too.
MAX_PIPELINE_DEPTH: Final = 16


class RecordType(enum.IntEnum):
    """The record types of FastCGI 1.0 (``FCGI_MAXTYPE`` is ``UNKNOWN_TYPE``)."""

    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11


#: Record types that travel with request id 0.
MANAGEMENT_RECORD_TYPES: Final = frozenset(
    {RecordType.GET_VALUES, RecordType.GET_VALUES_RESULT, RecordType.UNKNOWN_TYPE}
)


class Role(enum.IntEnum):
    """The role a BEGIN_REQUEST asks the application to play."""

    RESPONDER = 1
    AUTHORIZER = 2
    FILTER = 3


class ProtocolStatus(enum.IntEnum):
    """The protocol-level outcome carried by END_REQUEST."""

    REQUEST_COMPLETE = 0
    CANT_MPX_CONN = 1
    OVERLOADED = 2
    UNKNOWN_ROLE = 3
