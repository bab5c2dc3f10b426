"""Per-application error logs (ERROR_LOG_DIR): worker output, tracebacks and lifecycle events.

Everything Corral knows about an application's workers is already a log record tagged with the
application's name (``extra={"app": NAME}``): each line a worker writes to stderr or stdout
(tracebacks included, ``supervision.process``), and the pool's lifecycle events: started,
ready, retired and why, stopped, crashed with its exit code or signal, cannot start
(``supervision.pool``), deploy runs (``runtime.deploy``). ``ErrorLogs`` is one handler on the
``corral`` logger that copies the records of the applications it knows into
``ERROR_LOG_DIR/<app>.log``, size-rotated (``<app>.log.1`` ... ``.N``).

Never on the event loop: the handler only puts records on a queue; one listener thread formats
them, creates the folder and writes and rotates the files (``logging.handlers.QueueListener``).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
from dataclasses import dataclass

#: Defaults (the settings ``ERROR_LOG_MAX_SIZE`` / ``ERROR_LOG_FILES`` override them per app).
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Corral's own log (never tagged with an application, so never copied to an app's file).
_log = logging.getLogger("corral.runtime.errorlog")


def log_file_name(app: str) -> str:
    """The file name for an application's log: its name with unsafe characters replaced."""
    return (_UNSAFE.sub("_", app).strip("._") or "app") + ".log"


@dataclass(frozen=True, slots=True)
class ErrorLogSpec:
    """Where and how one application's error log is written."""

    folder: str
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS

    def path(self, app: str) -> str:
        return os.path.join(self.folder, log_file_name(app))


class _AppFile(logging.handlers.RotatingFileHandler):
    """A rotating file whose folder is created when the first record is written."""

    def __init__(self, spec: ErrorLogSpec, app: str) -> None:
        self.spec = spec
        super().__init__(
            spec.path(app),
            maxBytes=spec.max_bytes,
            backupCount=spec.backups,
            encoding="utf-8",
            delay=True,
        )
        self.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
        self._reported = False

    def _open(self):  # type: ignore[no-untyped-def]  # typeshed: -> TextIOWrapper
        os.makedirs(self.spec.folder, exist_ok=True)
        return super()._open()

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk, a folder that cannot be made: said once in Corral's own log (where the
        # application's lines still go), not once per line on stderr.
        if self._reported:
            return
        self._reported = True
        _log.warning(
            "cannot write the error log %s (%s); the application's lines go to Corral's "
            "own log only",
            self.baseFilename,
            sys.exc_info()[1],
        )


class _Dispatcher(logging.Handler):
    """Runs in the listener thread: hands each record to its application's file."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, _AppFile] = {}
        self._lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:
        with self._lock:
            control = getattr(record, "_corral_errorlog", None)
            if control is not None:
                self._control(*control)
                return True
            target = self.files.get(getattr(record, "app", ""))
        if target is not None:
            target.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() overrides
        self.handle(record)

    def _control(self, action: str, app: str, payload: object) -> None:
        if action == "flush":
            assert isinstance(payload, threading.Event)
            payload.set()
            return
        old = self.files.pop(app, None)
        if old is not None:
            old.close()
        if action == "open" and isinstance(payload, ErrorLogSpec):
            self.files[app] = _AppFile(payload, app)

    def close(self) -> None:
        with self._lock:
            for target in self.files.values():
                target.close()
            self.files.clear()
        super().close()


class _Enqueue(logging.handlers.QueueHandler):
    """On the caller's thread: keep only records of known applications; queue them."""

    def __init__(self, q: queue.SimpleQueue[logging.LogRecord], apps: set[str]) -> None:
        super().__init__(q)
        self._apps = apps

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "app", None) in self._apps


class ErrorLogs:
    """The host's error logs: ``open(app, spec)`` starts copying an application's records."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("corral")
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._apps: set[str] = set()
        #: How many controllers use each application's log (a reload overlaps two).
        self._owners: dict[str, int] = {}
        self._dispatcher = _Dispatcher()
        self._handler = _Enqueue(self._queue, self._apps)
        self._listener: logging.handlers.QueueListener | None = None

    def open(self, app: str, spec: ErrorLogSpec) -> None:
        """Write ``app``'s records to ``spec``'s folder from now on (a later ``open`` for the same
        app, such as a reloaded configuration's, takes over the file)."""
        self._start()
        self._owners[app] = self._owners.get(app, 0) + 1
        self._apps.add(app)
        self._post("open", app, spec)

    def close_app(self, app: str) -> None:
        """One owner of ``app``'s log is done with it; the last one closes the file (what is
        queued is written first)."""
        count = self._owners.get(app, 0) - 1
        if count > 0:
            self._owners[app] = count
            return
        self._owners.pop(app, None)
        if app in self._apps:
            self._apps.discard(app)
            self._post("close", app, None)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written (tests, shutdown). Blocks: call it
        from a thread, or where blocking is fine."""
        if self._listener is None:
            return True
        done = threading.Event()
        self._post("flush", "", done)
        return done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, close every file and detach from the logger."""
        if self._listener is None:
            return
        self._logger.removeHandler(self._handler)
        self._listener.stop()  # drains the queue
        self._listener = None
        self._dispatcher.close()
        self._apps.clear()
        self._owners.clear()

    def _start(self) -> None:
        if self._listener is not None:
            return
        # The lifecycle events are INFO records: make sure the logger lets them through.
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._listener = logging.handlers.QueueListener(
            self._queue,
            self._dispatcher,
            respect_handler_level=False,
        )
        self._listener.start()
        self._logger.addHandler(self._handler)

    def _post(self, action: str, app: str, payload: object) -> None:
        record = logging.LogRecord("corral", logging.DEBUG, "", 0, "", None, None)
        record._corral_errorlog = (action, app, payload)
        self._queue.put(record)


__all__ = ["DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "ErrorLogSpec", "ErrorLogs", "log_file_name"]
