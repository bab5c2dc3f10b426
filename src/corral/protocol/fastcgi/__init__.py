"""Sans-IO FastCGI 1.0 codec (stdlib only; the worker imports it in the app's interpreter).

See ``connection.FastCGIConnection`` for the state machine and its documented
choices, and ``records`` for the pure encoders/decoders and the fast
``encode_request`` / ``encode_response`` helpers.
"""

from corral.protocol.fastcgi.connection import (
    CLIENT,
    DEFAULT_MAX_PARAMS_SIZE,
    SERVER,
    ConnectionRole,
    FastCGIConnection,
)
from corral.protocol.fastcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    FCGI_NULL_REQUEST_ID,
    HEADER_LEN,
    MAX_CONTENT_LEN,
    ProtocolStatus,
    RecordType,
    Role,
)
from corral.protocol.fastcgi.errors import FastCGIError, LocalProtocolError, RemoteProtocolError
from corral.protocol.fastcgi.events import (
    CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    Data,
    EndRequest,
    Event,
    GetValues,
    GetValuesResult,
    NextEvent,
    Params,
    Sentinel,
    Stderr,
    Stdin,
    Stdout,
    StreamEvent,
    UnknownManagementRecord,
    UnknownType,
)
from corral.protocol.fastcgi.records import encode_request, encode_response

__all__ = [
    "CLIENT",
    "CLOSED",
    "DEFAULT_MAX_PARAMS_SIZE",
    "FCGI_KEEP_CONN",
    "FCGI_MAX_CONNS",
    "FCGI_MAX_REQS",
    "FCGI_MPXS_CONNS",
    "FCGI_NULL_REQUEST_ID",
    "HEADER_LEN",
    "MAX_CONTENT_LEN",
    "NEED_DATA",
    "SERVER",
    "AbortRequest",
    "BeginRequest",
    "ConnectionRole",
    "Data",
    "EndRequest",
    "Event",
    "FastCGIConnection",
    "FastCGIError",
    "GetValues",
    "GetValuesResult",
    "LocalProtocolError",
    "NextEvent",
    "Params",
    "ProtocolStatus",
    "RecordType",
    "RemoteProtocolError",
    "Role",
    "Sentinel",
    "Stderr",
    "Stdin",
    "Stdout",
    "StreamEvent",
    "UnknownManagementRecord",
    "UnknownType",
    "encode_request",
    "encode_response",
]
