"""The user's question as numbers: the one definition of the goal and its defaults (fractions inside, percent on
the command line and in print)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.records.units import percent
from mgpu_core.config import ConfigError


@dataclass(frozen=True)
class Goal:
    min_time_cut: float = field(default=0.40, metadata={"percent": True})
    """Goal: percent by which the epoch time must drop against the 1-device single baseline."""

    min_val_acc: float = field(default=0.78, metadata={"percent": True})
    """Goal: validation accuracy, in percent, a configuration must reach (its time to reach it is recorded)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_time_cut) and 0 <= self.min_time_cut < 1):
            raise ConfigError(f"min_time_cut: must be a percentage in [0, 100) (got {percent(self.min_time_cut):g})")
        if not (math.isfinite(self.min_val_acc) and 0 <= self.min_val_acc <= 1):
            raise ConfigError(f"min_val_acc: must be a percentage in [0, 100] (got {percent(self.min_val_acc):g})")

    @property
    def min_speedup(self) -> float:
        """The epoch-time speedup the time cut amounts to: 1 / (1 - cut)."""
        return 1 / (1 - self.min_time_cut)


def pct(fraction: float) -> str:
    """A fraction as the percent a user typed: 0.78 -> '78%', 0.785 -> '78.5%'."""
    return f"{percent(fraction):.4g}%"
