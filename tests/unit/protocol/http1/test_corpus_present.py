"""The shared HTTP corpora are test data from outside the repository (`../shared/corpus`).

Every corpus test skips when they are missing, as tests needing an external program do; this one
says so once, and fails instead under CORRAL_REQUIRE_EXTERNAL=1 (CI), where a silent skip of
hundreds of parser cases would hide a regression.
"""

from __future__ import annotations

import pytest

from conftest import REQUIRE_EXTERNAL
from corpus_cases import corpus_available


def test_the_http_corpora_are_present() -> None:
    if corpus_available():
        return
    message = "the HTTP corpora (../shared/corpus or CORRAL_CORPUS_DIR) are missing"
    if REQUIRE_EXTERNAL:
        pytest.fail(message + " (CORRAL_REQUIRE_EXTERNAL=1 forbids skipping)")
    pytest.skip(message)
