"""FastCGI codec errors.

``RemoteProtocolError`` means the peer sent bytes that break the protocol; the
connection cannot be trusted any more and should be closed (the front answers
the affected request with a 502). ``LocalProtocolError`` means our own side
misused the codec (a bug in the caller). Malformed input never raises anything
but ``RemoteProtocolError``.
"""

from __future__ import annotations

from corral.errors import CorralError


class FastCGIError(CorralError):
    """Root of the FastCGI codec's errors."""


class LocalProtocolError(FastCGIError):
    """Our side tried to send something the protocol forbids in the current state."""


class RemoteProtocolError(FastCGIError):
    """The peer sent bytes that violate FastCGI 1.0 (or our configured limits)."""
