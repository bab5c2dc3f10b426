"""Corral: an application host for Python web apps and any other stack.

This module holds the version only and imports nothing, so that both the CLI
and the worker (which runs inside the application's own interpreter) start fast.
"""

__version__ = "0.1.0"
