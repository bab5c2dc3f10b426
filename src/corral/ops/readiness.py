"""``/readyz``: whether this Corral should be sent traffic now, and if not, why.

Ready when the host is serving (not starting, not stopping: a load balancer takes it out of
rotation as soon as draining begins) and every application is as it must be:

- no application is failed (it cannot start, or its deploy script failed);
- an application that keeps workers (``min_workers`` > 0) and has started has a ready worker:
  not starting (its workers are not ready yet: after a crash, or its first request), not
  deploying (its requests get "deployment in progress"). Applications start on their first
  request, as in Helicon Zoo (``minInstances`` is what is kept *once started*): one not started
  yet (dormant) is ready to be started and does not hold the host back, or a load balancer
  waiting for ``/readyz`` before it sends the first request would wait for ever. One with no
  floor (``min_workers`` = 0) may be dormant, starting or deploying: it starts on demand.

A reload does not make the host unready: the running applications keep serving while new ones
start. Pure: reads the status document only.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.ops.status import DEPLOYING, FAILED, STARTING, STOPPING, HostStatus

#: Host states in which it may be ready.
_SERVING_HOST = frozenset({"serving", "reloading"})


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: One line per reason it is not ready (empty when ready).
    reasons: tuple[str, ...]

    def body(self) -> bytes:
        if self.ready:
            return b"ready\n"
        return ("not ready\n" + "".join(f"{r}\n" for r in self.reasons)).encode()


def readiness(status: HostStatus) -> Readiness:
    reasons: list[str] = []
    if status.state not in _SERVING_HOST:
        reasons.append(f"corral is {status.state}")
    for app in status.apps:
        if app.state == FAILED:
            why = f": {app.reason.splitlines()[0]}" if app.reason else ""
            reasons.append(f"app {app.id}: failed{why}")
        elif app.min_workers > 0 and app.state in (STARTING, DEPLOYING, STOPPING):
            reasons.append(
                f"app {app.id}: {app.state}, no ready worker yet (it keeps {app.min_workers})"
            )
    return Readiness(not reasons, tuple(reasons))
