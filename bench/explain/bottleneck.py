"""Explaining a study: each row's step time, per-rank times and data wait, the scaling model's band from the
collective benchmark, the residual, and the bottleneck verdict (the formulas and thresholds are in
bench.explain.scaling_model)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.explain.plausibility import provisional, refused_prediction
from bench.explain.prediction import BASELINE_SINGLE_EPOCH
from bench.explain.scaling_model import (
    Band,
    CommPoint,
    Evidence,
    bottleneck_of,
    extrapolate,
    mode_comm_s,
    residual,
    speedup_band,
    step_band,
    straggler,
)
from bench.records.study import device_batch
from mgpu_core.recipe import global_batch

HOOK_BYTES = {"none": 1.0, "bf16": 0.5, "fp16": 0.5}
"""Share of the gradient bytes a comm hook all-reduces (PowerSGD's low-rank traffic has no model here: no band)."""


@dataclass
class Explanation:
    step_time_s: float | None = None
    """Median over epochs and trials of epoch time / steps."""
    rank_times_s: list[float] | None = None
    """Each rank's epoch time (median over epochs and trials)."""
    data_wait_share: float = 0.0
    band: Band | None = None
    predicted: tuple[float, float] | None = None
    """(lowest, highest) predicted speedup against the baseline."""
    residual: float | None = None
    bottleneck: str = ""
    point: float | None = None
    """The point prediction of the speedup, made before the configuration ran (median over its trials)."""
    point_band: tuple[float, float] | None = None
    """The band the prediction came with (same baseline as the point)."""
    point_residual: float | None = None
    """Measured speedup / predicted point - 1 (negative: slower than predicted)."""
    predicted_epoch_s: float | None = None
    replay_overlap: float | None = None
    """Share of the communication the replay hid behind compute."""
    ddp_overlap: float | None = None
    """Share DDP itself measured as hidden: overlap / backward communication (its logging data)."""
    baseline: str | None = None
    """What the point and its band are relative to (bench.explain.prediction)."""
    refused: str | None = None
    """Why the prediction was refused (a speedup above the ideal: bench.explain.plausibility), or None."""


@dataclass(frozen=True)
class BandPoint:
    devices: int
    low: float
    high: float
    measured: bool
    """False where the collective measurement was extrapolated to this device count."""
    refused: str | None = None
    """Why this point is no prediction (above the ideal speedup), or None; plots leave refused points out."""


def _median_lists(lists: list[list[float]]) -> list[float] | None:
    width = {len(x) for x in lists if x}
    if len(width) != 1:
        return None
    return [statistics.median(col) for col in zip(*[x for x in lists if x], strict=True)]


def evidence_of(ok: list[dict]) -> Explanation:
    """Step time, per-rank epoch times and data-wait share from a row's successful records."""
    steps = [t / s for r in ok for t, s in zip(r["epoch_times_s"], r.get("steps_per_epoch", []), strict=False) if s]
    ranks = [times for r in ok for times in r.get("rank_epoch_times_s", [])]
    waits = [max(w / t for w, t in zip(wait, times, strict=True) if t > 0)
             for r in ok for wait, times in zip(r.get("rank_data_wait_s", []), r.get("rank_epoch_times_s", []),
                                                strict=False) if wait and times]
    preds = [r["prediction"] for r in ok if r.get("prediction")]
    overlaps = [o["overlap_s"] / o["backward_comm_s"] for r in ok if (o := r.get("ddp_overlap"))
                and o.get("backward_comm_s")]

    def med(key: str) -> float | None:
        values = [p[key] for p in preds if p.get(key) is not None]
        return statistics.median(values) if values else None
    band = [tuple(p["band_speedup"]) for p in preds if p.get("band_speedup")]
    return Explanation(step_time_s=statistics.median(steps) if steps else None, rank_times_s=_median_lists(ranks),
                       data_wait_share=statistics.median(waits) if waits else 0.0, point=med("predicted_speedup"),
                       point_band=band[-1] if band else None, predicted_epoch_s=med("predicted_epoch_s"),
                       replay_overlap=med("overlap_share"), baseline=preds[-1].get("baseline") if preds else None,
                       refused=next((p["refused"] for p in preds if p.get("refused")), None),
                       ddp_overlap=statistics.median(overlaps) if overlaps else None)


def comm_points(comm_records: list[dict], device_type: str, precision: str, batch_of, model: str = "simplecnn"
                ) -> tuple[dict[int, CommPoint], float | None]:
    """The newest collective measurement per device count that matches the study (model, device type, precision,
    the per-device batch of that count); and the gradient size."""
    newest: dict[int, dict] = {}
    for rec in comm_records:
        if (rec.get("model", "simplecnn"), rec["device_type"], rec["precision"], rec["batch_per_device"]) == (
                model, device_type, precision, batch_of(rec["devices"])):
            current = newest.get(rec["devices"])
            if current is None or rec["provenance"]["timestamp"] >= current["provenance"]["timestamp"]:
                newest[rec["devices"]] = rec
    points = {}
    for n, rec in newest.items():
        at_model = {r["op"]: r for r in rec["rows"] if r["bytes"] == rec["grad_bytes"]}
        points[n] = CommPoint(n, rec["compute_step_s"], {op: r["time_s"] for op, r in at_model.items()},
                              {op: r["busbw_bytes_per_s"] for op, r in at_model.items()})
    grad = next(iter(newest.values()))["grad_bytes"] if newest else None
    return points, grad


def explain(rows, base, comm_records: list[dict], device_type: str, precision: str, batch: int,
            weak: bool, model: str = "simplecnn") -> dict[str, list[BandPoint]]:
    """Fill each row's `explanation` (rows: summary.Row, base: the 1-device single row or None; `batch` is per
    device under weak scaling, global under strong); return the predicted speedup band per mode over the measured
    device counts and, extrapolated, up to twice the largest measured one (not on CPU, where ranks share the
    cores)."""
    scaling = "weak" if weak else "strong"

    def step_batch(n: int) -> int:  # the global batch of one micro-batch; accumulation multiplies it below
        return global_batch(batch, n) if weak else batch

    points, grad_bytes = comm_points(comm_records, device_type, precision,
                                     lambda n: device_batch(batch, n, scaling), model)
    # CPU ranks share one host's cores: compute per rank at a count not measured is unknown, so no extrapolation
    points = (extrapolate(points, grad_bytes) if device_type != "cpu" else points) if grad_bytes else {}
    base_step = base.explanation.step_time_s if base else None
    base_gb = step_batch(1)
    for row in rows:
        e = row.explanation
        if row.epoch_time_s is None:
            continue
        if base_step and row is not base:
            k = row.grad_accum  # one step: K micro-batches of compute, one round of communication
            if row.devices == 1:
                e.band = step_band("single", base_step * k, 0.0)
            elif row.devices in points and row.comm_hook in HOOK_BYTES:
                point = points[row.devices]
                e.band = step_band(row.mode, point.compute_step_s * k,
                                   mode_comm_s(row.mode, point) * HOOK_BYTES[row.comm_hook])
            if e.band:
                predicted = speedup_band(base_step, base_gb, e.band, step_batch(row.devices) * k)
                e.refused = refused_prediction(predicted[1], row.devices, base.noise)
                if e.refused is None:
                    e.predicted = predicted
            if (e.point and e.predicted_epoch_s and row.epoch_time_s and row.speedup
                    and e.baseline != BASELINE_SINGLE_EPOCH):
                # The point and its band were made against the collective benchmark's 1-rank step, the measured
                # speedup is against the single run: put them on the measured scale through the predicted epoch (a
                # configuration's speedup is inverse to its epoch time), so the residual compares like with like
                # and reads as the predicted epoch against the measured one.
                scale = row.speedup * row.epoch_time_s[0] / e.predicted_epoch_s / e.point
                e.point *= scale
                e.point_band = (e.point_band[0] * scale, e.point_band[1] * scale) if e.point_band else None
                e.baseline = f"{BASELINE_SINGLE_EPOCH} (rescaled from {e.baseline} through the predicted epoch)"
            if e.refused:  # no point, band or residual beside a refusal (docs/trust.md: refused predictions)
                e.point = e.point_band = None
            if e.point_band:  # the band made with the prediction
                e.predicted = e.point_band
            if e.predicted:
                e.residual = residual(row.speedup, *e.predicted)
            if e.point:
                e.point_residual = row.speedup / e.point - 1
        if base_step is None:
            e.bottleneck = "no 1-device single baseline to explain against (add single to --modes)"
            continue
        noisy_flag = next((f for f in getattr(row, "flags", []) if f.startswith("noisy")), None)
        if row is base:
            late = straggler(e.rank_times_s or [])
            e.bottleneck = "; ".join(x for x in (
                f"straggler: rank {late[0]} {late[1]:.0%} slower than the median rank" if late else "baseline",
                noisy_flag, provisional(row.trials_ok, row.noise)) if x)
            continue
        e.bottleneck = bottleneck_of(Evidence(mode=row.mode, devices=row.devices, device_type=device_type,
                                        efficiency=row.efficiency or 0.0, rank_times_s=e.rank_times_s or [],
                                        data_wait_share=e.data_wait_share,
                                        base_step_s=base_step * row.grad_accum if base_step else None, band=e.band,
                                        measured_step_s=e.step_time_s, residual=e.residual, noise=row.noise,
                                        noisy=noisy_flag, trials_ok=row.trials_ok))
    bands: dict[str, list[BandPoint]] = {}
    if base_step:
        for mode in sorted({r.mode for r in rows if r.epoch_time_s} - {"single"}):  # modes that ran
            if points:
                bands[mode] = [BandPoint(1, 1.0, 1.0, True)]  # one device: no communication, the baseline's step
            for n, point in sorted(points.items()):
                band = step_band(mode, point.compute_step_s, mode_comm_s(mode, point))
                low, high = speedup_band(base_step, base_gb, band, step_batch(n))
                bands.setdefault(mode, []).append(BandPoint(n, low, high, point.measured,
                                                            refused_prediction(high, n, base.noise)))
    return bands
