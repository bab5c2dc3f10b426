"""What an application does about requests and file changes, by phase. Pure policy.

Phases of an application with a deploy script::

    DEPLOY_NEEDED --first request--> DEPLOYING --script succeeded--> SERVING
          ^                              |
          |                              +--script failed or timed out--> FAILED
          +---- a file changed (FAILED), or the configuration changed (any phase) ----+

An application without a deploy script is SERVING from the start. While it serves, a change
to its deploy script runs the script again beside the serving workers, then restarts them
rolling (the phase stays SERVING: a failing script leaves them serving).
"""

from __future__ import annotations

import enum
from collections.abc import Collection

from corral.runtime.watchrules import Change


class Phase(enum.Enum):
    #: The deploy script must run before the next request is served.
    DEPLOY_NEEDED = "deploy needed"
    #: The deploy script runs (the workers are stopped).
    DEPLOYING = "deploying"
    #: Requests go to the workers.
    SERVING = "serving"
    #: The deploy script failed; the application stays stopped until its files change.
    FAILED = "deploy failed"


class RequestAction(enum.Enum):
    SERVE = "serve"
    START_DEPLOY = "start the deploy script"
    WAIT = "deployment in progress"
    REFUSE = "deploy failed"


class ChangeAction(enum.Enum):
    NOTHING = "nothing"
    RESTART = "rolling restart"
    REDEPLOY = "run the deploy script again"
    #: Run the deploy script while the workers serve, then restart them rolling if it succeeds.
    DEPLOY_THEN_RESTART = "run the deploy script, then restart rolling"


def on_request(phase: Phase) -> RequestAction:
    """What a request does to (and gets from) an application in ``phase``."""
    if phase is Phase.SERVING:
        return RequestAction.SERVE
    if phase is Phase.DEPLOY_NEEDED:
        return RequestAction.START_DEPLOY
    if phase is Phase.DEPLOYING:
        return RequestAction.WAIT
    return RequestAction.REFUSE


def on_changes(phase: Phase, changes: Collection[Change]) -> ChangeAction:
    """What a batch of file changes does.

    Serving: a change to the deploy script itself runs it again while the workers keep
    serving, then restarts them rolling; restart.txt or a file matching
    WATCH_FILE_CHANGES_MASK restarts the workers (rolling); other files do nothing. Failed
    deploy: any change of the application's files (the script, the app, restart.txt) makes the
    next request run the script again. While the script is due or running, changes do nothing:
    the workers start afterwards anyway.
    """
    if not changes:
        return ChangeAction.NOTHING
    if phase is Phase.FAILED:
        return ChangeAction.REDEPLOY
    if phase is Phase.SERVING and Change.DEPLOY_SCRIPT in changes:
        return ChangeAction.DEPLOY_THEN_RESTART
    if phase is Phase.SERVING and (Change.TRIGGER in changes or Change.MASKED in changes):
        return ChangeAction.RESTART
    return ChangeAction.NOTHING
