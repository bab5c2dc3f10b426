"""The serving process's heap, frozen once it serves (issue 14, "the cost of a connection").

What a process builds to start (modules, the configuration, routers, pools, tables: ~45,000
objects for the bench site) lives as long as it serves, but the cycle collector's full
collections walk all of it again and again: under a stream of short connections, one full
collection every couple of seconds, ~15-20 ms each, a pause of every request in flight.
``settle`` moves what is alive into the interpreter's permanent generation (``gc.freeze``), so
that those collections walk only what was made since. A reload builds a new configuration and
lets the old one go: ``unsettle`` before it (the frozen objects are collectable again), then
``settle`` after it. Only the serving process's composition roots call these (``corral.app``,
``corral.frontproc``); a worker's template freezes its own heap for another reason (copy-on-write
pages shared with its forked workers, ``corral.worker.template``).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what start-up left behind, then freeze everything alive."""
    gc.collect()
    gc.freeze()


def unsettle() -> None:
    """Make the frozen objects collectable again (before a reload, and at the end)."""
    gc.unfreeze()
