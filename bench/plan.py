"""Which configurations a sweep runs, which it skips, and why."""

from __future__ import annotations

from dataclasses import dataclass

from mgpu_core.config import MODES


@dataclass(frozen=True)
class Planned:
    mode: str
    devices: int
    trial: int
    skip: str | None = None
    """Why this configuration is not run, or None."""

    @property
    def label(self) -> str:
        return f"{self.mode} x{self.devices}"


def default_counts(visible_gpus: int, cores: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the visible GPUs; on CPU, 1 and 2 processes where the cores allow."""
    limit = visible_gpus if visible_gpus else min(2, cores)
    counts, n = [], 1
    while n <= max(1, limit):
        counts.append(n)
        n *= 2
    return tuple(counts)


def plan(counts: tuple[int, ...], modes: tuple[str, ...], trials: int, visible_gpus: int, cores: int,
         batch_size: int, global_batch: bool, sync_bn: bool = False) -> list[Planned]:
    """Trials outermost, so slow drift of a shared machine spreads over all configurations alike. single runs on
    one device only (the baseline), whatever the counts."""
    entries = []
    for trial in range(trials):
        for n in sorted(set(counts) | ({1} if "single" in modes else set())):
            for mode in (m for m in MODES if m in modes):
                if mode == "single" and n != 1:
                    continue
                entries.append(Planned(mode, n, trial, _skip_reason(mode, n, visible_gpus, cores, batch_size,
                                                                    global_batch, sync_bn)))
    return entries


def _skip_reason(mode: str, n: int, visible_gpus: int, cores: int, batch_size: int, global_batch: bool,
                 sync_bn: bool) -> str | None:
    if mode == "dp" and visible_gpus == 0:
        return "dp needs CUDA devices; none visible"
    if mode == "ddp" and sync_bn and visible_gpus == 0:
        return "sync-bn needs CUDA devices (torch has no CPU kernel for SyncBatchNorm)"
    if visible_gpus and n > visible_gpus:
        return f"{n} GPUs requested, {visible_gpus} visible"
    if not visible_gpus and n > cores:
        return f"{n} CPU processes requested, {cores} cores usable"
    if global_batch and batch_size % n:
        return f"global batch {batch_size} does not split evenly over {n} devices"
    return None
