"""The sweep's own settings; training settings come from mgpu_core.TrainConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.records.study import SCALINGS, Scaling
from mgpu_core.config import ConfigError
from mgpu_core.names import CLASSIC_MODES, MAX_DEVICES, Mode


@dataclass(frozen=True)
class SweepConfig:
    gpus: tuple[int, ...] | None = None
    """Device counts to sweep, e.g. 1,2,4 (default: 1, 2, 4, ... up to the visible GPUs; 1,2 on a CPU-only machine,
    where a count is a number of CPU processes)."""

    modes: tuple[Mode, ...] = CLASSIC_MODES
    """Parallel modes to sweep (fsdp on request). single always runs on 1 device: it is the baseline of
    speedups."""

    trials: int = 1
    """Repeats of every configuration (seed + trial), for medians and spreads."""

    out: str = "reports"
    """Folder for results.jsonl, summary.md, the plots and per-configuration logs."""

    resume: bool = False
    """Skip configurations already completed in <out>/results.jsonl."""

    timeout: float = 1800.0
    """Seconds one configuration may run before its whole process tree is ended and it is recorded as timed out."""

    comm: bool = True
    """Run the collective benchmark (bench.comm) once per device count of 2 or more before that count's
    configurations, so the report can explain the scaling; --no-comm skips it."""

    comm_max_bytes: int = 256 * 1024 * 1024
    """Largest all-reduce of the collective benchmark's size sweep (4 KiB doubling up to it, plus the model's
    gradient size and DDP's bucket size)."""

    scaling: Scaling = "weak"
    """weak: --batch-size is per device, the global batch grows with the devices (the classic experiment); strong:
    --batch-size is the global batch, split over the devices (--global-batch is the older name of --scaling
    strong)."""

    order_seed: int | None = None
    """Shuffle the configurations within each trial round with this seed (recorded in every record), so a slow
    drift or a periodic disturbance cannot line up with one configuration (default: the planned order)."""

    closing_baseline: bool = True
    """Measure the 1-device single baseline once more at the end of the study (one more trial of it); a baseline that
    moved beyond its noise is reported as drift at the top of the summary."""

    def __post_init__(self) -> None:
        if self.gpus is not None:
            if not self.gpus or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.gpus):
                raise ConfigError(f"gpus: every count must be an integer >= 1 (got {self.gpus!r})")
            if max(self.gpus) > MAX_DEVICES:
                raise ConfigError(f"gpus: every count must be <= {MAX_DEVICES} (got {max(self.gpus)})")
            if len(set(self.gpus)) != len(self.gpus):
                raise ConfigError(f"gpus: duplicate counts (got {self.gpus!r})")
        if not self.modes or len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"modes: give each mode once (got {self.modes!r})")
        if self.trials < 1:
            raise ConfigError(f"trials: must be >= 1 (got {self.trials})")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout: must be a finite number of seconds > 0 (got {self.timeout})")
        if isinstance(self.comm_max_bytes, bool) or self.comm_max_bytes < 4096:
            raise ConfigError(f"comm_max_bytes: must be an integer >= 4096 (got {self.comm_max_bytes!r})")
        if self.scaling not in SCALINGS:
            raise ConfigError(f"scaling: must be one of {', '.join(SCALINGS)} (got {self.scaling!r})")
        if not self.out.strip():
            raise ConfigError("out: must name a folder (got '')")
