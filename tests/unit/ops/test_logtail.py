"""The dashboard's log tail: the records tagged with an application, the last few lines each."""

from __future__ import annotations

import logging

from corral.ops.logtail import LINE, LogTail, log_key


def test_keeps_the_last_lines_of_each_tagged_application() -> None:
    logger = logging.getLogger("corral.test.logtail")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    tail = LogTail(keep=3)
    tail.attach(logger)
    try:
        key = log_key("www", "/", "shop")
        assert key == "www:/:shop"  # as engines.app_label names it in the records
        logger.info("untagged: not kept")
        logger.debug("below INFO: not kept", extra={"app": key})
        logger.info("started worker pid %d", 7, extra={"app": key})
        logger.warning("Traceback:\n  line 1\n" + "x" * (LINE + 50), extra={"app": key})
        logger.info("other app", extra={"app": "api:/v1:api"})
        lines = tail.tail(key)
        assert len(lines) == 3  # the traceback's three lines pushed the first out
        assert lines[0].endswith(" WARNING Traceback:")
        assert lines[1].endswith("WARNING   line 1")
        assert len(lines[2].split(" WARNING ", 1)[1]) == LINE
        assert tail.tail("api:/v1:api")[0].endswith(" other app")
        assert tail.tail("nobody") == []
    finally:
        tail.detach()
    logger.info("after detach", extra={"app": key})
    assert not any("after detach" in line for line in tail.tail(key))
