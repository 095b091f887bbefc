"""Which configurations a sweep runs, which it skips, and why: one Cell per configuration-trial, computed once here
and used by every later step (launch, record, resume, the node schedule)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.records.results import config_key, study_id, variant_label
from bench.records.study import Scaling, device_batch
from bench.records.units import plural
from bench.run.axes import Axes
from bench.run.nodes import nodes_needed, span_skip
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.names import BATCHNORM_FREE, DISTRIBUTED_MODES, MODES
from mgpu_core.recipe import global_batch

NO_AXES = Axes()
"""Every axis at its single default value."""

Variant = tuple[tuple[str, object], ...]
"""The axis values of one configuration, as (TrainConfig field, value) pairs."""


@dataclass(frozen=True)
class PlanInput:
    """What a plan is made from: the study's template and its axes, and the machine(s) it runs on."""

    base: TrainConfig
    """The training settings every configuration shares (mode, devices, batch split, seed and variant are set per
    configuration)."""
    device_type: str
    """cuda or cpu: what a device count counts."""
    counts: tuple[int, ...] = (1,)
    """Device counts to sweep."""
    modes: tuple[str, ...] = ("single",)
    trials: int = 1
    scaling: Scaling = "weak"
    axes: Axes = NO_AXES
    visible_gpus: int = 0
    """CUDA devices visible on this node (0: a count is a number of CPU processes)."""
    cores: int = 1
    """CPU cores usable on this node."""
    nnodes: int = 1
    per_node: int | None = None
    """Devices (processes) per node (default: the visible GPUs, else the usable cores)."""
    order_seed: int | None = None
    """Shuffle each trial round with this seed (recorded); None keeps the fixed order."""
    closing_baseline: bool = False
    """Run the 1-device baseline once more at the end (trial `trials`), so drift during the study shows."""

    @property
    def node_devices(self) -> int:
        return self.per_node or self.visible_gpus or self.cores


@dataclass(frozen=True)
class Cell:
    """One configuration-trial of a study, as the plan computed it."""

    mode: str
    devices: int
    trial: int
    variant: Variant
    skip: str | None
    """Why this configuration is not run, or None."""
    config: TrainConfig
    """What the child trains: its mode, its share of the batch, the trial's seed (base seed + trial), the variant."""
    key: str
    """Identifies the configuration-trial within its study (bench.records.results.config_key), for --resume."""
    study_id: str
    """The study it belongs to (bench.records.results.study_id)."""
    label: str
    """How it reads in tables and progress lines, e.g. 'ddp accum 4 x2'."""
    stem: str
    """A file-name-safe name of the configuration-trial, e.g. 'ddp-accum-4-x2-trial0'."""
    nodes: int = 1
    """How many nodes it runs on (1: node 0 alone)."""


