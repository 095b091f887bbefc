"""From one collective-benchmark record (comm.jsonl) to the point prediction of one configuration: α-β fits per
operation, the compute profile, contention κ, and the replay (bench.explain.replay). Pure: dicts in, dicts out.

The epoch is predicted in absolute terms (steps x the replayed step from the collective benchmark's N-rank
measurement, taken minutes before the configuration runs, in the same layout); speedups are against the
collective benchmark's own 1-rank compute-only step (same run, same settings as its N-rank step, so the point and
the band compare like with like; issue 20 item 4), and the prediction says which baseline it used.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from bench.explain.replay import (
    AlphaBeta,
    ComputeProfile,
    MeasuredCollective,
    Replay,
    ddp_step,
    dp_step,
    fit_alpha_beta,
    fsdp_step,
)
from bench.explain.scaling_model import speedup, step_band

HOOK_BYTES = {"none": 1.0, "bf16": 0.5, "fp16": 0.5}
"""Share of the gradient bytes a DDP comm hook all-reduces (PowerSGD's low-rank traffic has no model here)."""
BASELINE_SAME_RUN = "the collective benchmark's 1-rank compute-only step (same run)"
BASELINE_SINGLE = "the 1-device single configuration's step"
BASELINE_SINGLE_EPOCH = "the 1-device single configuration's measured epoch"


def fits_of(comm_record: dict) -> dict[str, AlphaBeta]:
    """α-β per operation from a comm record's rows (median time per size). An operation measured at one size only
    takes all-reduce's α (same transport, same latency) and β from its one point."""
    devices = comm_record["devices"]
    by_op: dict[str, dict[int, list[float]]] = {}
    for row in comm_record["rows"]:
        by_op.setdefault(row["op"], {}).setdefault(row["bytes"], []).append(row["time_s"])
    fits = {}
    for op, times in by_op.items():
        if len(times) >= 2:
            sizes = sorted(times)
            fits[op] = fit_alpha_beta(op, devices, sizes, [statistics.median(times[s]) for s in sizes])
    alpha = fits["all_reduce"].alpha_s if "all_reduce" in fits else 0.0
    for op, times in by_op.items():
        if op not in fits:
            [(size, t)] = [(s, statistics.median(v)) for s, v in times.items()]
            fits[op] = AlphaBeta(op, devices, min(alpha, t), max(0.0, t - min(alpha, t)) / size, 0.0, 1)
    return fits


def measured_of(comm_record: dict) -> dict[str, MeasuredCollective]:
    """Per operation: its measured times (median per size), interpolated within the measured sizes, with its α-β
    fit beyond them (bench.explain.replay.MeasuredCollective)."""
    by_op: dict[str, dict[int, list[float]]] = {}
    for row in comm_record["rows"]:
        by_op.setdefault(row["op"], {}).setdefault(row["bytes"], []).append(row["time_s"])
    fits = fits_of(comm_record)
    return {op: MeasuredCollective(fits[op], tuple(sorted(times)),
                                   tuple(statistics.median(times[s]) for s in sorted(times)))
            for op, times in by_op.items()}


def profile_of(comm_record: dict) -> ComputeProfile | None:
    """The N-rank compute profile (per-parameter gradient-ready times, in ready order), stretched to the record's
    compute-only step (the profile's own steps ran with hooks on, off the clock). None where it was not measured."""
    raw = comm_record.get("compute_profile")
    if not raw:
        return None
    order = sorted(range(len(raw["ready_s"])), key=raw["ready_s"].__getitem__)
    profile = ComputeProfile(raw["step_s"], raw["backward_end_s"], tuple(raw["ready_s"][i] for i in order),
                             tuple(raw["param_bytes"][i] for i in order), raw["forward_s"])
    return profile.scaled(comm_record["compute_step_s"])


def fsdp_units(comm_record: dict, wrap: str) -> list[int]:
    """Bytes per fsdp unit in forward order: with wrap 'layer' every module that owns parameters (mgpu_core's
    _fully_shard), with 'model' one unit."""
    raw = comm_record["compute_profile"]
    if wrap == "model":
        return [sum(raw["param_bytes"])]
    units: dict[str, int] = {}
    for name, nbytes in zip(raw["param_names"], raw["param_bytes"], strict=True):
        owner = name.rpartition(".")[0]
        units[owner] = units.get(owner, 0) + nbytes
    return list(units.values())


def kappa_of(comm_record: dict) -> float:
    """Contention: how much slower compute ran with a collective beside it (1 where not measured)."""
    kappa = (comm_record.get("contention") or {}).get("kappa")
    return max(1.0, kappa) if kappa and math.isfinite(kappa) else 1.0


@dataclass(frozen=True)
class Settings:
    """What of a configuration the prediction depends on."""
    mode: str
    devices: int
    global_batch: int
    """Samples per optimizer step over all devices (accumulation included)."""
    base_global_batch: int
    """The baseline's samples per step (1 device, no accumulation)."""
    grad_accum: int = 1
    ddp_bucket_mb: float = 25.0
    ddp_comm_hook: str = "none"
    fsdp_wrap: str = "layer"


def replay(settings: Settings, comm_record: dict, alpha_beta_only: bool = False) -> Replay | None:
    """The replayed step of `settings` at the record's device count, or None where the model has nothing to say
    (no compute profile, a PowerSGD hook, a mode without communication). Collective times are the measured ones
    interpolated within the sweep's sizes and the α-β fit beyond (only the fit with `alpha_beta_only`)."""
    profile = profile_of(comm_record)
    fits = fits_of(comm_record) if alpha_beta_only else measured_of(comm_record)
    k = settings.grad_accum
    if profile is None or settings.mode == "single":
        return None
    if settings.mode == "ddp" and settings.ddp_comm_hook in HOOK_BYTES and "all_reduce" in fits:
        return ddp_step(profile, fits["all_reduce"], settings.ddp_bucket_mb * 1024 * 1024, kappa_of(comm_record), k,
                        HOOK_BYTES[settings.ddp_comm_hook])
    if settings.mode == "dp" and {"broadcast", "reduce"} <= fits.keys():
        return dp_step(profile.step_s, fits["broadcast"], fits["reduce"], comm_record["grad_bytes"], k)
    if settings.mode == "fsdp" and {"all_gather", "reduce_scatter"} <= fits.keys():
        return fsdp_step(profile, fsdp_units(comm_record, settings.fsdp_wrap), fits["all_gather"],
                         fits["reduce_scatter"], kappa_of(comm_record), k)
    return None


def predict(settings: Settings, comm_record: dict, base_epoch_s: float | None = None,
            base_steps: float | None = None, base_step_s: float | None = None) -> dict | None:
    """The prediction of one configuration as the record carries it, or None (see `replay`).

    predicted_epoch_s = optimizer steps per epoch x the replayed step, where the steps per epoch are the
    baseline's (`base_steps`, micro-batches of the 1-device single run) x base_global_batch / global_batch; the
    band is the same steps x the full-overlap and no-overlap steps of bench.explain.scaling_model.step_band (the
    compute-only step at N ranks, the collective time measured at the model's gradient size). The predicted
    speedup is `base_epoch_s` (the single run's measured epoch) / predicted_epoch_s; without a measured baseline
    epoch, the record's own 1-rank compute-only step (same run) / the replayed step, scaled by the batches
    (bench.explain.scaling_model.speedup), else `base_step_s` (the single configuration's step)."""
    rep = replay(settings, comm_record)
    if rep is None:
        return None
    alpha_beta_only = replay(settings, comm_record, alpha_beta_only=True)
    fits = fits_of(comm_record)
    k = settings.grad_accum
    measured = {r["op"]: r["time_s"] for r in comm_record["rows"] if r["bytes"] == comm_record["grad_bytes"]}
    comm_at_model = rep.comm_s if settings.mode != "ddp" else (
        measured["all_reduce"] if settings.ddp_comm_hook == "none" and "all_reduce" in measured else
        fits["all_reduce"].time_s(comm_record["grad_bytes"] * HOOK_BYTES[settings.ddp_comm_hook]))
    band = step_band(settings.mode, comm_record["compute_step_s"] * k, comm_at_model)
    steps = base_steps * settings.base_global_batch / settings.global_batch if base_steps else None
    epoch = steps * rep.step_s if steps else None
    band_epoch = [steps * band.overlap_s, steps * band.serial_s] if steps else None
    same_run = comm_record.get("compute_step_1_s")
    if same_run or base_step_s:  # like with like: the compute-only step of one rank, from the same run
        base = same_run or base_step_s
        # The 1-rank step ran at the collective run's per-rank batch, which is the baseline's only under weak
        # scaling; under strong scaling one device trains the whole global batch (2x the per-rank share at 2).
        base_batch = (comm_record.get("batch_per_device") or settings.base_global_batch) if same_run else \
            settings.base_global_batch
        point, low, high = (speedup(base, base_batch, t, settings.global_batch)
                            for t in (rep.step_s, band.serial_s, band.overlap_s))
        baseline = BASELINE_SAME_RUN if same_run else BASELINE_SINGLE
    elif base_epoch_s and epoch:
        point, low, high, baseline = (base_epoch_s / epoch, base_epoch_s / band_epoch[1],
                                      base_epoch_s / band_epoch[0], BASELINE_SINGLE_EPOCH)
    else:
        return None
    ideal = settings.devices  # N x, weak or strong, with or without accumulation (global / base batch is 1 when strong)
    refused = None
    if point > ideal * (1 + 1e-9):  # a prediction above ideal is not a prediction (issue 20's plausibility rule)
        refused = (f"predicted speedup {point:.2f}x above the ideal {ideal:g}x: the baseline ({baseline}) was "
                   "measured slower than the N-rank step allows")
        point, low, high = None, None, None
    return {
        "predicted_step_s": rep.step_s,
        "predicted_step_alpha_beta_s": alpha_beta_only.step_s,
        "predicted_speedup": point,
        "band_speedup": [low, high] if point else None,
        "refused": refused,
        "predicted_epoch_s": epoch,
        "band_epoch_s": band_epoch,
        "steps_per_epoch": steps,
        "baseline": baseline,
        "compute_step_s": rep.compute_s,
        "compute_step_1_s": same_run,
        "comm_s": rep.comm_s,
        "exposed_comm_s": rep.exposed_comm_s,
        "overlap_share": rep.overlap_share,
        "buckets": len(rep.buckets),
        "kappa": kappa_of(comm_record),
        "alpha_beta": {op: dataclasses.asdict(f) for op, f in fits.items()},
        "comm_timestamp": (comm_record.get("provenance") or {}).get("timestamp"),
    }
