"""The status screen of ``corral status`` and ``corral top``: the status document
(``HostStatus.to_json()``, as the control socket sends it) as lines of text.

Pure and stdlib only (the client must start fast, and reads JSON, not ``ops.status``'s
classes): ``render(document)`` returns the lines; a document that is not a status document is a
``ValueError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: The status document's schema this screen reads (``ops.status.SCHEMA``).
SCHEMA: Final = 1

_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


class Fields:
    """Typed reads of one JSON object of the document; ``ValueError`` names the field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: not an object")
        self._data: Mapping[str, object] = data
        self._where = where

    def _get(self, key: str) -> object:
        if key not in self._data:
            raise ValueError(f"{self._where}.{key}: missing")
        return self._data[key]

    def _bad(self, key: str, what: str) -> ValueError:
        return ValueError(f"{self._where}.{key}: not {what}")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._data.get(key)
        return None if value is None else self.text(key)

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number")
        return float(value)

    def opt_number(self, key: str) -> float | None:
        value = self._data.get(key)
        return None if value is None else self.number(key)

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "a whole number")
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self._data.get(key)
        return None if value is None else self.integer(key)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key), f"{self._where}.{key}")

    def items(self, key: str) -> list[Fields]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return [Fields(item, f"{self._where}.{key}[{i}]") for i, item in enumerate(value)]

    def opt_items(self, key: str) -> list[Fields]:
        """``items``, or none when the document has no such key (an older server's)."""
        if key not in self._data:
            return []
        return self.items(key)

    def texts(self, key: str) -> list[str]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings")
        return [str(v) for v in value]

    def counts(self, key: str) -> dict[str, int]:
        data = self.obj(key)
        return {name: data.integer(name) for name in data._data}


# ------------------------------------------------------------------------------ formatting


def duration(seconds: float | None) -> str:
    """``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``; "-" for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def millis(seconds: float | None) -> str:
    """A request duration: ``0.4 ms``, ``12 ms``, ``1.25 s``; "-" for None."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _by_class(counts: dict[str, int]) -> str:
    shown = [f"{name} {counts[name]}" for name in _CLASSES if counts.get(name)]
    return ", ".join(shown) if shown else "none"


# ------------------------------------------------------------------------------ the screen

_WORKER_HEAD: Final = (
    f"    {'PID':>8}  {'STATE':<9} {'AGE':>7} {'REQUESTS':>9} {'IN FLIGHT':>9} "
    f"{'RSS MB':>8} {'CPU s':>8}  NOTE"
)
_SERVER_HEAD: Final = (
    f"    {'SERVER':<28} {'STATE':<10} {'WEIGHT':>6} {'IN FLIGHT':>9} {'REQUESTS':>9} "
    f"{'FAILURES':>8}"
)


def _worker(worker: Fields) -> str:
    pid = worker.opt_integer("pid")
    note = worker.opt_text("retiring") or ""
    return (
        f"    {'-' if pid is None else pid:>8}  {worker.text('state'):<9} "
        f"{duration(worker.opt_number('age')):>7} {worker.integer('requests'):>9} "
        f"{worker.integer('in_flight'):>9} {_number(worker.opt_number('rss_mb')):>8} "
        f"{_number(worker.opt_number('cpu_seconds'), 2):>8}  {note}"
    ).rstrip()


def _server(server: Fields) -> str:
    error = server.opt_text("last_error") if server.text("state") != "up" else None
    return (
        f"    {server.text('address'):<28} {server.text('state'):<10} "
        f"{server.number('weight'):>6.2f} {server.integer('in_flight'):>9} "
        f"{server.integer('requests'):>9} {server.integer('failures'):>8}"
        + (f"  {error}" if error else "")
    )


def _exit(last: Fields) -> str:
    pid = last.opt_integer("pid")
    why = "" if last.flag("expected") else " (crashed)"
    retired = last.opt_text("retired_for")
    if retired:
        why = f" ({retired})"
    return (
        f"    last exit: pid {'-' if pid is None else pid} {last.text('reason')}{why}, "
        f"{duration(last.number('seconds_ago'))} ago"
    )


def render_app(app: Fields) -> list[str]:
    """One application's block."""
    state = app.text("state")
    reason = app.opt_text("reason")
    retry = app.opt_number("retry_in")
    shown = state + (f": {reason}" if reason else "")
    if retry is not None:
        shown += f" (next try in {duration(retry)})"
    lines = [
        f"{app.text('id')}  (site {app.text('site')}, {app.text('virtual_path')}, "
        f"engine {app.text('engine')})  {shown}"
    ]
    workers = app.items("workers")
    lines.append(
        f"  workers {len(workers)} (min {app.integer('min_workers')}, "
        f"max {app.integer('max_workers')})   queue {app.integer('queue_length')}"
        + (f" (oldest {millis(app.number('oldest_wait'))})" if app.integer("queue_length") else "")
        + f"   in flight {app.integer('in_flight')}   arrivals "
        f"{app.number('arrival_rate'):.1f}/s   service {millis(app.opt_number('service_time'))}"
    )
    requests = app.obj("requests")
    lines.append(
        f"  requests {requests.integer('total')} ({_by_class(requests.counts('by_class'))})"
        f"   last {duration(requests.number('window_seconds'))}: "
        f"{requests.number('rate'):.1f}/s, mean {millis(requests.opt_number('mean'))}, "
        f"p99 {millis(requests.opt_number('p99'))}"
    )
    lines.append(
        f"  restarts {app.integer('restarts')}   recycled {app.integer('recycled')}   "
        f"crashed {app.integer('crashed')}   failed starts {app.integer('failed_starts')}"
    )
    deploy = app.opt_text("deploy_phase")
    if deploy is not None:
        last_deploy = app.opt_text("last_deploy")
        lines.append(f"  deploy: {deploy}" + (f" (last: {last_deploy})" if last_deploy else ""))
    error = app.opt_text("last_error")
    if error and error != reason:
        lines.append(f"  last error: {error}")
    if workers:
        lines.append(_WORKER_HEAD)
        lines += [_worker(worker) for worker in workers]
    servers = app.opt_items("servers")
    if servers:
        lines.append(_SERVER_HEAD)
        lines += [_server(server) for server in servers]
    lines += [_exit(last) for last in app.items("last_exits")[-3:]]
    return lines


def render(document: object) -> list[str]:
    """The status screen's lines; ``ValueError`` when ``document`` is not a status document
    of a schema this screen reads."""
    doc = Fields(document, "status")
    schema = doc.integer("schema")
    if schema != SCHEMA:
        raise ValueError(f"status schema {schema} is not the one this corral reads ({SCHEMA})")
    front = doc.obj("front")
    refused = front.counts("protocol_errors")
    apps = doc.items("apps")
    workers = sum(len(app.items("workers")) for app in apps)
    lines = [
        f"corral {doc.text('version')}  pid {doc.integer('pid')}  {doc.text('state')}  "
        f"up {duration(doc.number('uptime'))}  {doc.text('config')}",
        f"listening on {', '.join(doc.texts('listening')) or 'nothing'};  connections "
        f"{front.integer('connections_open')} open, {front.integer('connections_opened')} "
        "since start"
        + (
            ";  refused: " + ", ".join(f"{code} x{n}" for code, n in sorted(refused.items()))
            if refused
            else ""
        ),
        f"{len(apps)} application{'s' if len(apps) != 1 else ''}, "
        f"{workers} worker{'s' if workers != 1 else ''}",
    ]
    for app in apps:
        lines.append("")
        lines += render_app(app)
    return lines
