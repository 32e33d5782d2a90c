"""The catalogue of steps: each a frozen dataclass that plans from the spec and gathered facts
(see `migrate.steps.base`), ordered by the wave graph (`migrate.steps.wave`). No I/O here."""

from migrate.steps.base import Run
from migrate.steps.wave import PHASES, build

__all__ = ["PHASES", "Run", "build"]
