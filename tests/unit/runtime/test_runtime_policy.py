"""The pure parts of the Zoo behaviours: which file changes matter (WatchRules) and what an
application does about requests and changes in each phase (runtime.policy)."""

from __future__ import annotations

import os

import pytest

from corral.runtime.policy import ChangeAction, Phase, RequestAction, on_changes, on_request
from corral.runtime.watchrules import Change, WatchRules

ROOT = "/srv/site"


def rules(*masks: str, **kw: tuple[str, ...]) -> WatchRules:
    return WatchRules(root=ROOT, masks=masks, **kw)


@pytest.mark.parametrize(
    ("masks", "path", "expected"),
    [
        (("*.py",), "app.py", Change.MASKED),
        (("*.py",), "pkg/deep/models.py", Change.MASKED),
        (("*.py",), "APP.PY", Change.MASKED),  # Zoo ran on Windows: case does not matter
        (("*.py",), "settings.ini", Change.OTHER),
        (("*.py", "*.ini"), "conf/settings.ini", Change.MASKED),
        (("php.ini",), "php.ini", Change.MASKED),
        (("php.ini",), "sub/php.ini", Change.MASKED),  # a name mask matches at any depth
        (("conf/*.ini",), "conf/a.ini", Change.MASKED),
        (("conf/*.ini",), "other/a.ini", Change.OTHER),
        ((), "app.py", Change.OTHER),
        ((), "restart.txt", Change.TRIGGER),
        (("*.txt",), "restart.txt", Change.TRIGGER),
        ((), "sub/restart.txt", Change.OTHER),  # only the root's trigger file
        (("*.py",), "__pycache__/app.cpython-311.pyc", None),
        (("*.py",), "pkg/__pycache__/x.py", None),
        (("*.py",), ".git/hooks/x.py", None),
        (("*.py",), "app.py.swp", None),
        (("*.py",), "app.py~", None),
    ],
)
def test_classify(masks: tuple[str, ...], path: str, expected: Change | None) -> None:
    assert rules(*masks).classify(os.path.join(ROOT, path)) is expected


def test_excluded_folders_and_files_and_paths_outside_the_root() -> None:
    r = rules(
        "*.py",
        "*.log",
        excluded_dirs=(f"{ROOT}/log", f"{ROOT}/venv"),
        excluded_files=(f"{ROOT}/deploy.log",),
    )
    assert r.classify(f"{ROOT}/log/app.log") is None
    assert r.classify(f"{ROOT}/log") is None
    assert r.classify(f"{ROOT}/venv/lib/python3.11/site-packages/x.py") is None
    assert r.classify(f"{ROOT}/deploy.log") is None
    assert r.classify(f"{ROOT}/logs/app.log") is Change.MASKED  # a prefix is not a folder
    assert r.classify("/srv/other/app.py") is None
    assert r.classify(ROOT) is None


def test_the_deploy_script_is_its_own_kind_of_change() -> None:
    r = WatchRules(root=ROOT, masks=("*.py",), watch_all=True, deploy_script=f"{ROOT}/deploy.py")
    assert r.classify(f"{ROOT}/deploy.py") is Change.DEPLOY_SCRIPT  # though *.py matches it
    assert r.classify(f"{ROOT}/sub/deploy.py") is Change.MASKED
    assert r.classify(f"{ROOT}/deploy.py.swp") is None  # an editor's file is still nothing
    assert rules("*.py").classify(f"{ROOT}/deploy.py") is Change.MASKED  # no DEPLOY_FILE


def test_requests_by_phase() -> None:
    assert on_request(Phase.SERVING) is RequestAction.SERVE
    assert on_request(Phase.DEPLOY_NEEDED) is RequestAction.START_DEPLOY
    assert on_request(Phase.DEPLOYING) is RequestAction.WAIT
    assert on_request(Phase.FAILED) is RequestAction.REFUSE


@pytest.mark.parametrize(
    ("phase", "changes", "expected"),
    [
        (Phase.SERVING, {Change.MASKED}, ChangeAction.RESTART),
        (Phase.SERVING, {Change.TRIGGER}, ChangeAction.RESTART),
        (Phase.SERVING, {Change.OTHER}, ChangeAction.NOTHING),
        (Phase.SERVING, set(), ChangeAction.NOTHING),
        (Phase.SERVING, {Change.DEPLOY_SCRIPT}, ChangeAction.DEPLOY_THEN_RESTART),
        (Phase.SERVING, {Change.DEPLOY_SCRIPT, Change.MASKED}, ChangeAction.DEPLOY_THEN_RESTART),
        (Phase.FAILED, {Change.DEPLOY_SCRIPT}, ChangeAction.REDEPLOY),
        (Phase.DEPLOYING, {Change.DEPLOY_SCRIPT}, ChangeAction.NOTHING),
        (Phase.DEPLOY_NEEDED, {Change.DEPLOY_SCRIPT}, ChangeAction.NOTHING),
        (Phase.FAILED, {Change.OTHER}, ChangeAction.REDEPLOY),
        (Phase.FAILED, {Change.TRIGGER}, ChangeAction.REDEPLOY),
        (Phase.FAILED, set(), ChangeAction.NOTHING),
        (Phase.DEPLOYING, {Change.MASKED, Change.TRIGGER}, ChangeAction.NOTHING),
        (Phase.DEPLOY_NEEDED, {Change.MASKED}, ChangeAction.NOTHING),
    ],
)
def test_changes_by_phase(phase: Phase, changes: set[Change], expected: ChangeAction) -> None:
    assert on_changes(phase, changes) is expected
