"""Configuration errors: each names a file, a line and a setting; all are collected, then raised."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from corral.config.model import Location, ServerConfig
from corral.errors import CorralError


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in a configuration file, rendered as ``file:line: setting: message``."""

    location: Location
    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.setting}: {self.message}"


class ConfigErrors(CorralError):
    """Every error found in a configuration; raised instead of returning a half model.

    ``partial`` is the model without what failed, when one could be built: `corral check`
    runs the later checks (the engines') on it, so that one pass reports every error; nothing
    serves it.
    """

    def __init__(self, errors: list[ConfigError], partial: ServerConfig | None = None) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        self.partial = partial
        super().__init__("\n".join(str(error) for error in self.errors))


def in_file_order(errors: list[ConfigError]) -> list[ConfigError]:
    """``errors`` in file order then line order (files in the order first met)."""
    first: dict[str, int] = {}
    for index, error in enumerate(errors):
        first.setdefault(error.location.file, index)
    return sorted(errors, key=lambda e: (first[e.location.file], e.location.line))


class Problems:
    """Collects errors while a configuration is read, so that all are reported at once."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, location: Location, setting: str, message: str) -> None:
        error = ConfigError(location, setting, message)
        if error not in self.errors:
            self.errors.append(error)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, partial: ServerConfig | None = None) -> None:
        """Raise every error, in file order then line order (files in the order first met)."""
        if self.errors:
            raise ConfigErrors(in_file_order(self.errors), partial)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when ``name`` looks like a misspelling of one of ``known``
    (difflib, case-insensitive), else ``""``: appended to an "unknown ..." message."""
    spelled = {candidate.lower(): candidate for candidate in known}
    close = difflib.get_close_matches(name.lower(), list(spelled), n=1, cutoff=0.75)
    return f"; did you mean {spelled[close[0]]!r}?" if close else ""
