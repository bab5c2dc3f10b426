"""The sans-IO FastCGI connection: bytes in, events out; events in, bytes out.

``FastCGIConnection(CLIENT)`` is the web-server side (the front's backend
client); ``FastCGIConnection(SERVER)`` is the application side (the worker, a
Responder). Both roles enforce the same per-request state table (``_RULES``
below) on what the peer sends (``RemoteProtocolError``) and on what we send
(``LocalProtocolError``). The class is not thread-safe.

Decisions where FastCGI 1.0 is silent or loose:

* A record of a type we do not know, or of a known type in the wrong
  direction, carrying a request id other than 0 is a ``RemoteProtocolError``
  (there is no way to answer it). With request id 0 a responder yields
  ``UnknownManagementRecord`` so the application can answer ``UNKNOWN_TYPE``;
  a client raises ``RemoteProtocolError``.
* After the responder has sent END_REQUEST, the client may still have
  PARAMS/STDIN/DATA/ABORT_REQUEST records for that request in flight (the
  application may end a request before reading its body). The responder keeps
  a tombstone that silently drops them until the input streams end (or a new
  BEGIN_REQUEST reuses the id). Other stream records for a request that is not
  active are a ``RemoteProtocolError``; an ABORT_REQUEST for one is ignored
  (it may have crossed our END_REQUEST).
  The client side forgets a request as soon as END_REQUEST arrives, so a
  later record for it is a ``RemoteProtocolError``, and sending on it a
  ``LocalProtocolError``.
* END_REQUEST is accepted (and may be sent) whether or not STDOUT/STDERR were
  closed with their empty records; ``send_response`` always closes STDOUT.
* EOF (``receive_data(b"")``) at a record boundary yields ``CLOSED``, unless
  the peer still owed us records: a client waiting for END_REQUEST, or a
  responder whose request's PARAMS/STDIN (and DATA for a Filter) streams are
  unfinished and not aborted. EOF inside a record is always an error.
* GET_VALUES_RESULT is accepted by a client whether or not it asked.
* ABORT_REQUEST content is ignored; BEGIN_REQUEST, END_REQUEST and
  UNKNOWN_TYPE bodies must be exactly 8 bytes.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from corral.protocol.fastcgi import records, responder
from corral.protocol.fastcgi.constants import (
    HEADER_LEN,
    MAX_CONTENT_LEN,
    MAX_REQUEST_ID,
    RecordType,
    Role,
)
from corral.protocol.fastcgi.errors import LocalProtocolError, RemoteProtocolError
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
    Stderr,
    Stdin,
    Stdout,
    UnknownManagementRecord,
    UnknownType,
)

__all__ = ["CLIENT", "DEFAULT_MAX_PARAMS_SIZE", "SERVER", "ConnectionRole", "FastCGIConnection"]


class ConnectionRole(enum.Enum):
    """Which end of the connection we are."""

    #: The web server (sends BEGIN_REQUEST, PARAMS, STDIN, DATA, ABORT_REQUEST, GET_VALUES).
    CLIENT = "client"
    #: The application, a Responder (sends STDOUT, STDERR, END_REQUEST, GET_VALUES_RESULT).
    SERVER = "server"


CLIENT: Final = ConnectionRole.CLIENT
SERVER: Final = ConnectionRole.SERVER

DEFAULT_MAX_PARAMS_SIZE: Final = 1 << 20

_T = RecordType


# --------------------------------------------------------------------------------------------
# The state table: the one place that says who may send what, and when.
#
# A request's life:   (none) --BEGIN_REQUEST[client]--> ACTIVE
#                     ACTIVE --ABORT_REQUEST[client]--> ACTIVE (aborted)
#                     ACTIVE --END_REQUEST[server]----> ENDED
# (the client forgets an ENDED request at once; the responder keeps it as a
# tombstone that swallows the client's in-flight input until a new BEGIN_REQUEST).
#
# While ACTIVE, each stream record is allowed when its sender matches, its stream
# has not ended (an empty record ends it), and the streams listed in `after` have
# ended: BEGIN -> PARAMS* -> empty PARAMS -> STDIN* (and DATA*) -> empty STDIN;
# STDOUT* / STDERR* (any time) -> END_REQUEST.
# --------------------------------------------------------------------------------------------


_BEGIN: Final = int(_T.BEGIN_REQUEST)
_ABORT: Final = int(_T.ABORT_REQUEST)
_END: Final = int(_T.END_REQUEST)
_PARAMS: Final = int(_T.PARAMS)
_STDIN: Final = int(_T.STDIN)
_STDOUT: Final = int(_T.STDOUT)
_STDERR: Final = int(_T.STDERR)
_DATA: Final = int(_T.DATA)
_GET_VALUES: Final = int(_T.GET_VALUES)
_GET_VALUES_RESULT: Final = int(_T.GET_VALUES_RESULT)


@dataclass(frozen=True, slots=True)
class _Rule:
    sender: ConnectionRole
    after: int  # bit mask (1 << record type) of streams that must have ended first
    event: type[Stdin | Stdout | Stderr | Data] | None  # None: PARAMS, assembled


def _bits(*types: int) -> int:
    mask = 0
    for t in types:
        mask |= 1 << t
    return mask


_STREAM_RULES: Final[dict[int, _Rule]] = {
    _PARAMS: _Rule(CLIENT, 0, None),
    _STDIN: _Rule(CLIENT, _bits(_PARAMS), Stdin),
    _DATA: _Rule(CLIENT, _bits(_PARAMS), Data),
    _STDOUT: _Rule(SERVER, 0, Stdout),
    _STDERR: _Rule(SERVER, 0, Stderr),
}
_LIFECYCLE_SENDER: Final[dict[int, ConnectionRole]] = {
    _BEGIN: CLIENT,
    _ABORT: CLIENT,
    _END: SERVER,
}
#: Management records (request id 0) each side may send.
_MANAGEMENT_SENDER: Final[dict[int, ConnectionRole]] = {
    _GET_VALUES: CLIENT,
    _GET_VALUES_RESULT: SERVER,
    int(_T.UNKNOWN_TYPE): SERVER,
}
#: Input streams a responder is owed before EOF is acceptable, by FastCGI role.
_INPUT_OWED: Final[dict[int, int]] = {
    Role.RESPONDER: _bits(_PARAMS, _STDIN),
    Role.AUTHORIZER: _bits(_PARAMS, _STDIN),
    Role.FILTER: _bits(_PARAMS, _STDIN, _DATA),
}
_DEFAULT_OWED: Final = _bits(_PARAMS, _STDIN)

_PARAMS_BIT: Final = 1 << _PARAMS
_STDIN_BIT: Final = 1 << _STDIN
_STREAM_EVENTS: Final = {Stdin: _STDIN, Stdout: _STDOUT, Stderr: _STDERR, Data: _DATA}
_HEADER_AT: Final = records.header_at
#: A record header's content and padding lengths (at its offset 4).
_LENGTHS: Final = struct.Struct(">HB").unpack_from
_MAX_TYPE: Final = max(_T)


_STDOUT_BIT: Final = 1 << _STDOUT
_ROLE_RESPONDER: Final = Role.RESPONDER


def _type_name(record_type: int) -> str:
    return _T(record_type).name if 1 <= record_type <= _MAX_TYPE else f"type-{record_type}"


class _Request:
    __slots__ = ("aborted", "closed", "ended", "keep_conn", "params", "params_size", "role")

    def __init__(self, role: int, keep_conn: bool) -> None:
        self.role = role
        self.keep_conn = keep_conn
        self.closed = 0  # bit mask of ended streams
        self.ended = False
        self.aborted = False
        self.params: list[bytes] = []
        self.params_size = 0


class FastCGIConnection:
    """One FastCGI transport connection, either end, any number of requests."""

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_lent",
        "_must_close",
        "_pad",
        "_pad_empty",
        "_pos",
        "_requests",
        "_split_params",
        "max_params_size",
        "role",
    )

    def __init__(
        self,
        role: ConnectionRole,
        *,
        split_params: bool = True,
        pad_empty_records: bool = False,
        pad: bool = True,
        max_params_size: int = DEFAULT_MAX_PARAMS_SIZE,
    ) -> None:
        """``split_params=False`` (php-fpm) never splits a name-value pair across PARAMS
        records. ``pad`` pads content to a multiple of 8 bytes; empty records get no
        padding unless ``pad_empty_records``. ``max_params_size`` bounds the PARAMS
        stream we accept per request (bytes of encoded pairs)."""
        if not isinstance(role, ConnectionRole):
            raise TypeError(f"role must be CLIENT or SERVER, not {role!r}")
        self.role: Final = role
        self.max_params_size = max_params_size
        self._split_params = split_params
        self._pad_empty = pad_empty_records
        self._pad = pad
        self._buf: bytes | bytearray | memoryview = b""
        self._pos = 0
        #: ``receive_view``: the part of the caller's buffer still to parse after ``_buf``
        #: (which then holds the record that began in an earlier read), else None.
        self._lent: memoryview | None = None
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._must_close = False
        self._requests: dict[int, _Request] = {}

    # ---------------------------------------------------------------- introspection

    @property
    def active_requests(self) -> frozenset[int]:
        """Ids of the requests begun and not yet ended."""
        return frozenset(rid for rid, req in self._requests.items() if not req.ended)

    def is_active(self, request_id: int) -> bool:
        req = self._requests.get(request_id)
        return req is not None and not req.ended

    @property
    def _peer(self) -> str:
        return "server" if self.role is CLIENT else "client"

    @property
    def must_close(self) -> bool:
        """True once a request without FCGI_KEEP_CONN has ended: close after writing."""
        return self._must_close

    @property
    def eof_received(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read into events."""
        lent = self._lent
        return len(self._buf) - self._pos + (0 if lent is None else len(lent))

    def abort_ahead(self, request_id: int) -> bool:
        """Whether the whole records received and not yet read hold an ABORT_REQUEST for
        ``request_id``; nothing is consumed (``next_event`` reads them in turn)."""
        buf = self._buf
        lent = self._lent
        if lent is None and type(buf) is not memoryview:
            return len(buf) > self._pos and responder.abort_in(buf, self._pos, request_id)
        rest = b"".join((memoryview(buf)[self._pos :], b"" if lent is None else lent))
        return responder.abort_in(rest, 0, request_id)

    # ---------------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed the connection."""
        if self._lent is not None or type(self._buf) is memoryview:
            raise LocalProtocolError("receive_data() before next_event() gave NEED_DATA")
        if self._eof:
            if data:
                raise RemoteProtocolError("data received after the connection was closed")
            return
        if not data:
            self._eof = True
            return
        buf = self._buf
        pos = self._pos
        pending = len(buf) - pos
        if pending <= 0:
            # Nothing pending: parse straight out of the caller's bytes, no copy.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        elif len(data) >= pending:
            # One copy into a fresh bytes object; since the new data is at least as long as
            # what was pending, the copying stays linear in the bytes received.
            self._buf = b"".join((memoryview(buf)[pos:], data))
            self._pos = 0
        elif isinstance(buf, bytes):
            # Small pieces after a big remainder (say byte-by-byte input): grow in place.
            grown = bytearray(memoryview(buf)[pos:])
            grown += data
            self._buf = grown
            self._pos = 0
        else:
            if pos:
                del buf[:pos]
                self._pos = 0
            buf += data

    def receive_more(self, data: bytes) -> None:
        """``receive_data`` for bytes read ahead between requests (a look for an
        ABORT_REQUEST): what is unread and ``data`` are kept as one ``bytes``, from which
        ``next_whole_request`` goes on taking requests (``receive_data`` would grow a
        ``bytearray`` for a small piece after a larger remainder)."""
        buf = self._buf
        pos = self._pos
        if not data or self._eof or self._lent is not None or type(buf) is memoryview:
            self.receive_data(data)
            return
        self._buf = b"".join((memoryview(buf)[pos:], data)) if len(buf) > pos else data
        self._pos = 0

    def receive_view(self, view: memoryview) -> None:
        """Feed bytes read into a buffer the caller reuses (``receive_data`` for large input,
        such as a request body, without copying each read into ``bytes`` first).

        ``view`` is parsed in place until ``next_event`` returns NEED_DATA (or CLOSED, or
        raises); from then on nothing of it is kept and the caller may overwrite the buffer.
        Each record's content is copied out once (the event's bytes); only the part of a
        record that the end of ``view`` cuts is kept as a copy, and completed with the start
        of the next ``view``. An empty ``view`` is the end of the input, as ``b""``."""
        if not view or self._eof:
            self.receive_data(b"" if not view else view.tobytes())
            return
        if self._lent is not None or type(self._buf) is memoryview:
            raise LocalProtocolError("receive_view() before next_event() gave NEED_DATA")
        buf = self._buf
        pos = self._pos
        pending = len(buf) - pos
        if pending <= 0:
            self._buf = view
            self._pos = 0
            return
        # A record began in an earlier read: complete it with what it needs of ``view``, then
        # parse the rest of ``view`` in place.
        if pending >= HEADER_LEN:
            length, padding = _LENGTHS(buf, pos + 4)
            need = HEADER_LEN + length + padding - pending
        elif pending + len(view) >= HEADER_LEN:
            head = bytes(memoryview(buf)[pos:]) + view[: HEADER_LEN - pending].tobytes()
            length, padding = _LENGTHS(head, 4)
            need = HEADER_LEN + length + padding - pending
        else:
            need = len(view) + 1  # not even a whole header: keep it all
        self._pos = 0
        if not 0 < need <= len(view):  # (or complete records still pending: copy it all)
            self._buf = b"".join((memoryview(buf)[pos:], view))
            return
        self._buf = b"".join((memoryview(buf)[pos:], view[:need]))
        if need < len(view):
            self._lent = view[need:]

    def next_event(self) -> NextEvent:
        """The next event, ``NEED_DATA`` or ``CLOSED``; raises ``RemoteProtocolError`` on bad
        input (and again on every later call: the connection is dead)."""
        if self._error is not None:
            raise self._error
        try:
            while True:
                buf = self._buf
                pos = self._pos
                size = len(buf)
                if size - pos < HEADER_LEN:
                    lent = self._lent
                    if lent is not None:
                        # (``_buf`` held one whole record: the rest of the lent view.)
                        self._lent = None
                        self._buf = lent
                        self._pos = 0
                        continue
                    if type(buf) is memoryview:
                        self._own_rest(buf, pos)
                    if not self._eof:
                        return NEED_DATA
                    if size > pos:
                        raise RemoteProtocolError(
                            f"connection closed inside a record header ({size - pos} of 8 bytes)"
                        )
                    self._check_eof()
                    return CLOSED
                rtype, rid, clen, plen = _HEADER_AT(buf, pos)
                start = pos + HEADER_LEN
                stop = start + clen
                end = stop + plen
                if end > size:
                    if self._eof:
                        raise RemoteProtocolError(
                            f"connection closed inside a {_type_name(rtype)} record for request "
                            f"{rid} ({size - pos} of {end - pos} bytes)"
                        )
                    if type(buf) is memoryview:
                        self._own_rest(buf, pos)
                    return NEED_DATA
                if isinstance(buf, bytes):
                    content = buf[start:stop]
                else:
                    content = memoryview(buf)[start:stop].tobytes()
                if end >= size:
                    self._buf = b""
                    self._pos = 0
                else:
                    self._pos = end
                event = self._receive_record(rtype, rid, content)
                if event is not None:
                    return event
        except RemoteProtocolError as exc:
            self._error = exc
            if type(self._buf) is memoryview:  # (nothing more is parsed: let go of it)
                self._buf = b""
                self._lent = None
            raise

    def _own_rest(self, buf: memoryview, pos: int) -> None:
        """NEED_DATA with a lent view: keep a copy of its unparsed end, let go of the view."""
        self._buf = buf[pos:].tobytes()
        self._pos = 0

    def receive_whole_request(self, data: bytes) -> tuple[int, bool, bytes] | None:
        """Responder fast path for the common case: ``data`` is exactly one whole request
        without a body (BEGIN_REQUEST for the Responder role, its PARAMS records, the empty
        PARAMS record, the empty STDIN record) and nothing else is pending or active.

        Then the request is taken at once, as if its events had been read (PARAMS and STDIN
        ended), and ``(request_id, keep_conn, params)`` is returned, ``params`` being the
        PARAMS stream's bytes (``records.decode_pairs`` decodes them). Otherwise nothing is
        consumed and None is returned: feed ``data`` to ``receive_data`` as usual."""
        if (
            self._requests
            or len(self._buf) != self._pos
            or self._lent is not None
            or self._eof
            or self._error is not None
            or self.role is not SERVER
            or type(data) is not bytes
        ):
            return None
        found = responder.whole_request_at(data, 0, self.max_params_size)
        if found is None or found[3] != len(data):
            return None
        self.receive_data(data)
        return self.next_whole_request()

    def next_whole_request(self) -> tuple[int, bool, bytes] | None:
        """The same fast path for what was received and not yet read: when it starts with one
        whole request without a body (say the next of several that a front queued on this
        connection and that came in one read) and nothing is active, that request is taken
        (consumed) and returned as by ``receive_whole_request``; the bytes after it stay
        unread. Otherwise nothing is consumed and None is returned: ``next_event`` as usual."""
        buf = self._buf
        pos = self._pos
        if (
            len(buf) - pos < responder.WHOLE_MIN
            or type(buf) is not bytes
            or self._requests
            or self._lent is not None
            or self._eof
            or self._error is not None
            or self.role is not SERVER
        ):
            return None
        found = responder.whole_request_at(buf, pos, self.max_params_size)
        if found is None:
            return None
        rid, keep_conn, params, end = found
        if end >= len(buf):
            self._buf = b""
            self._pos = 0
        else:
            self._pos = end
        req = _Request(_ROLE_RESPONDER, keep_conn)
        req.closed = _PARAMS_BIT | _STDIN_BIT
        self._requests[rid] = req
        return rid, keep_conn, params

    def _receive_record(self, rtype: int, rid: int, content: bytes) -> Event | None:
        if rid == 0:
            return self._receive_management(rtype, content)
        rule = _STREAM_RULES.get(rtype)
        if rule is not None:
            if rule.sender is self.role:
                raise RemoteProtocolError(
                    f"{_type_name(rtype)} record for request {rid} from the {self._peer}: "
                    f"only the {rule.sender.value} sends it"
                )
            req = self._requests.get(rid)
            if req is None:
                raise RemoteProtocolError(
                    f"{_type_name(rtype)} record for request {rid}, which is not active"
                )
            bit = 1 << rtype
            if req.ended:  # a responder's tombstone: input that crossed our END_REQUEST
                if not content:
                    req.closed |= bit
                    self._forget_if_done(rid, req)
                return None
            if req.closed & bit:
                raise RemoteProtocolError(
                    f"{_type_name(rtype)} record for request {rid} after the end of its "
                    f"{_type_name(rtype)} stream"
                )
            if rule.after & ~req.closed:
                raise RemoteProtocolError(
                    f"{_type_name(rtype)} record for request {rid} before the end of its "
                    "PARAMS stream"
                )
            event = rule.event
            if event is None:
                return self._receive_params(req, rid, content)
            if not content:
                req.closed |= bit
            return event(rid, content)
        sender = _LIFECYCLE_SENDER.get(rtype)
        if sender is None:
            raise RemoteProtocolError(
                f"{_type_name(rtype)} record for request {rid}: "
                + (
                    "management records must use request id 0"
                    if rtype in _MANAGEMENT_SENDER
                    else "unknown record type"
                )
            )
        if sender is self.role:
            raise RemoteProtocolError(
                f"{_type_name(rtype)} record for request {rid} from the {self._peer}: "
                f"only the {sender.value} sends it"
            )
        req = self._requests.get(rid)
        if rtype == _BEGIN:
            if req is not None and not req.ended:
                raise RemoteProtocolError(
                    f"BEGIN_REQUEST for request {rid}, which is already active"
                )
            role, keep_conn = records.decode_begin_request(content)
            self._requests[rid] = _Request(role, keep_conn)
            return BeginRequest(rid, role, keep_conn)
        if req is None:
            if rtype == _ABORT:  # it crossed our END_REQUEST (and the tombstone is gone)
                return None
            raise RemoteProtocolError(f"{_type_name(rtype)} for request {rid}, which is not active")
        if rtype == _END:
            app_status, protocol_status = records.decode_end_request(content)
            del self._requests[rid]
            if not req.keep_conn:
                self._must_close = True
            return EndRequest(rid, app_status, protocol_status)
        # ABORT_REQUEST: idempotent, and swallowed when it crossed our END_REQUEST.
        if req.ended or req.aborted:
            return None
        req.aborted = True
        return AbortRequest(rid)

    def _receive_params(self, req: _Request, rid: int, content: bytes) -> Event | None:
        if content:
            req.params_size += len(content)
            if req.params_size > self.max_params_size:
                raise RemoteProtocolError(
                    f"PARAMS stream of request {rid} exceeds max_params_size "
                    f"({self.max_params_size} bytes)"
                )
            req.params.append(content)
            return None
        req.closed |= _PARAMS_BIT
        chunks = req.params
        req.params = []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            pairs = records.decode_pairs(body)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"PARAMS stream of request {rid}: {exc}") from None
        return Params(rid, pairs)

    def _receive_management(self, rtype: int, content: bytes) -> Event:
        sender = _MANAGEMENT_SENDER.get(rtype)
        if sender is None or sender is self.role:
            if self.role is SERVER and not 1 <= rtype <= _MAX_TYPE:
                return UnknownManagementRecord(rtype, content)
            raise RemoteProtocolError(
                f"{_type_name(rtype)} record with request id 0 from the {self._peer}"
            )
        if rtype == _GET_VALUES:
            return GetValues([name for name, _ in records.decode_pairs(content)])
        if rtype == _GET_VALUES_RESULT:
            return GetValuesResult(records.decode_pairs(content))
        return UnknownType(records.decode_unknown_type(content))

    def _check_eof(self) -> None:
        for rid, req in self._requests.items():
            if self.role is CLIENT:
                raise RemoteProtocolError(f"connection closed before END_REQUEST for request {rid}")
            if req.ended or req.aborted:
                continue
            missing = _INPUT_OWED.get(req.role, _DEFAULT_OWED) & ~req.closed
            if missing:
                names = [t.name for t in _T if missing & (1 << t)]
                raise RemoteProtocolError(
                    f"connection closed before the end of the {'/'.join(names)} stream "
                    f"of request {rid}"
                )

    # ---------------------------------------------------------------- sending

    def send(self, event: Event) -> bytes:
        """Bytes to write for ``event``; ``LocalProtocolError`` if our side may not send it now."""
        kind = type(event)
        stream = _STREAM_EVENTS.get(kind)
        if stream is not None:
            assert isinstance(event, Stdin | Stdout | Stderr | Data)
            self._check_stream_send(stream, event.request_id)
            out = records.encode_stream(
                stream, event.request_id, event.data, pad=self._pad, pad_empty=self._pad_empty
            )
            if not event.data:
                self._requests[event.request_id].closed |= 1 << stream
            return out
        if isinstance(event, Params):
            self._check_stream_send(_PARAMS, event.request_id)
            out = records.encode_params(
                event.request_id,
                event.params,
                split_params=self._split_params,
                pad=self._pad,
                pad_empty=self._pad_empty,
            )
            self._requests[event.request_id].closed |= _PARAMS_BIT
            return out
        if isinstance(event, BeginRequest):
            self._check_begin_send(event.request_id)
            out = records.encode_begin_request(
                event.request_id, event.role, keep_conn=event.keep_conn
            )
            self._requests[event.request_id] = _Request(event.role, event.keep_conn)
            return out
        if isinstance(event, EndRequest):
            req = self._check_lifecycle_send(_END, event.request_id)
            out = records.encode_end_request(
                event.request_id, event.app_status, event.protocol_status
            )
            self._end_sent(event.request_id, req)
            return out
        if isinstance(event, AbortRequest):
            req = self._check_lifecycle_send(_ABORT, event.request_id)
            req.aborted = True
            return records.encode_abort_request(event.request_id)
        if isinstance(event, GetValues):
            self._check_management_send(_T.GET_VALUES)
            return records.encode_get_values(event.names, pad=self._pad)
        if isinstance(event, GetValuesResult):
            self._check_management_send(_T.GET_VALUES_RESULT)
            return records.encode_get_values_result(event.values, pad=self._pad)
        if isinstance(event, UnknownType):
            self._check_management_send(_T.UNKNOWN_TYPE)
            return records.encode_unknown_type(event.record_type)
        raise LocalProtocolError(f"{kind.__name__} is received, never sent")

    def send_request(
        self,
        request_id: int,
        params: Sequence[tuple[bytes, bytes]],
        *,
        keep_conn: bool = False,
        role: int = Role.RESPONDER,
        stdin: bytes | None = None,
    ) -> bytes:
        """Client: BEGIN_REQUEST + the whole PARAMS stream (+ the whole STDIN stream when
        ``stdin`` is given, ``b""`` for no body) in one buffer; same as the matching
        ``send`` calls, faster."""
        self._check_begin_send(request_id)
        out = records.encode_request(
            request_id,
            params,
            keep_conn=keep_conn,
            role=role,
            stdin=stdin,
            split_params=self._split_params,
            pad=self._pad,
            pad_empty=self._pad_empty,
        )
        req = _Request(role, keep_conn)
        req.closed = _PARAMS_BIT if stdin is None else _bits(_PARAMS, _STDIN)
        self._requests[request_id] = req
        return out

    def send_response(
        self, request_id: int, stdout: bytes, *, end: bool = True, app_status: int = 0
    ) -> bytes:
        """Responder: STDOUT records carrying ``stdout``; with ``end`` also the empty STDOUT
        record and END_REQUEST(app_status, REQUEST_COMPLETE)."""
        req = self._requests.get(request_id)
        n = len(stdout)
        if (  # the usual end of a small response, framed here in one join
            end
            and req is not None
            and not req.ended
            and not req.closed & _STDOUT_BIT
            and 0 < n <= MAX_CONTENT_LEN
            and not app_status
            and self.role is SERVER
            and self._pad
            and not self._pad_empty
        ):
            out = responder.frame_small_response(request_id, stdout)
            req.closed |= _STDOUT_BIT
            self._end_sent(request_id, req)
            return out
        self._check_stream_send(_STDOUT, request_id)
        req = self._requests[request_id]
        if not end and not stdout:
            return b""
        out = records.encode_response(
            request_id,
            stdout,
            end=end,
            app_status=app_status,
            pad=self._pad,
            pad_empty=self._pad_empty,
        )
        if end:
            req.closed |= 1 << _STDOUT
            self._end_sent(request_id, req)
        return out

    def _end_sent(self, request_id: int, req: _Request) -> None:
        req.ended = True
        req.params = []
        if not req.keep_conn:
            self._must_close = True
        self._forget_if_done(request_id, req)

    def _forget_if_done(self, request_id: int, req: _Request) -> None:
        """Drop an ended request's tombstone once no more of its input can arrive."""
        if not _INPUT_OWED.get(req.role, _DEFAULT_OWED) & ~req.closed:
            del self._requests[request_id]

    def _check_begin_send(self, request_id: int) -> None:
        if self.role is not CLIENT:
            raise LocalProtocolError("only a client sends BEGIN_REQUEST")
        if not 1 <= request_id <= MAX_REQUEST_ID:
            raise LocalProtocolError(f"request id {request_id} is outside 1..65535")
        if request_id in self._requests:
            raise LocalProtocolError(f"request {request_id} is already active")

    def _active(self, what: str, request_id: int) -> _Request:
        req = self._requests.get(request_id)
        if req is None or req.ended:
            raise LocalProtocolError(f"cannot send {what} for request {request_id}: not active")
        return req

    def _check_stream_send(self, stream: int, request_id: int) -> None:
        rule = _STREAM_RULES[stream]
        if rule.sender is not self.role:
            raise LocalProtocolError(f"only the {rule.sender.value} sends {_type_name(stream)}")
        req = self._requests.get(request_id)
        if req is None or req.ended:
            self._active(_type_name(stream), request_id)  # raises
            raise AssertionError("unreachable")  # pragma: no cover
        if req.closed & (1 << stream):
            raise LocalProtocolError(
                f"cannot send {_type_name(stream)} for request {request_id}: the stream has ended"
            )
        if rule.after & ~req.closed:
            raise LocalProtocolError(
                f"cannot send {_type_name(stream)} for request {request_id} before its PARAMS"
            )

    def _check_lifecycle_send(self, rtype: int, request_id: int) -> _Request:
        sender = _LIFECYCLE_SENDER[rtype]
        if sender is not self.role:
            raise LocalProtocolError(f"only the {sender.value} sends {_type_name(rtype)}")
        return self._active(_type_name(rtype), request_id)

    def _check_management_send(self, rtype: int) -> None:
        sender = _MANAGEMENT_SENDER[rtype]
        if sender is not self.role:
            raise LocalProtocolError(f"only the {sender.value} sends {_type_name(rtype)}")
