"""The study's axes beside mode and device count: each a comma list on the sweep's command line, each value a
separately labelled configuration of the modes it applies to (its own trials, table row and plot line)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, fields
from typing import Literal

from mgpu_core.config import DEFAULTS, MODE_ONLY, CommHook, ConfigError, FsdpWrap
from mgpu_core.names import DISTRIBUTED_MODES

Switch = Literal["off", "on"]
APPLIES_TO = {"grad_accum": DISTRIBUTED_MODES, **MODE_ONLY}
"""Which modes each axis varies: accumulation where there is communication to save; each wrapper's own knobs."""


def _switch(name: str) -> tuple[str, ...]:
    return ("on" if DEFAULTS[name] else "off",)


@dataclass(frozen=True)
class Axes:
    sync_bn: tuple[Switch, ...] = field(default=_switch("sync_bn"))
    """ddp: BatchNorm as SyncBatchNorm, e.g. off,on (CUDA only)."""

    grad_accum: tuple[int, ...] = (DEFAULTS["grad_accum"],)
    """ddp and fsdp: micro-batches per optimizer step, e.g. 1,4."""

    ddp_bucket_mb: tuple[float, ...] = (DEFAULTS["ddp_bucket_mb"],)
    """ddp: bucket_cap_mb values, e.g. 1,25."""

    ddp_static_graph: tuple[Switch, ...] = field(default=_switch("ddp_static_graph"))
    """ddp: static_graph, e.g. off,on."""

    ddp_grad_as_bucket_view: tuple[Switch, ...] = field(default=_switch("ddp_grad_as_bucket_view"))
    """ddp: gradient_as_bucket_view, e.g. off,on."""

    ddp_comm_hook: tuple[CommHook, ...] = (DEFAULTS["ddp_comm_hook"],)
    """ddp: gradient compression hooks, e.g. none,bf16,fp16,powersgd."""

    fsdp_wrap: tuple[FsdpWrap, ...] = (DEFAULTS["fsdp_wrap"],)
    """fsdp: sharding units, e.g. layer,model."""

    def __post_init__(self) -> None:
        if any(isinstance(k, bool) or k < 1 for k in self.grad_accum):
            raise ConfigError(f"grad_accum: every value must be an integer >= 1 (got {self.grad_accum!r})")
        if any(not (math.isfinite(b) and b > 0) for b in self.ddp_bucket_mb):
            raise ConfigError(f"ddp_bucket_mb: every value must be > 0 (got {self.ddp_bucket_mb!r})")

    def variants(self, mode: str) -> list[tuple[tuple[str, object], ...]]:
        """Every combination of the axes that apply to `mode`, as (field, TrainConfig value) pairs."""
        names = [f.name for f in fields(self) if mode in APPLIES_TO[f.name]]
        values = [[v == "on" if isinstance(DEFAULTS[n], bool) else v for v in getattr(self, n)] for n in names]
        return [tuple(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
