"""Which configurations a sweep runs, which it skips, and why."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.run.axes import Axes
from bench.run.nodes import span_skip
from mgpu_core.names import DISTRIBUTED_MODES, MODES

NO_AXES = Axes()
"""Every axis at its single default value."""


@dataclass(frozen=True)
class Planned:
    mode: str
    devices: int
    trial: int
    skip: str | None = None
    """Why this configuration is not run, or None."""
    variant: tuple[tuple[str, object], ...] = ()
    """The axis values of this configuration (TrainConfig field, value)."""
    variant_label: str = ""

    @property
    def label(self) -> str:
        return f"{self.mode}{' ' + self.variant_label if self.variant_label else ''} x{self.devices}"

    @property
    def stem(self) -> str:
        """A file-name-safe name of this configuration-trial."""
        words = self.label.replace(" ", "-").replace(".", "p")
        return f"{words}-trial{self.trial}"


def default_counts(visible_gpus: int, cores: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the visible GPUs; on CPU, 1 and 2 processes where the cores allow."""
    limit = visible_gpus if visible_gpus else min(2, cores)
    counts, n = [], 1
    while n <= max(1, limit):
        counts.append(n)
        n *= 2
    return tuple(counts)


def plan(counts: tuple[int, ...], modes: tuple[str, ...], trials: int, visible_gpus: int, cores: int,
         batch_size: int, global_batch: bool, axes: Axes = NO_AXES, label=lambda mode, variant: "",
         nnodes: int = 1, per_node: int | None = None, order_seed: int | None = None,
         closing_baseline: bool = False) -> list[Planned]:
    """Trials outermost, so slow drift of a shared machine spreads over all configurations alike; with `order_seed`,
    each trial round in its own shuffled order (random.Random(order_seed + trial)). single runs on one device only
    (the baseline), whatever the counts; every axis value of a mode is its own configuration (`label` names a
    variant). With several nodes of `per_node` devices, ddp and fsdp counts beyond one node span nodes. With
    `closing_baseline` (and single in `modes`), the 1-device baseline runs once more at the very end, as trial
    `trials`, so drift during the study shows (bench.render.trust)."""
    entries = []
    for trial in range(trials):
        start = len(entries)
        for n in sorted(set(counts) | ({1} if "single" in modes else set())):
            for mode in (m for m in MODES if m in modes):
                if mode == "single" and n != 1:
                    continue
                for variant in axes.variants(mode):
                    spans = nnodes > 1 and mode in DISTRIBUTED_MODES  # beyond one node, the other nodes count
                    too_many = span_skip(n, per_node or 1, nnodes) if spans else _one_node(n, visible_gpus, cores)
                    reason = _skip_reason(mode, n, visible_gpus, batch_size, global_batch, dict(variant), too_many)
                    entries.append(Planned(mode, n, trial, reason, variant, label(mode, variant)))
        if order_seed is not None:
            round_ = entries[start:]
            random.Random(order_seed + trial).shuffle(round_)
            entries[start:] = round_
    if closing_baseline and "single" in modes:
        entries.append(Planned("single", 1, trials, None, (), label("single", ())))
    return entries


def _one_node(n: int, visible_gpus: int, cores: int) -> str | None:
    """Why n devices do not fit on this node, or None."""
    if visible_gpus and n > visible_gpus:
        return f"{n} GPUs requested, {visible_gpus} visible"
    if not visible_gpus and n > cores:
        return f"{n} CPU processes requested, {cores} cores usable"
    return None


def _skip_reason(mode: str, n: int, visible_gpus: int, batch_size: int, global_batch: bool, variant: dict,
                 too_many: str | None) -> str | None:
    if mode == "dp" and visible_gpus == 0:
        return "dp needs CUDA devices; none visible"
    if variant.get("sync_bn") and visible_gpus == 0:
        return "sync-bn needs CUDA devices (torch has no CPU kernel for SyncBatchNorm)"
    if too_many:
        return too_many
    if global_batch and batch_size % n:
        return f"global batch {batch_size} does not split evenly over {n} devices"
    return None
