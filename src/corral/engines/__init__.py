"""Engines: how a configured application runs, one module per kind of backend.

==================  ============  ==========================================================
module              transport     runs as
==================  ============  ==========================================================
``service``         tcp.service   nothing started: connections to host:portLower (or host
                                  unix:/path, a Unix socket).
``port_command``    tcp           ``app.argv`` listening itself on a port picked per worker from
                                  portLower..portUpper: Node.js, Rack, PSGI, any HTTP server.
``python_worker``   NamedPipe     ``python -m corral.worker`` under ``app.interpreter``; the
                                  socket at fd 0; PYTHONPATH = the app's + the worker's modules.
``fd0_command``     NamedPipe     ``app.argv`` (php-cgi, any FastCGI responder, or an HTTP
                                  server): the socket at fd 0 (the FastCGI convention).
==================  ============  ==========================================================

The composition root (``corral.app``) asks, once per application at start-up:

- ``pool_settings_for(app, overrides)`` (``engines.poolsettings``): the pool's ``PoolSettings``.
- ``backend_for(app, settings)``: the ``Backend`` (launch plan, connect, probe, whether the route
  speaks HTTP / may tunnel) from the first kind in ``KINDS`` that handles the app's engine.

A new kind of backend is one new module with an ``EngineType`` (``engines.base``) added to
``KINDS`` (see docs/engines.md).
"""

from __future__ import annotations

from corral.config.model import AppConfig
from corral.engines.base import Backend, EngineType, Unsupported, app_label
from corral.engines.poolsettings import pool_settings_for
from corral.engines.registry import KINDS, kind_for
from corral.supervision.settings import PoolSettings


def backend_for(app: AppConfig, settings: PoolSettings) -> Backend:
    """What runs ``app`` and how the front reaches it; ``Unsupported`` when not implemented."""
    return kind_for(app.engine).backend(app, settings)


__all__ = [
    "KINDS",
    "Backend",
    "EngineType",
    "Unsupported",
    "app_label",
    "backend_for",
    "kind_for",
    "pool_settings_for",
]
