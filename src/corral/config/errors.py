"""Configuration errors: each names a file, a line and a setting; all are collected, then raised."""

from __future__ import annotations

from dataclasses import dataclass

from corral.config.model import Location
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
    """Every error found in a configuration; raised instead of returning a half model."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


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

    def raise_if_any(self) -> None:
        """Raise every error, in file order then line order (files in the order first met)."""
        if self.errors:
            first: dict[str, int] = {}
            for index, error in enumerate(self.errors):
                first.setdefault(error.location.file, index)
            ordered = sorted(self.errors, key=lambda e: (first[e.location.file], e.location.line))
            raise ConfigErrors(ordered)