def default_counts(visible_gpus: int, cores: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the visible GPUs; on CPU, 1 and 2 processes where the cores allow."""
    limit = visible_gpus if visible_gpus else min(2, cores)
    counts, n = [], 1
    while n <= max(1, limit):
        counts.append(n)
        n *= 2
    return tuple(counts)


def plan(given: PlanInput) -> list[Cell]:
    """Trials outermost, so slow drift of a shared machine spreads over all configurations alike; with
    `order_seed`, each trial round in its own shuffled order (random.Random(order_seed + trial)). single runs on one
    device only (the baseline), whatever the counts; every axis value of a mode is its own configuration. With
    several nodes of `per_node` devices, ddp and fsdp counts beyond one node span nodes. With `closing_baseline`
    (and single in `modes`), the 1-device baseline runs once more at the very end, as trial `trials`, so drift
    during the study shows (bench.render.trust)."""
    cells = []
    for trial in range(given.trials):
        start = len(cells)
        for n in sorted(set(given.counts) | ({1} if "single" in given.modes else set())):
            for mode in (m for m in MODES if m in given.modes):
                if mode == "single" and n != 1:
                    continue
                for variant in given.axes.variants(mode):
                    cells.append(make_cell(given, mode, n, trial, variant))
        if given.order_seed is not None:
            round_ = cells[start:]
            random.Random(given.order_seed + trial).shuffle(round_)
            cells[start:] = round_
    if given.closing_baseline and "single" in given.modes:
        cells.append(make_cell(given, "single", 1, given.trials))
    return cells


def make_cell(given: PlanInput, mode: str, devices: int, trial: int, variant: Variant = ()) -> Cell:
    """The one Cell of (mode, devices, trial, variant) in the study `given` describes."""
    spans = given.nnodes > 1 and mode in DISTRIBUTED_MODES  # beyond one node, the other nodes count
    too_many = (span_skip(devices, given.node_devices, given.nnodes) if spans
                else _one_node(devices, given.visible_gpus, given.cores))
    skip = _skip_reason(mode, devices, given, dict(variant), too_many)
    changes = {"dp_gpus": devices if mode == "dp" else 1,
               "batch_size": device_batch(given.base.batch_size, devices, given.scaling),
               "seed": given.base.seed + trial, **dict(variant)}
    try:
        config = given.base.for_mode(mode, **changes)
    except ConfigError as exc:
        # The trainer refuses it (torch.compile of dp, static graph with accumulation, ...): skipped with that
        # reason, never a traceback; its record still names the settings it would have run with.
        skip = skip or f"refused: {exc}"
        config = given.base.unchecked_for_mode(mode, **changes)
    label = f"{mode}{' ' + v if (v := variant_label(config)) else ''} x{devices}"
    return Cell(mode=mode, devices=devices, trial=trial, variant=variant, skip=skip, config=config,
                key=config_key(config, devices, trial, given.scaling, given.device_type),
                study_id=study_id(config, devices, given.scaling, given.device_type), label=label,
                stem=f"{label.replace(' ', '-').replace('.', 'p')}-trial{trial}",
                nodes=nodes_needed(devices, given.node_devices) if spans else 1)  # only --nnodes counts nodes


def _one_node(n: int, visible_gpus: int, cores: int) -> str | None:
    """Why n devices do not fit on this node, or None."""
    if visible_gpus and n > visible_gpus:
        return f"{plural(n, 'GPU')} requested, {visible_gpus} visible"
    if not visible_gpus and n > cores:
        return f"{plural(n, 'CPU process', 'CPU processes')} requested, {plural(cores, 'core')} usable"
    return None


def _skip_reason(mode: str, n: int, given: PlanInput, variant: dict, too_many: str | None) -> str | None:
    if variant.get("sync_bn") and given.base.model in BATCHNORM_FREE:
        return f"sync-bn: {given.base.model} has no BatchNorm layer (SyncBatchNorm would change nothing)"
    if mode == "dp" and given.visible_gpus == 0:
        return "dp needs CUDA devices; none visible"
    if variant.get("sync_bn") and given.visible_gpus == 0:
        return "sync-bn needs CUDA devices (torch has no CPU kernel for SyncBatchNorm)"
    if too_many:
        return too_many
    if given.scaling == "strong" and given.base.batch_size % n:
        return f"global batch {given.base.batch_size} does not split evenly over {plural(n, 'device')}"
    return _too_few_samples(n, given, variant)


def _too_few_samples(n: int, given: PlanInput, variant: dict) -> str | None:
    """Why --train-samples holds no whole optimizer step at n devices (training runs whole steps only:
    mgpu_core.pipelines.LAST_BATCH_POLICY), or None."""
    samples = given.base.train_samples
    batch = device_batch(given.base.batch_size, n, given.scaling)
    accum = variant.get("grad_accum", given.base.grad_accum)
    step = global_batch(batch, n, accum)
    if samples is None or samples >= step:
        return None
    return (f"--train-samples {samples} holds no whole step of {step} samples (batch {batch} x {plural(n, 'device')} x "
            f"accumulation {accum}); raise --train-samples or lower --batch-size")
