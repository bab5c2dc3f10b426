"""Corral's own Python worker (``python -m corral.worker``) under the application's interpreter.

FastCGI over the Unix socket at fd 0; PYTHONPATH is the application's entries and, last, a folder
of Corral's worker modules only (``launch.worker_import_dir``: never the site-packages of
Corral's own dependencies, which would shadow the app's virtualenv); ``threads`` requests at once
per worker (``connections_per_worker``), or, with ``threads`` unset, a thread per connection on
demand up to ``maxThreads`` (``max_threads_per_worker``), as many as the pool's concurrency
policy opens connections (``supervision/concurrency.py``). It answers a WebSocket Upgrade with
101 when it serves an ASGI app (a WSGI app answers it as plain HTTP), so its routes may tunnel.
"""

from __future__ import annotations

from corral.config.expand import finish_env
from corral.config.model import AppConfig, EngineConfig, EngineKind
from corral.engines.base import (
    Backend,
    app_label,
    connect_for,
    http_capacity,
    speaks_http,
    unsupported,
)
from corral.supervision.launch import WarmUp, python_worker_plan
from corral.supervision.probe import fastcgi_probe
from corral.supervision.settings import PoolSettings
from corral.supervision.template import TemplateSpawner
from corral.supervision.template import supported as template_supported


class PythonWorkerKind:
    name = "python-worker"

    def handles(self, engine: EngineConfig) -> bool:
        return engine.kind is EngineKind.PYTHON_WORKER

    def connections_per_worker(self, engine: EngineConfig) -> int | None:
        return http_capacity(engine) or engine.threads or 1

    def elastic(self, engine: EngineConfig) -> bool:
        return engine.threads == 0 and not speaks_http(engine)

    def backend(self, app: AppConfig, settings: PoolSettings) -> Backend:
        engine = app.engine
        if speaks_http(engine):
            raise unsupported(
                app,
                "protocol",
                f"engine {engine.name!r}: Corral's Python worker speaks FastCGI, not HTTP",
            )
        env = finish_env(app.env, app.module_vars, port=None, host=None, instance_id=0)
        plan = python_worker_plan(
            app.current_directory,
            python=app.interpreter,
            threads=settings.connections_per_worker,
            max_threads=settings.max_threads_per_worker,
            engine=engine.name,
            base_env=env,
            title=worker_title(app),
            scheduling=app.worker_scheduling,
            hooks={
                "app-start": app.hook_app_start,
                "after-fork": app.hook_after_fork,
                "worker-exit": app.hook_worker_exit,
            },
            warm_up=None
            if app.warm_up is None
            else WarmUp(app.warm_up, app.warm_up_requests, app.script_name),
        )
        spawner = (
            TemplateSpawner(app_label(app), start_timeout=settings.start_timeout)
            if preloads(app.preload, settings.max_instances)
            else None
        )
        return Backend(plan, connect_for(app), probe=fastcgi_probe, upgrade=True, spawner=spawner)


def preloads(preload: str, max_instances: int) -> bool:
    """Whether the app's workers are forked from a template: ``preload`` on, or auto and the
    app may run more than one worker; and the host can watch forked workers (Linux)."""
    if preload == "off" or (preload == "auto" and max_instances == 1):
        return False
    return template_supported()


def worker_title(app: AppConfig) -> str:
    """What ``ps`` shows for one of the application's workers."""
    return f"corral worker {app.site}/{app.name} ({app.engine.name})"


KIND = PythonWorkerKind()
