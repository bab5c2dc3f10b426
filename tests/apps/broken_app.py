"""Fails at import time the way a real app does: a dependency is missing."""

import corral_missing_dependency_for_tests  # noqa: F401

application = None
