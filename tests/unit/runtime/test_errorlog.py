"""ErrorLogs: records tagged with a known application reach its file, written by the listener
thread; others do not; two owners of one application's log (a reload's old and new
controllers) share it until the last one is done."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.runtime.errorlog import ErrorLogs, ErrorLogSpec, log_file_name


def test_records_of_known_applications_reach_their_files(tmp_path: Path) -> None:
    logger = logging.getLogger("corral.test_errorlog")
    logs = ErrorLogs(logger)
    try:
        logs.open("site:/:app", ErrorLogSpec(str(tmp_path / "log")))
        logger.warning("for the app", extra={"app": "site:/:app"})
        logger.warning("for another app", extra={"app": "other"})
        logger.warning("for nobody")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with a traceback", extra={"app": "site:/:app"})
        assert logs.flush()
        # A second owner (a reloaded configuration) takes over; the first one closing does
        # not stop the log.
        logs.open("site:/:app", ErrorLogSpec(str(tmp_path / "log")))
        logs.close_app("site:/:app")
        logger.info("after the reload", extra={"app": "site:/:app"})
        logs.close_app("site:/:app")
        logger.info("after the last owner", extra={"app": "site:/:app"})
        assert logs.flush()
    finally:
        logs.close()
    assert log_file_name("site:/:app") == "site_app.log"
    text = (tmp_path / "log" / "site_app.log").read_text()
    assert " WARNING for the app" in text
    assert "another app" not in text and "nobody" not in text
    assert "ValueError: boom" in text and "Traceback (most recent call last)" in text
    assert " INFO after the reload" in text
    assert "after the last owner" not in text


def test_an_error_log_that_cannot_be_written_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("a file where the folder should be\n")
    logger = logging.getLogger("corral.test_errorlog_blocked")
    logs = ErrorLogs(logger)
    caplog.set_level(logging.WARNING, logger="corral.runtime.errorlog")
    try:
        logs.open("app", ErrorLogSpec(str(blocked)))
        for n in range(3):
            logger.warning("line %d", n, extra={"app": "app"})
        assert logs.flush()
    finally:
        logs.close()
    reports = [r for r in caplog.records if r.name == "corral.runtime.errorlog"]
    assert len(reports) == 1, [r.getMessage() for r in reports]
    assert "cannot write the error log" in reports[0].getMessage()
    assert str(blocked) in reports[0].getMessage()
