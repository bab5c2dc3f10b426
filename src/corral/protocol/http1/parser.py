"""Sans-IO HTTP/1.1 request parser over httptools (llhttp).

Bytes go in with ``receive_data``; events come out of ``next_event``. llhttp does the
tokenising (and is already strict about header-name tokens, whitespace before the colon,
obs-fold, bare CR/LF, control characters in values, Content-Length syntax and duplicates,
CL together with TE, chunk-size syntax); this module adds what llhttp leaves to its caller:

* size limits (request line 414, header field / count / total 431, declared or streamed
  body 413), enforced while bytes arrive, so a slow client cannot make us buffer forever;
* Transfer-Encoding policy: only ``chunked`` alone is accepted; a coding list not ending in
  ``chunked`` is 400 (RFC 9112 6.3), ``gzip, chunked`` and friends 501 (RFC 9112 6.1),
  any Transfer-Encoding on HTTP/1.0 400 (RFC 9112 6.1);
* versions other than 1.0 and 1.1 (llhttp lets 0.9 and 2.0 through) get 505;
* a protocol name other than ``HTTP`` (llhttp also takes ``RTSP/1.0`` and ``ICE/1.0``) is
  400: the first request line of a read is looked at before llhttp sees it
  (``_check_request_line``), one llhttp reaches after another request in the same read is
  found where that request ends (``_check_pipelined``, ``pipelining.py``); the RTSP-only
  methods are refused too;
* an HTTP/1.1 request without Host, and any request with more than one, is 400 (RFC 9112
  3.2); request-target form checks (RFC 9112 3.2): origin-form, absolute-form,
  authority-form only with CONNECT, ``*`` only with OPTIONS;
* trailing whitespace is trimmed from field values (llhttp keeps it); llhttp does not take
  ``Transfer-Encoding: chunked`` followed by a tab as chunked, so such a body is handed to a
  second llhttp parser that de-chunks it (``_rechunk``);
* trailers that would change framing, routing or authentication are 400 (RFC 9110 6.5.1).

Pipelining: llhttp parses the whole buffer it is given, so the bytes of one
``receive_data`` call that follow the end of a request are parsed ahead and their events
queued (bounded by that call's size). Once a request has ended inside the parser, later
``receive_data`` bytes are only appended to a backlog and not parsed until ``start_next()``;
the caller should stop reading while ``next_event()`` says ``PAUSED`` (see
``buffered_bytes``). Header bytes are charged against the limits as they arrive; besides
complete header lines, httptools holds at most the current partial line, bounded by the
chunk that started the request head plus ``max_request_line + max_header_bytes``.
"""

from __future__ import annotations

import types
from collections import deque
from typing import Any, Final, TypeAlias

import httptools

from corral.protocol.memo import remember

from .errors import HTTPProtocolError, LocalProtocolError
from .events import (
    NEED_DATA,
    PAUSED,
    Body,
    ConnectionClosed,
    EndOfMessage,
    Request,
    Sentinel,
)
from .limits import Limits as Limits
from .pipelining import body_end, chunks_end, foreign_protocol, head_end, next_chunk
from .relay import Relay
from .rules import (
    _ABSOLUTE_FORM,
    _AUTHORITY_FORM,
    _FORBIDDEN_TRAILERS,
    _HOST_FIELD,
    _RTSP_ONLY_METHODS,
    _map_llhttp_error,
)

Event: TypeAlias = Request | Body | EndOfMessage | ConnectionClosed | Sentinel


#: EndOfMessage is immutable: one instance serves every message without trailers.
_END_OF_MESSAGE: Final = EndOfMessage()

#: Largest piece of a request head held back while waiting for a line end (see _feed).
_COALESCE: Final = 4096

_IDLE: Final = 0  # between requests (only CRLFs seen)
_HEAD: Final = 1  # request line / header fields
_BODY: Final = 2  # after the head, until the end of the message
_LINE: Final = 3  # a long request line given to llhttp in pieces, its end not seen yet

