"""Configuration: files -> frozen, validated dataclasses (see docs/configuration.md).

Public API:

    from corral.config import load, load_site, load_server, ConfigErrors
    config = load(path)                  # ServerConfig, or raises ConfigErrors (every error)
    from corral.config.check import run_check
    exit_code, text = run_check(path)    # `corral check [PATH]`
"""

from corral.config.errors import ConfigError, ConfigErrors
from corral.config.load import load, load_server, load_site

__all__ = ["ConfigError", "ConfigErrors", "load", "load_server", "load_site"]
