"""From one collective-benchmark record (comm.jsonl) to the point prediction of one configuration: α-β fits per
operation, the compute profile, contention κ, and the replay (bench.explain.replay). Pure: dicts in, dicts out.

The baseline is the collective benchmark's own 1-rank compute-only step, measured in the same run and with the
same settings as its N-rank step (so the band and the point compare like with like); where a record lacks it
(older records), the study's 1-device single step is used, and the prediction says which.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench.explain.replay import AlphaBeta, ComputeProfile, Replay, ddp_step, dp_step, fit_alpha_beta, fsdp_step
from bench.explain.scaling_model import speedup, step_band

HOOK_BYTES = {"none": 1.0, "bf16": 0.5, "fp16": 0.5}
"""Share of the gradient bytes a DDP comm hook all-reduces (PowerSGD's low-rank traffic has no model here)."""
BASELINE_SAME_RUN = "the collective benchmark's 1-rank compute-only step (same run)"
BASELINE_SINGLE = "the 1-device single configuration's step"


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


def replay(settings: Settings, comm_record: dict) -> Replay | None:
    """The replayed step of `settings` at the record's device count, or None where the model has nothing to say
    (no compute profile, a PowerSGD hook, a mode without communication)."""
    profile = profile_of(comm_record)
    fits = fits_of(comm_record)
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


def predict(settings: Settings, comm_record: dict, base_step_s: float | None = None,
            base_epoch_s: float | None = None) -> dict | None:
    """The prediction of one configuration as the record carries it, or None (see `replay`). The baseline step
    is the record's own 1-rank compute-only step where measured, else `base_step_s` (the single configuration's);
    predicted_epoch_s = base_epoch_s / predicted speedup (None without a measured baseline epoch). Speedups
    follow bench.explain.scaling_model.speedup; the band is the full-overlap to no-overlap range of
    bench.explain.scaling_model.step_band from the same baseline."""
    rep = replay(settings, comm_record)
    same_run = comm_record.get("compute_step_1_s")
    base = same_run or base_step_s
    if rep is None or not base:
        return None
    k = settings.grad_accum
    comm_at_model = rep.comm_s if settings.mode != "ddp" else fits_of(comm_record)["all_reduce"].time_s(
        comm_record["grad_bytes"] * HOOK_BYTES[settings.ddp_comm_hook])
    band = step_band(settings.mode, comm_record["compute_step_s"] * k, comm_at_model)
    point = speedup(base, settings.base_global_batch, rep.step_s, settings.global_batch)
    low, high = (speedup(base, settings.base_global_batch, t, settings.global_batch)
                 for t in (band.serial_s, band.overlap_s))
    fits = fits_of(comm_record)
    return {
        "predicted_step_s": rep.step_s,
        "predicted_speedup": point,
        "band_speedup": [low, high],
        "predicted_epoch_s": base_epoch_s / point if base_epoch_s else None,
        "band_epoch_s": [base_epoch_s / high, base_epoch_s / low] if base_epoch_s else None,
        "baseline": BASELINE_SAME_RUN if same_run else BASELINE_SINGLE,
        "base_step_s": base,
        "compute_step_s": rep.compute_s,
        "comm_s": rep.comm_s,
        "exposed_comm_s": rep.exposed_comm_s,
        "overlap_share": rep.overlap_share,
        "buckets": len(rep.buckets),
        "kappa": kappa_of(comm_record),
        "alpha_beta": {op: {"alpha_s": f.alpha_s, "beta_s_per_byte": f.beta_s_per_byte,
                            "geomean_rel_error": f.geomean_rel_error, "points": f.points} for op, f in fits.items()},
        "comm_timestamp": (comm_record.get("provenance") or {}).get("timestamp"),
    }
