"""The registry of engine kinds: the first kind in ``KINDS`` that handles an engine runs it."""

from __future__ import annotations

from corral.config.model import EngineConfig
from corral.engines import fd0_command, port_command, python_worker, service
from corral.engines.base import EngineType

#: Every engine kind, asked in order: the first that handles an engine runs it.
KINDS: tuple[EngineType, ...] = (
    service.KIND,
    port_command.KIND,
    python_worker.KIND,
    fd0_command.KIND,
)


def kind_for(engine: EngineConfig) -> EngineType:
    for kind in KINDS:
        if kind.handles(engine):
            return kind
    raise LookupError(f"no engine kind runs {engine.name!r}")  # pragma: no cover
