"""The callbacks of the second llhttp parser that de-chunks a body sent after
``Transfer-Encoding: chunked<TAB>`` (see ``RequestParser._rechunk`` in ``parser.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from .parser import RequestParser


class Relay:
    """The callbacks of the parser that takes over after ``chunked<TAB>`` (``_rechunk``).

    Quiet while it reads the head it is given, then the request parser's own callbacks. While
    it is the current parser, its first body or end callback also ends the hand-over (when the
    first parser had no body bytes to hand over); once another takes over from it in turn, its
    raw body bytes go the hand-over way like the first parser's.
    """

    __slots__ = ("_owner", "muted", "parser")

    def __init__(self, owner: RequestParser) -> None:
        self._owner = owner
        self.muted = True
        self.parser: httptools.HttpRequestParser | None = None

    def on_message_begin(self) -> None:
        if not self.muted:
            self._owner._on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.muted:
            self._owner._on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.muted:
            self._owner._on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.muted:
            self._owner._on_headers_complete()

    def on_body(self, data: bytes) -> None:
        owner = self._owner
        if owner._handover and owner._hp is self.parser:
            owner._end_handover()
        owner._on_body(data)

    def on_message_complete(self) -> None:
        owner = self._owner
        if owner._handover and owner._hp is self.parser:
            owner._end_handover()
        owner._on_message_complete()
