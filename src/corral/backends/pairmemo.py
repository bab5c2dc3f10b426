"""The front's FastCGI pair encoder: each pair looked up first among those encoded lately.

A front sends most pairs again and again (the method, Host, User-Agent, protocol, server name
and port...), so one look-up replaces their length checks and packing. Short pairs only; the
table is bounded and emptied when full (``corral.protocol.memo``), so it follows what is sent
lately (hostile clients may send endless distinct values).

Front side only (the FastCGI client's): Corral's worker, which imports ``records``, never
needs it, and its import folder holds neither this nor ``memo``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from corral.protocol.fastcgi.records import encode_pairs
from corral.protocol.memo import remember

__all__ = ["encode_pairs_remembered"]

#: A name-value pair -> its encoding.
_ENCODED: dict[tuple[bytes, bytes], bytes] = {}
_ENCODED_MAX: Final = 4096
_ENCODED_PAIR_MAX: Final = 128


def encode_pairs_remembered(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``records.encode_pairs``, each pair looked up first among those encoded lately."""
    get = _ENCODED.get
    return b"".join([get(pair) or _encode_new_pair(pair) for pair in pairs])


def _encode_new_pair(pair: tuple[bytes, bytes]) -> bytes:
    encoded = encode_pairs((pair,))
    if len(encoded) <= _ENCODED_PAIR_MAX:
        remember(_ENCODED, pair, encoded, _ENCODED_MAX)
    return encoded