#: The header names we act on (a name is lower-cased once: ``_KINDS``).
_K_CONTENT_LENGTH, _K_TRANSFER_ENCODING, _K_HOST, _K_EXPECT, _K_UPGRADE, _K_CONTENT_TYPE = range(6)
_SPECIAL_NAMES: Final = {
    b"content-length": _K_CONTENT_LENGTH,
    b"transfer-encoding": _K_TRANSFER_ENCODING,
    b"host": _K_HOST,
    b"expect": _K_EXPECT,
    b"upgrade": _K_UPGRADE,
    b"content-type": _K_CONTENT_TYPE,
}
_NOT_SPECIAL: Final = -1
#: Field name as received -> its ``_K_*`` kind, or ``_NOT_SPECIAL``: one look-up per field line
#: instead of lower-casing. Bounded like ``_GOOD_HOSTS``.
_KINDS: dict[bytes, int] = {}
_KINDS_MAX: Final = 1024
#: Host field values already found valid (``_HOST_FIELD``): a client sends the same Host with
#: every request, so the regular expression runs once per distinct value. Bounded (hostile
#: clients may send endless distinct ones): emptied when full (``corral.protocol.memo``).
_GOOD_HOSTS: dict[bytes, bool] = {}
_GOOD_HOSTS_MAX: Final = 1024
_OWS: Final = b" \t"

#: What ``_feed`` expects before the end of a request line: `` HTTP/1.1\r`` (10 bytes).
_HTTP_TAIL: Final = b" HTTP/"
#: Bytes of a long request line kept back (not given to llhttp) until its end comes, so that
#: its protocol name is seen whole by ``_check_request_line``.
_LINE_END: Final = 16
#: The head given to the parser that de-chunks a body after ``chunked<TAB>`` (``_rechunk``).
_RECHUNK_HEAD: Final = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"


