"""Corral's bounded memo tables: one policy for all of them, emptied when full.

The front (and the Python worker, which may import this pure module) remembers what it worked
out for values that repeat from request to request (field lines, Host values, field names,
encoded FastCGI pairs, routes...) in plain dictionaries that it reads directly on the hot path
(a hit costs one look-up and nothing else). A miss computes the value and calls ``remember``: a
table that is full is emptied first, so that it follows what is sent lately. A client that
fills a table with junk (1,024 distinct Host values) costs the shortcut until the usual values
come back, never for the life of the process.

Pure, stdlib only.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Put ``key -> value`` into ``table``, emptying it first when it holds ``limit`` entries
    or more; returns ``value`` (so that a miss path may end with it)."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value
