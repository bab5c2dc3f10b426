"""Errors and exit codes shared by the host and the worker.

Stdlib only: the worker imports this module inside the application's own
interpreter, which may be a virtualenv without Corral's dependencies.
"""

from __future__ import annotations

import enum
import signal

#: The signal on which Corral's worker writes every thread's Python stack to its stderr
#: (``faulthandler``); the host sends it before replacing a worker whose request timed out.
STACK_DUMP_SIGNAL = signal.SIGUSR1

#: How Corral's worker starts its own lines on stderr (``corral worker[PID]: ...``), and the tag
#: that marks a notice (news, not a problem: "serving ... on ...") in place of the colon: the
#: host logs notices at INFO, every other stderr line (the app's output, tracebacks, the
#: worker's errors) at WARNING.
WORKER_LINE_START = "corral worker["
WORKER_NOTICE_TAG = " notice: "


class ExitCode(enum.IntEnum):
    """How a worker process says why it ended.

    The pool reads these to tell "the app cannot start" (do not respawn in a
    tight loop; show the traceback) from "the app crashed" (replace it).
    """

    OK = 0
    FAILURE = 1
    USAGE = 2
    #: The application object could not be imported or built.
    APP_LOAD_FAILED = 4
    #: The worker could not open its listening socket or the inherited fd 0 is not a socket.
    BIND_FAILED = 5
    #: The host went away (its liveness pipe closed); the worker ended itself.
    ORPHANED = 6


class CorralError(Exception):
    """Root of Corral's own errors."""