class RequestParser:
    """Parse the requests of one connection; see the module docstring."""

    __slots__ = (
        "_backlog",
        "_backlog_eof",
        "_body_seen",
        "_cb_error",
        "_chunk_at",
        "_chunk_in",
        "_chunked",
        "_coalesce",
        "_content_type_seen",
        "_data",
        "_done",
        "_events",
        "_expect",
        "_feed_body",
        "_feed_msg",
        "_framing",
        "_handover",
        "_head_budget",
        "_head_extra",
        "_head_tail",
        "_header_bytes",
        "_headers",
        "_host",
        "_hp",
        "_keep_alive",
        "_length",
        "_limits",
        "_line_part",
        "_loc_data",
        "_loc_start",
        "_max_body",
        "_max_count",
        "_max_field",
        "_max_header_bytes",
        "_max_line",
        "_msg_no",
        "_paused",
        "_pending",
        "_state",
        "_switching",
        "_te",
        "_te_tab_msg",
        "_trailers",
        "_trailing",
        "_unstarted",
        "_upgrade",
        "_upgrade_body_left",
        "_url",
    )
    __deletable__ = ("_hp",)  # (front/parsing.py's release; a compiled build needs it said)

    def __init__(self, limits: Limits | None = None) -> None:
        lim = limits if limits is not None else Limits()
        self._limits = lim
        self._max_line = lim.max_request_line
        self._max_field = lim.max_header_field
        self._max_count = lim.max_header_count
        self._max_header_bytes = lim.max_header_bytes
        self._max_body = lim.max_body_size
        self._head_budget = lim.max_request_line + lim.max_header_bytes
        self._events: deque[Any] = deque()
        callbacks = types.SimpleNamespace(
            on_message_begin=self._on_message_begin,
            on_url=self._on_url,
            on_header=self._on_header,
            on_headers_complete=self._on_headers_complete,
            on_body=self._on_body,
            on_message_complete=self._on_message_complete,
        )
        self._hp = httptools.HttpRequestParser(callbacks)
        self._paused = False
        self._unstarted = 0
        self._backlog = bytearray()
        self._backlog_eof = False
        self._pending = bytearray()
        self._coalesce = min(_COALESCE, lim.max_request_line, lim.max_header_field)
        #: The message whose Transfer-Encoding ended in a tab (see ``_rechunk``).
        self._te_tab_msg = -1
        #: While the first parser hands a tab-chunked body over to the second (``_rechunk``).
        self._handover = False
        self._done = False
        self._switching = False
        self._trailing = bytearray()
        self._cb_error: HTTPProtocolError | None = None
        self._upgrade_body_left = 0
        self._state = _IDLE
        self._msg_no = 0
        # Where pipelined request lines are found (see _check_pipelined): the bytes being
        # fed, the message number before them when they start a request (else -1), the body
        # bytes already seen when they go on with a body, the end of the head before them.
        self._data = b""
        self._feed_msg = 0
        self._feed_body = -1
        self._head_tail = b""
        self._loc_data = b""
        self._loc_start = 0
        #: A chunked body: the next chunk-size line is at ``_chunk_at`` in ``_chunk_in`` (the
        #: bytes last fed, after any framing bytes carried from before); None: not known.
        self._chunk_in: bytes | None = None
        self._chunk_at = 0
        #: The start of a pipelined request line whose end has not arrived yet.
        self._line_part = b""
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        #: None once the head is complete (later fields are trailers).
        self._headers: list[tuple[bytes, bytes]] | None = []
        self._header_bytes = 0
        self._head_extra = 0
        self._length: int | None = None
        self._te: bytes | None = None
        self._host: bytes | None = None
        self._expect = False
        self._upgrade: bytes | None = None
        self._content_type_seen = False
        self._body_seen = 0
        self._chunked = False
        self._framing = 0
        self._keep_alive = True
        self._trailers: list[tuple[bytes, bytes]] | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def buffered_bytes(self) -> int:
        """Raw bytes held unparsed (pipelined while paused, or after a protocol switch)."""
        return len(self._backlog) + len(self._trailing) + len(self._pending)

    @property
    def trailing_data(self) -> bytes:
        """After an Upgrade or CONNECT request: the bytes that followed its head.

        Everything passed to ``receive_data`` afterwards is appended here too, for a front
        that tunnels the connection. A front that declines the switch must close.
        """
        return bytes(self._trailing)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means the client closed (EOF). Never raises."""
        if self._done:
            if self._switching:
                if data:
                    self._switched_bytes(data)
                elif self._upgrade_body_left:
                    self._fail(
                        HTTPProtocolError(400, "connection closed before the request was complete")
                    )
            return
        if self._unstarted:
            if data:
                self._backlog += data
            else:
                self._backlog_eof = True
            return
        if data:
            self._feed(data)
        else:
            self._eof()

    def next_event(self) -> Event:
        """Next event, ``NEED_DATA`` or ``PAUSED``; raises :class:`HTTPProtocolError`.

        ``ConnectionClosed`` and errors are sticky: they are returned / raised again on
        every later call.
        """
        if self._paused:
            return PAUSED
        events = self._events
        if not events:
            return NEED_DATA
        event = events.popleft()
        cls = type(event)
        if cls is Body or cls is Request:
            return event  # type: ignore[no-any-return]
        if cls is EndOfMessage:
            self._paused = True
            return event  # type: ignore[no-any-return]
        events.appendleft(event)
        if cls is HTTPProtocolError:
            raise event.with_traceback(None)
        return event  # type: ignore[no-any-return]

    def next_event_and_end(self) -> tuple[Event, bool]:
        """``next_event()``, and whether the message ended with it: a ``Request`` whose
        ``EndOfMessage`` (without trailers) is queued right behind it, a whole request without
        a body (the usual one), comes with that EndOfMessage taken, the parser paused as
        after it. One call per such request where ``next_event`` takes three."""
        events = self._events
        if len(events) > 1 and not self._paused:
            event = events[0]
            if events[1] is _END_OF_MESSAGE and type(event) is Request:
                events.popleft()
                events.popleft()
                self._paused = True
                return event, True
        return self.next_event(), False

    def start_next(self) -> bool:
        """After ``EndOfMessage`` (the response was sent): go on with the next request.
        Returns whether ``next_event()`` has something other than ``NEED_DATA`` to say."""
        if not self._paused:
            raise LocalProtocolError("start_next() is only valid after EndOfMessage")
        self._paused = False
        self._unstarted -= 1
        if self._unstarted or self._done:
            return bool(self._events)
        if self._backlog:
            data = bytes(self._backlog)
            self._backlog.clear()
            self._feed(data)
        if self._backlog_eof and not self._done and not self._unstarted:
            self._eof()
        return bool(self._events)

    # -- feeding ---------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        # Before the body, hold back pieces without a line end (up to _COALESCE bytes):
        # httptools joins the pieces of a field or URL with ``bytes +=``, so a client
        # trickling a head byte by byte would otherwise cost quadratic copying.
        # A request line's protocol name is looked at before llhttp parses it (see
        # _check_request_line); a long one given to llhttp in pieces keeps its end back.
        state = self._state
        if state != _BODY:
            pending = self._pending
            if data.find(b"\n") < 0:  # (not ``in``: see _on_headers_complete)
                pending += data
                if len(pending) < self._coalesce:
                    return
                if state != _HEAD:
                    data = bytes(pending[:-_LINE_END])
                    del pending[:-_LINE_END]
                    self._line_part = b""
                    self._feed_now(data)
                    if self._state == _HEAD:
                        self._state = _LINE
                    return
                data = bytes(pending)
                pending.clear()
            elif pending:
                pending += data
                data = bytes(pending)
                pending.clear()
            if state != _HEAD:
                end = data.find(b"\n")
                if end < 10 or not data.startswith(_HTTP_TAIL, end - 10):
                    checked = self._check_request_line(data, state == _IDLE)
                    if checked is None:
                        return
                    data = checked
                if state == _LINE:
                    self._state = _HEAD
                    self._line_part = b""
        self._feed_now(data)

    def _check_request_line(self, data: bytes, at_start: bool) -> bytes | None:
        """The request line that ends in ``data`` does not end in `` HTTP/x.y``.

        ``data`` starts the request (``at_start``: after blank lines) or goes on with a long
        request line (its end was kept back). Refuses a protocol name other than HTTP that
        llhttp would take (``RTSP/1.0``, ``ICE/1.0``); anything else (HTTP/0.9, a two-digit
        version, a bare LF) is llhttp's to judge. Returns the bytes to parse, or None when
        they are held (blank lines before a request line not complete yet) or refused.
        """
        start = 0
        size = len(data)
        while at_start and start < size and data[start] in b"\r\n":
            start += 1
        end = data.find(b"\n", start)
        if end < 0:
            if start < size:
                self._pending += data[start:]
            return None
        line = data[start:end]
        if self._line_part:  # a pipelined request line begun in an earlier read
            line = self._line_part + line
            self._line_part = b""
        if foreign_protocol(line):
            self._fail(HTTPProtocolError(400, "not an HTTP request (protocol name)"))
            return None
        return data

    def _feed_now(self, data: bytes) -> None:
        msg_no = self._msg_no
        state_before = self._state
        body_before = self._body_seen
        if state_before == _IDLE:
            self._feed_msg = msg_no  # its first request line was checked by _feed
        else:
            self._feed_msg = -1
            if state_before == _BODY:
                self._feed_body = body_before
                if self._chunked:
                    self._advance_chunks(data)
            else:
                self._feed_body = -1
                self._head_tail = self._data[-3:]
        self._data = data
        try:
            self._hp.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops right after the head of an Upgrade / CONNECT request (httptools
            # makes it skip the body): what follows is the body, then the new protocol.
            self._switched_bytes(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            if self._done and self._cb_error is None:
                return  # bytes after a request that closes the connection: ignored
            self._fail(self._cb_error or _map_llhttp_error(exc))
            return
        if self._msg_no != msg_no or self._state != state_before:
            if self._state == _IDLE:  # between requests: hold no read (up to 256 KiB)
                self._data = self._loc_data = b""
                self._chunk_in = None
            return
        if state_before == _HEAD:
            # httptools buffers an incomplete header line internally; charge its bytes.
            self._head_extra += len(data)
            if self._head_extra > self._head_budget:
                self._fail(HTTPProtocolError(431, "request header section too large"))
        elif state_before == _BODY and self._chunked:
            # Bytes that were not body: chunk framing, or a trailer field httptools is
            # buffering. Counted since the last body bytes, so long uploads are fine.
            body = self._body_seen - body_before
            framing = len(data) - body
            self._framing = framing if body else self._framing + framing
            if self._framing > self._head_budget:
                self._fail(HTTPProtocolError(431, "chunk framing or trailer section too large"))

    def _switched_bytes(self, data: bytes) -> None:
        left = self._upgrade_body_left
        if left:
            body = data[:left]
            data = data[left:]
            if body:
                self._events.append(Body(body))
                left = self._upgrade_body_left = left - len(body)
            if left:
                return
            self._events.append(_END_OF_MESSAGE)
            self._events.append(ConnectionClosed())
        if data:
            self._trailing += data

    def _eof(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._feed_now(data)
            if self._done:
                return
        if self._state == _IDLE:
            self._events.append(ConnectionClosed())
        else:
            self._events.append(
                HTTPProtocolError(400, "connection closed before the request was complete")
            )
        self._done = True

    def _fail(self, error: HTTPProtocolError) -> None:
        self._events.append(error)
        self._done = True
        self._switching = False
        self._backlog.clear()

    def _error(self, status: int, reason: str) -> HTTPProtocolError:
        error = HTTPProtocolError(status, reason)
        self._cb_error = error
        return error

    # -- httptools callbacks ---------------------------------------------------------------

    def _on_message_begin(self) -> None:
        self._state = _HEAD
        if self._msg_no != self._feed_msg:
            self._check_pipelined()
        self._msg_no += 1
        self._reset_message()

    def _check_pipelined(self) -> None:
        """A request begins after another ended in the bytes being fed: its request line
        was not seen by ``_feed``. Called before the reset, while the fields still describe
        the request that ended; llhttp has checked its framing, so its end is found from
        where it began: the end of its head (CRLF CRLF: llhttp takes no bare LF there), then
        Content-Length bytes or the chunks. A line not ended yet is finished in ``_feed``.
        """
        data = self._data
        if self._done:
            return  # bytes after a request that closes the connection: ignored
        if self._loc_data is data or self._feed_body < 0 or self._msg_no == self._feed_msg + 1:
            end = body_end(data, self._head_end_here(data), self._chunked, self._length)
        elif self._chunked:  # its chunked body began in an earlier read
            chunks = self._chunk_in
            if chunks is None:
                return  # where its chunks began is not known (no such case is known)
            end = chunks_end(chunks, self._chunk_at) - (len(chunks) - len(data))
        else:  # its Content-Length body began in an earlier read
            end = (self._length or 0) - self._feed_body
        size = len(data)
        while 0 <= end < size and data[end] in b"\r\n":
            end += 1
        if not 0 <= end < size:
            return
        self._loc_data = data
        self._loc_start = end
        line_end = data.find(b"\n", end)
        if line_end < 0:  # the line ends in a later read: checked there (_feed)
            self._line_part = data[end:][-_LINE_END:]
            self._state = _LINE
        elif foreign_protocol(data[end:line_end]):
            raise self._error(400, "not an HTTP request (protocol name)")

    def _head_end_here(self, data: bytes) -> int:
        """Where the head of the current request ends in ``data``, the bytes being fed."""
        if self._loc_data is data:  # a pipelined request found here
            return head_end(data, self._loc_start)
        if self._msg_no == self._feed_msg + 1:  # the first request these bytes begin
            return head_end(data, 0)
        # A head begun in an earlier read (CRLF CRLF may straddle the reads).
        tail = self._head_tail
        end = (tail + data).find(b"\r\n\r\n")
        return end + 4 - len(tail) if end >= 0 else -1

    def _advance_chunks(self, data: bytes) -> None:
        """Before ``data`` goes on with a chunked body: where its next chunk-size line is."""
        chunks = self._chunk_in
        if chunks is not None:
            self._chunk_in, self._chunk_at = next_chunk(chunks, self._chunk_at, data)

    def _on_url(self, url: bytes) -> None:
        if self._url:
            url = self._url + url
        self._url = url
        if len(url) > self._max_line:
            raise self._error(414, "request target too long")

    def _on_header(self, name: bytes, value: bytes, _ows: bytes = _OWS) -> None:
        # The hot path: called once per field line. One running total, and the name's kind
        # from a table (``_KINDS``); the Host field handled here, the other special ones below.
        if value and value[-1] in _ows:
            value = self._trim(name, value)
        size = len(name) + len(value) + 4
        if size > self._max_field:
            raise self._error(431, "header field too large")
        total = self._header_bytes = self._header_bytes + size
        if total > self._max_header_bytes:
            raise self._error(431, "request header section too large")
        headers = self._headers
        if headers is None:  # after the head: a trailer field
            self._on_trailer(name, value)
            return
        headers.append((name, value))
        kind = _KINDS.get(name)
        if kind is None:
            kind = remember(
                _KINDS, name, _SPECIAL_NAMES.get(name.lower(), _NOT_SPECIAL), _KINDS_MAX
            )
        if kind == _NOT_SPECIAL:
            return
        if kind == _K_HOST:
            if self._host is not None:
                raise self._error(400, "more than one Host header")
            self._host = value
            return
        self._on_special_header(kind, value)

    def _trim(self, name: bytes, value: bytes) -> bytes:
        """A field value with trailing whitespace: trimmed; a tab after a Transfer-Encoding
        value is remembered, because llhttp then does not see ``chunked`` (``_rechunk``)."""
        trimmed = value.rstrip(_OWS)
        if b"\t" in value[len(trimmed) :] and name.lower() == b"transfer-encoding":
            self._te_tab_msg = self._msg_no
        return trimmed

    def _on_special_header(self, kind: int, value: bytes) -> None:
        if kind == _K_CONTENT_LENGTH:
            if self._length is not None:
                raise self._error(400, "more than one Content-Length")
            length = int(value)  # llhttp has checked the digits
            self._length = length
            if self._max_body is not None and length > self._max_body:
                raise self._error(413, "declared request body too large")
        elif kind == _K_TRANSFER_ENCODING:
            self._te = value if self._te is None else self._te + b"," + value
        elif kind == _K_EXPECT:
            self._expect = value.lower() == b"100-continue"
        elif kind == _K_UPGRADE:
            self._upgrade = value
        elif kind == _K_CONTENT_TYPE:
            if self._content_type_seen:
                raise self._error(400, "more than one Content-Type")
            self._content_type_seen = True

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        if name.lower() in _FORBIDDEN_TRAILERS:
            raise self._error(400, "forbidden field in trailer section")
        trailers = self._trailers
        if trailers is None:
            trailers = self._trailers = []
        trailers.append((name, value))
        if len(trailers) > self._max_count:
            raise self._error(431, "too many trailer fields")

    def _on_headers_complete(self) -> None:
        hp = self._hp
        version = hp.get_http_version()
        if version != "1.1" and version != "1.0":
            raise self._error(505, "HTTP version not supported")
        method: bytes = hp.get_method()
        if method in _RTSP_ONLY_METHODS:
            raise self._error(400, "not an HTTP request (RTSP method)")
        target = self._url
        host = self._host
        if host is None:
            if version == "1.1":
                raise self._error(400, "HTTP/1.1 request without Host")
        elif host not in _GOOD_HOSTS:
            if _HOST_FIELD.match(host) is None:
                raise self._error(400, "invalid Host header")
            remember(_GOOD_HOSTS, host, True, _GOOD_HOSTS_MAX)
        # Request-target forms (RFC 9112 3.2).
        if target[:1] == b"/":
            if method == b"CONNECT":
                raise self._error(400, "CONNECT needs an authority-form target")
            # ``find``, not ``in``: on Python 3.11 ``bytes in bytes`` raises and clears a
            # TypeError first (it tries the operand as an int).
            fragment = target.find(b"#")
            if fragment >= 0:
                path, _, query = target[:fragment].partition(b"?")
            else:
                path, _, query = target.partition(b"?")
        elif target == b"*":
            if method != b"OPTIONS":
                raise self._error(400, "asterisk-form target is only for OPTIONS")
            path, query = target, b""
        elif method == b"CONNECT":
            if _AUTHORITY_FORM.match(target) is None:
                raise self._error(400, "invalid authority-form target")
            path = query = b""
            host = target
        else:
            match = _ABSOLUTE_FORM.match(target)
            if match is None:
                raise self._error(400, "invalid request target")
            authority = target[target.index(b"//") + 2 : match.end()]
            # RFC 9112 3.2.2: the target's authority replaces the Host header.
            host = authority.rpartition(b"@")[2]
            rest = target[match.end() :]
            if b"#" in rest:
                rest = rest[: rest.index(b"#")]
            path, _, query = rest.partition(b"?")
            if not path:
                path = b"/"
        # Framing.
        chunked = False
        te = self._te
        if te is not None:
            if version == "1.0":
                raise self._error(400, "Transfer-Encoding in an HTTP/1.0 request")
            codings = [c.strip().lower() for c in te.split(b",")]
            if codings != [b"chunked"]:
                if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
                    raise self._error(400, "chunked is not the final transfer coding")
                raise self._error(501, "unsupported transfer coding")
            chunked = True
        upgrade = None
        if hp.should_upgrade():
            self._switching = True
            if method != b"CONNECT":
                if chunked:
                    raise self._error(501, "Upgrade request with a chunked body")
                upgrade = self._upgrade
                # llhttp reads the body of an Upgrade request before the switch, but
                # httptools makes it skip the body: we take it from the bytes that follow
                # (_switched_bytes). A CONNECT body has no meaning: the tunnel starts at once.
                self._upgrade_body_left = self._length or 0
        self._chunked = chunked
        if chunked:
            head_end = self._head_end_here(self._data)
            self._chunk_in = self._data if head_end >= 0 else None
            self._chunk_at = head_end
        headers = self._headers
        assert headers is not None
        if len(headers) > self._max_count:
            raise self._error(431, "too many header fields")
        self._headers = None
        # After an Upgrade (or CONNECT) request the bytes that follow are not HTTP: unless the
        # front switches protocols, the connection ends with this request (and says so).
        self._keep_alive = keep_alive = hp.should_keep_alive() and not self._switching
        self._events.append(
            Request(
                method,
                target,
                path,
                query,
                version,
                headers,
                keep_alive,
                self._expect and version == "1.1",
                self._length,
                chunked,
                upgrade,
                host,
            )
        )
        self._state = _BODY
        if chunked and self._te_tab_msg == self._msg_no:
            self._rechunk(keep_alive)

    def _rechunk(self, keep_alive: bool) -> None:
        """``Transfer-Encoding: chunked`` followed by a tab (valid OWS, RFC 9110 5.6.3), which
        llhttp does not take as chunked: it would refuse the request after this callback.

        llhttp is told to read the body raw (its transfer-encoding leniency: up to the end of
        the connection), and a second llhttp parser, given a head that says chunked, de-chunks
        it and parses whatever follows; it replaces the first for the rest of the connection.
        The first parser's raw body bytes in this read reach ``_on_body`` once, routed to the
        second parser through the body-limit branch (``_handover``), so the common path pays
        nothing for this.
        """
        if self._length is not None:  # llhttp refuses this too, before this callback
            raise self._error(400, "Content-Length together with Transfer-Encoding")
        self._hp.set_dangerous_leniencies(lenient_transfer_encoding=True)
        # The raw body reaches the second parser through _feed_now, from its first chunk-size
        # line: the chunks are followed from there, for the request line after them.
        self._chunk_in = b""
        self._chunk_at = 0
        relay = Relay(self)
        second = relay.parser = httptools.HttpRequestParser(relay)
        second.feed_data(_RECHUNK_HEAD + (b"\r\n" if keep_alive else b"Connection: close\r\n\r\n"))
        relay.muted = False
        self._hp = second
        self._handover = True
        self._max_body = -1

    def _end_handover(self) -> None:
        self._handover = False
        self._max_body = self._limits.max_body_size

    def _on_body(self, data: bytes) -> None:
        seen = self._body_seen = self._body_seen + len(data)
        if self._max_body is not None and seen > self._max_body:
            if self._handover:
                # The first parser's raw (chunked) body bytes: to the second parser.
                self._body_seen -= len(data)
                self._end_handover()
                self._feed_now(data)
                return
            raise self._error(413, "request body too large")
        self._events.append(Body(data))

    def _on_message_complete(self) -> None:
        self._state = _IDLE
        self._unstarted += 1
        if self._upgrade_body_left:
            self._done = True  # EndOfMessage follows the body, see _switched_bytes
            return
        trailers = self._trailers
        self._events.append(EndOfMessage(tuple(trailers)) if trailers else _END_OF_MESSAGE)
        if self._switching or not self._keep_alive:
            self._events.append(ConnectionClosed())
            self._done = True
