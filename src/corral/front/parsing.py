"""A client connection's request parser: the protocol's ``RequestParser``, which lets go of
llhttp's parser when the connection is lost (issue 14, "the cost of a connection").

llhttp's parser calls the request parser's own bound methods, so the two hold each other: a
reference cycle of ten objects per connection, left to the cycle collector, whose collections it
set off about once per 70 connections (and a full one of the whole heap every few seconds under a
stream of short connections). ``release`` breaks the cycle, so that both are freed by reference
counting as the connection goes.
"""

from __future__ import annotations

from corral.protocol.http1.parser import RequestParser


class ConnectionParser(RequestParser):
    """``RequestParser`` with ``release``, for a connection's whole life."""

    __slots__ = ()

    def release(self) -> None:
        """The connection is gone: drop llhttp's parser. Nothing is fed afterwards."""
        try:
            del self._hp
        except AttributeError:  # (released already)
            pass
