"""How the fronts share an application's worker slots (``front_processes`` > 1), as a pure
function.

A slot is one of a worker's connections (its ``capacity``). The supervisor's broker
(``supervision.broker``) takes slots from the pool on behalf of the fronts, as the pool hands
out leases: a front that has requests waiting asks for as many slots as it has waiting
requests (its *want*), and the pool's queue hands free slots to those asks first come, first
served. A front keeps a slot while it has requests for it and gives it back once it has been
idle ``SLOT_HOLD`` seconds, so a slot idle in one front is free for another within that time.

What first-come-first-served cannot do alone: a front whose own queue never empties reuses its
slots for its next requests and never gives one back, while another front's requests wait in
the pool's queue. ``limits`` is the remedy, asked every ``REBALANCE_INTERVAL`` while a front
waits: the slots the fronts hold are shared out in proportion to their need (held + want),
water-filling (no front is given more than it needs; what it does not need goes to the
others), and a front holding more than its share is told to keep at most its share: it gives
the surplus back as its requests end, and the pool hands them to the waiting front.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Seconds a front keeps an idle slot before it gives it back (its next request usually comes
#: sooner under load, and then needs no round trip to the supervisor).
SLOT_HOLD = 0.005
#: Seconds between two looks of the broker at the fronts' shares while a front waits for a
#: slot (and at the workers that stopped being ready: their slots are revoked).
REBALANCE_INTERVAL = 0.02
#: Under load a front tells the supervisor its waiting count at most this often (seconds); at
#: once when a request has to wait and none did.
DEMAND_INTERVAL = 0.01
#: ``Limit.keep`` meaning "no limit".
NO_LIMIT = -1


@dataclass(frozen=True, slots=True)
class FrontNeed:
    """One front as the broker sees it for one application."""

    #: Slots it holds now.
    held: int
    #: Its requests waiting for a slot (the asks the pool has not answered).
    want: int


def fair_shares(total: int, needs: Mapping[int, int]) -> dict[int, int]:
    """``total`` slots shared out among fronts by need (water-filling): each front gets at most
    its need; the rest is split evenly, the remainder to the fronts with the greatest need."""
    shares = dict.fromkeys(needs, 0)
    remaining = total
    pending = sorted(needs, key=lambda front: (needs[front], front))
    while pending and remaining > 0:
        even = remaining // len(pending)
        smallest = pending[0]
        if needs[smallest] <= even:
            shares[smallest] = needs[smallest]
            remaining -= needs[smallest]
            pending.pop(0)
            continue
        # Everyone left needs more than an even split: that split, the rest one each to the
        # fronts with the greatest need.
        for front in pending:
            shares[front] = even
        remaining -= even * len(pending)
        for front in reversed(pending):
            if remaining <= 0:
                break
            shares[front] += 1
            remaining -= 1
        break
    return shares


def limits(fronts: Mapping[int, FrontNeed]) -> dict[int, int]:
    """For each front: the most slots it should hold (``NO_LIMIT`` when no front waits, or
    when it holds no more than its share)."""
    if not any(need.want for need in fronts.values()):
        return dict.fromkeys(fronts, NO_LIMIT)
    total = sum(need.held for need in fronts.values())
    shares = fair_shares(total, {front: need.held + need.want for front, need in fronts.items()})
    return {
        front: shares[front] if need.held > shares[front] else NO_LIMIT
        for front, need in fronts.items()
    }
