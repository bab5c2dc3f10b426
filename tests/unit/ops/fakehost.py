"""A stand-in for the running host (``corral.ops.hostview.AdminHost``) for the admin
listener's unit tests: a status document made of plain values, live request counters."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from corral.front.stats import FrontStats, RequestStats
from corral.ops.history import History
from corral.ops.status import (
    SERVING,
    AppStatus,
    FrontStatus,
    HostStatus,
    RequestFigures,
    WorkerStatus,
)


def worker(ident: int = 1, pid: int = 4242, state: str = "idle") -> WorkerStatus:
    return WorkerStatus(ident, pid, state, 12.0, 7, 0, 31.5, 0.25, None, 0)


def app(ident: str = "hello", **changes: object) -> AppStatus:
    base = AppStatus(
        id=ident,
        name=ident.rpartition("/")[2],
        site="default",
        virtual_path="/",
        engine="python.3.x.wsgi",
        state=SERVING,
        reason=None,
        retry_in=None,
        min_workers=1,
        max_workers=2,
        workers=(worker(),),
        queue_length=0,
        oldest_wait=0.0,
        in_flight=0,
        arrival_rate=0.0,
        service_time=0.001,
        requests=RequestFigures(0, {}, 60.0, 0.0, None, None),
        restarts=1,
        recycled=2,
        recycled_for={"memory": 2},
        crashed=3,
        failed_starts=4,
        last_error=None,
        last_exits=(),
        deploy_phase=None,
        last_deploy=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class FakeHost:
    apps: list[AppStatus] = field(default_factory=lambda: [app()])
    state: str = "serving"
    history: History = field(default_factory=History)
    stats: dict[str, RequestStats] = field(default_factory=dict)
    front: FrontStats = field(default_factory=FrontStats)
    restarted: list[str] = field(default_factory=list)
    scaled: list[tuple[str, int | None, int | None]] = field(default_factory=list)

    def status(self) -> HostStatus:
        return HostStatus(
            schema=1,
            version="0.0.test",
            pid=1,
            config="/srv/site",
            started=1_700_000_000.0,
            uptime=5.0,
            state=self.state,
            listening=("http://127.0.0.1:8080",),
            front=FrontStatus(2, self.front.connections_opened, {}),
            apps=tuple(self.apps),
        )

    def request_stats(self) -> dict[str, RequestStats]:
        return {a.id: self.stats.setdefault(a.id, RequestStats()) for a in self.apps}

    def front_stats(self) -> FrontStats | None:
        return self.front

    async def restart_app(self, ident: str) -> str:
        if ident not in [a.id for a in self.apps]:
            raise LookupError(f"no application {ident!r}")
        self.restarted.append(ident)
        return f"{ident}: restarted"

    def scale_app(self, ident: str, min_workers: int | None, max_workers: int | None) -> str:
        if min_workers is not None and max_workers is not None and min_workers > max_workers:
            raise ValueError("min above max")
        self.scaled.append((ident, min_workers, max_workers))
        return f"{ident}: workers {min_workers} to {max_workers} (until the next reload)"
