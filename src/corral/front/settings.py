"""The front server's limits and timeouts: `FrontSettings`.

The class lives with the configuration model (`corral.config.model`), which is below the front
in the layers: the configuration builds it from the files (declared once as the `server.*`
settings, whose defaults are this class's) and the composition root adds the command line's
`--set` values; the front only reads it.
"""

from __future__ import annotations

from corral.config.model import FrontSettings

__all__ = ["FrontSettings"]
