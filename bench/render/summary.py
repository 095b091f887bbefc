"""From result records to the study's table: medians and spreads, speedup against the 1-device baseline, verdicts."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.explain.bottleneck import BandPoint, Explanation, evidence_of, explain
from bench.explain.goal import Goal, pct
from bench.explain.plausibility import combined_noise, relative_noise
from bench.records.accuracy import time_to_accuracy
from bench.records.study import device_batch, study_batch
from bench.records.units import gib, mib, plural
from bench.render import trust
from mgpu_core.names import MODES


@dataclass
class Row:
    mode: str
    devices: int
    status: str
    """ok, partial (some trials failed), failed, timeout or skipped."""
    trials_ok: int
    trials: int
    epoch_time_s: tuple[float, float, float] | None
    """(median, min, max) over every timed epoch of every successful trial."""
    samples_per_s: tuple[float, float, float] | None
    """samples per epoch / (median, max, min) epoch time: the median is samples / median epoch time (one definition
    with the epoch time column, whatever the number of epochs)."""
    samples_per_s_per_device: float | None
    val_acc: tuple[float, float, float] | None
    """(median, min, max) of the final validation accuracy over trials, as a fraction."""
    time_to_target_s: float | None = None
    """Median training seconds until validation accuracy first reached the target, over trials that reached it."""
    reached: int = 0
    """Successful trials that reached the target."""
    speedup: float | None = None
    efficiency: float | None = None
    time_cut: float | None = None
    """Fraction by which the epoch time dropped against the baseline (negative: it grew)."""
    goal_verdict: str = ""
    """Whether the goal was met: YES, baseline, no (with the reasons), or the status where it did not run."""
    note: str | None = None
    explanation: Explanation = field(default_factory=Explanation)
    variant: str = ""
    """The study axis values that set this series apart (e.g. 'sync-bn'); '' for the plain configuration."""
    tflops_per_device: float | None = None
    """Achieved TFLOP/s per device: FLOPs per training sample x the row's samples/s per device."""
    mfu: float | None = None
    """Model FLOPs utilization: tflops_per_device over the device's peak, a fraction (None where the peak is
    unknown)."""
    peak_memory_bytes: int | None = None
    """The largest peak memory of any rank."""
    grad_accum: int = 1
    comm_hook: str = "none"
    nodes: int = 1
    """Hosts the configuration spanned (the most of any trial)."""
    noise: float | None = None
    """Robust relative noise of the row's per-epoch samples/s (bench.explain.plausibility.relative_noise); for rows
    judged against the baseline, combined with the baseline's: the noise of the speedup."""
    flags: list[str] = field(default_factory=list)
    """Trust flags shown on the row (bench.render.trust): noisy, oversubscribed, super-linear: suspect."""

    @property
    def label(self) -> str:
        return f"{self.mode} {self.variant}".strip()


@dataclass
class StudySummary:
    """A study read back from its records: the rows of its table and what it held fixed (the study id, a string, is
    what its records share)."""

    rows: list[Row]
    device_type: str
    device_name: str
    dataset: str
    batch: int
    """The batch the study holds fixed (bench.records.study.study_batch): per device under weak scaling, the global
    batch (of one micro-batch) under strong scaling; a configuration's own is device_batch(batch, devices)."""
    scaling: str
    precision: str
    recipe: str
    lr_scaling: str
    epochs: int
    goal: Goal
    model: str = "simplecnn"
    parameters: int | None = None
    gradient_bytes: int | None = None
    peak_tflops: float | None = None
    """The device's datasheet peak for the precision in use (None: unknown, or CPU)."""
    bands: dict[str, list[BandPoint]] = field(default_factory=dict)
    """The scaling model's predicted speedup band per mode (measured and extrapolated device counts)."""
    topology: str | None = None
    """A notice when the records' topologies differ."""
    train_samples: int | None = None
    """Training samples per epoch when a subset was used (None: the whole set)."""
    pipeline: str = "device"
    persistent_workers: bool = False
    workers: int | None = None
    """DataLoader worker processes per rank (0: batches load in the training process; None: not recorded)."""
    notices: list[str] = field(default_factory=list)
    """What the reader must know before trusting the table (bench.render.trust): noisy rows, baseline drift,
    suspect rows, refused predictions, records of mixed software, the sweep's order."""

    @property
    def accuracy_claimed(self) -> bool:
        """The reference recipe is tuned for SimpleCNN only; for other models no accuracy target is claimed."""
        return self.model == "simplecnn" or self.recipe != "reference"

    @property
    def title(self) -> str:
        subset = f" ({self.train_samples:,}-sample subset)" if self.train_samples else ""
        model = "SimpleCNN" if self.model == "simplecnn" else self.model
        if self.parameters:
            # small models keep their digits: 330 parameters are not '0.00M', 1.3 KiB not '0.0 MiB'
            params = f"{self.parameters / 1e6:.2f}M" if self.parameters >= 10_000 else f"{self.parameters:,}"
            grads = (f"{mib(self.gradient_bytes):.1f} MiB" if (self.gradient_bytes or 0) >= 0.1 * 2**20
                     else f"{(self.gradient_bytes or 0) / 1024:.1f} KiB")
            model += f" ({params} parameters, {grads} gradients)"
        workers = (", DataLoader workers restarted inside each timed epoch"
                   if self.pipeline == "dataloader" and not self.persistent_workers and self.workers != 0 else "")
        if self.pipeline == "dataloader" and self.workers == 0:
            workers = ", no DataLoader workers (batches load in the training process)"
        return (f"{model} on {self.dataset}{subset}, {self.device_name} ({self.device_type}), {self.batch_words}, "
                f"{self.scaling} scaling, {self.precision}, {self.pipeline} pipeline{workers}, {self.recipe} recipe "
                f"(lr scaling {self.lr_scaling}), {plural(self.epochs, 'epoch')}")

    @property
    def batch_words(self) -> str:
        """The batch the study holds fixed, in words: 'batch 64 per device' (weak scaling), or 'global batch 128,
        split over the devices (64 per device at 2)' (strong scaling; the split at each measured count above 1)."""
        if self.scaling != "strong":
            return f"batch {self.batch} per device"
        splits = [f"{device_batch(self.batch, n, self.scaling)} per device at {n}"
                  for n in sorted({r.devices for r in self.rows if r.devices > 1})]
        return f"global batch {self.batch}, split over the devices" + (f" ({', '.join(splits)})" if splits else "")

    @property
    def baseline(self) -> Row | None:
        return next((r for r in self.rows if r.mode == "single" and not r.variant and r.devices == 1
                     and r.epoch_time_s), None)


def select_study(records: list[dict], warn: Callable[[str], None] = print, study: str | None = None) -> list[dict]:
    """The records of `study`, or of the study of the newest record by timestamp (whatever the order of files);
    other studies mixed into the files are named."""
    if not records:
        return []
    if study is None:
        study = max(records, key=lambda r: r["provenance"].get("timestamp") or "")["study"]
    others = {r["study"] for r in records} - {study}
    if others:
        warn(f"notice: {plural(len(others), 'other study', 'other studies')} in these results "
             f"({', '.join(sorted(others))}) left out; showing study {study} (python -m bench.report with "
             "--study ID draws another)")
    return [r for r in records if r["study"] == study]


def _latest_per_key(records: list[dict]) -> list[dict]:
    """One record per configuration-trial: the newest success, else the newest attempt (resumed or repeated runs)."""
    chosen: dict[str, dict] = {}
    for record in records:
        current = chosen.get(record["key"])
        if current is None or record["status"] == "ok" or current["status"] != "ok":
            chosen[record["key"]] = record
    return list(chosen.values())


def _trained_from(cfg: dict, record: dict) -> int | None:
    """The training subset's size: --train-samples, or what the dataset held where that is fewer (None: no subset)."""
    asked, held = cfg.get("train_samples"), (record.get("dataset") or {}).get("train_samples")
    return min(asked, held) if asked and held else asked


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float]) -> tuple[float, float, float] | None:
    return (statistics.median(values), min(values), max(values)) if values else None


def _throughput(ok: list[dict]) -> tuple[tuple[float, float, float] | None, list[float]]:
    """((samples / median epoch time, samples / slowest, samples / fastest), per-epoch samples/s): samples is the
    median of the epochs' samples trained (samples/s x time, as each epoch recorded them)."""
    times = [t for r in ok for t in r["epoch_times_s"]]
    rates = [v for r in ok for v in r["samples_per_s"]]
    if not times or len(rates) != len(times):
        return None, rates
    samples = statistics.median(v * t for v, t in zip(rates, times, strict=True))
    return (samples / statistics.median(times), samples / max(times), samples / min(times)), rates


def _compute_rate(throughput: tuple[float, float, float] | None, devices: int, ok: list[dict]) -> dict:
    """tflops_per_device and mfu of a row from its own samples/s per device (samples / median epoch time), so the
    table's columns agree (TFLOP/s = samples/s/device x flops_per_sample / 10^12, docs/models.md); a median of the
    per-epoch rates would be another number beside it. Falls back to that median where FLOPs are not recorded."""
    flops = {r.get("flops_per_sample") for r in ok}
    peaks = {r.get("peak_tflops") for r in ok}
    if not throughput or len(flops) != 1 or not (flop := flops.pop()):
        return {"tflops_per_device": _median([v for r in ok for v in r.get("tflops_per_device", [])]),
                "mfu": _median([v for r in ok for v in r.get("mfu", []) if v is not None])}
    tflops = throughput[0] / devices * flop / 1e12
    peak = peaks.pop() if len(peaks) == 1 else None
    return {"tflops_per_device": tflops, "mfu": tflops / peak if peak else None}


def summarize(records: list[dict], goal: Goal, comm_records: list[dict] = ()) -> StudySummary:
    """The study's rows with speedups, goal verdicts and, with collective measurements, the scaling model's band
    and bottleneck verdicts."""
    records = _latest_per_key(records)
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for record in records:
        groups.setdefault((record["mode"], record.get("variant", ""), record["devices"]), []).append(record)
    rows = []
    for (mode, variant, devices), group in sorted(groups.items(),
                                                  key=lambda kv: (kv[0][2], MODES.index(kv[0][0]), kv[0][1])):
        ok = [r for r in group if r["status"] == "ok"]
        failures = [r for r in group if r["status"] != "ok"]
        status = ("ok" if not failures else "partial") if ok else failures[-1]["status"]
        throughput, rates = _throughput(ok)
        reached = [hit[0] for r in ok if (hit := time_to_accuracy(r["epoch_times_s"], r["val_accs"],
                                                                   goal.min_val_acc))]
        rows.append(Row(
            mode=mode, devices=devices, status=status, trials_ok=len(ok), trials=len(group),
            epoch_time_s=_spread([t for r in ok for t in r["epoch_times_s"]]),
            samples_per_s=throughput,
            samples_per_s_per_device=throughput[0] / devices if throughput else None,
            val_acc=_spread([r["val_acc"] for r in ok]),
            time_to_target_s=statistics.median(reached) if reached else None, reached=len(reached),
            note=failures[-1]["error"] if failures else None, explanation=evidence_of(ok), variant=variant,
            **_compute_rate(throughput, devices, ok),
            peak_memory_bytes=max((m for r in ok for m in r.get("peak_memory_bytes", [])), default=None),
            grad_accum=group[-1]["train_config"].get("grad_accum", 1),
            comm_hook=group[-1]["train_config"].get("ddp_comm_hook", "none"),
            nodes=max(r.get("provenance", {}).get("nodes", 1) for r in group),
            noise=relative_noise(rates),
        ))
    reference = (records[-1] if records else {})
    ok_records = [r for r in records if r["status"] == "ok"]
    sample = ok_records[-1] if ok_records else reference
    cfg = sample.get("train_config", {})
    study = StudySummary(rows=rows, device_type=sample.get("device_type", "?"),
                  device_name=sample.get("device_name") or "?",
                  dataset=(sample.get("dataset") or {}).get("name", cfg.get("dataset", "?")),
                  scaling=sample.get("scaling", "?"),
                  precision=cfg.get("precision", "?"), recipe=cfg.get("recipe", "?"),
                  lr_scaling=cfg.get("lr_scaling", "?"), epochs=cfg.get("epochs", 0), goal=goal,
                  train_samples=_trained_from(cfg, sample), pipeline=cfg.get("pipeline", "?"),
                  persistent_workers=cfg.get("persistent_workers", False), workers=cfg.get("workers"),
                  model=sample.get("model", "simplecnn"),
                  parameters=sample.get("parameters"), gradient_bytes=sample.get("gradient_bytes"),
                  peak_tflops=sample.get("peak_tflops"),
                  batch=study_batch(sample.get("batch_per_device", 0), sample.get("devices", 1),
                                    sample.get("scaling", "weak")))
    _judge(study)
    trust.annotate(study, records)
    weak = study.scaling != "strong"
    study.bands = explain(rows, study.baseline, list(comm_records), study.device_type, study.precision, study.batch,
                          weak, study.model)
    topologies = {json_key({k: v for k, v in r["provenance"]["topology"].items() if k != "threads_per_rank"})
                  for r in records if r["provenance"].get("topology")}
    if len(topologies) > 1:
        study.topology = f"notice: these results come from {len(topologies)} different topologies (see provenance)"
    trust.conclude(study, records)
    return study


def json_key(value) -> str:
    return json.dumps(value, sort_keys=True)


def _judge(study: StudySummary) -> None:
    base = study.baseline
    for row in study.rows:
        if row.epoch_time_s is None:
            row.goal_verdict = row.status
            continue
        goal = study.goal
        accurate = row.val_acc[0] >= goal.min_val_acc or not study.accuracy_claimed
        if base is None:
            row.goal_verdict = "no baseline"
            continue
        # From samples/s, so epochs that trained different numbers of samples compare fairly; equal epochs give
        # the epoch-time ratio.
        row.speedup = row.samples_per_s[0] / base.samples_per_s[0]
        row.efficiency = row.speedup / row.devices
        row.time_cut = round(1 - 1 / row.speedup, 12)  # a cut of exactly the goal is met, whatever the rounding
        if row is not base:
            row.noise = combined_noise(row.noise, base.noise)
        if row is base:
            row.goal_verdict = "baseline" + ("" if accurate else f" (val < {pct(goal.min_val_acc)})")
        elif row.time_cut >= goal.min_time_cut and accurate:
            row.goal_verdict = "YES" if study.accuracy_claimed else "time cut met (no accuracy target claimed)"
        else:
            reasons = []
            if row.time_cut < goal.min_time_cut:
                reasons.append(f"epoch {-row.time_cut:+.0%} (goal -{pct(goal.min_time_cut)})")
            if not accurate:
                reasons.append(f"val {row.val_acc[0]:.1%} < {pct(goal.min_val_acc)}")
            row.goal_verdict = "no: " + ", ".join(reasons)


def markdown_table(study: StudySummary) -> str:
    peak = " | MFU" if study.peak_tflops else ""
    head = ("| devices | mode | status | epoch time s (median [min-max]) | samples/s | samples/s/device "
            f"| TFLOP/s/device{peak} | speedup | predicted point [no overlap-overlap] | residual | efficiency "
            "| val acc "
            f"| time to {pct(study.goal.min_val_acc)} | goal met | bottleneck | peak memory |")
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in study.rows:
        t = f"{r.epoch_time_s[0]:.2f} [{r.epoch_time_s[1]:.2f}-{r.epoch_time_s[2]:.2f}]" if r.epoch_time_s else "-"
        sps = f"{r.samples_per_s[0]:,.0f}" if r.samples_per_s else "-"
        per_dev = f"{r.samples_per_s_per_device:,.0f}" if r.samples_per_s_per_device else "-"
        speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        eff = f"{r.efficiency:.0%}" if r.efficiency is not None else "-"
        acc = f"{r.val_acc[0]:.2%}" if r.val_acc else "-"
        status = r.status if r.trials == 1 else f"{r.status} ({r.trials_ok}/{r.trials})"
        status = "; ".join([status, *(f.split(":")[0] if f.startswith("noisy") else f for f in r.flags)])
        reach = "-" if not r.trials_ok else (f"{r.time_to_target_s:.1f} s" if r.reached else "not reached")
        if r.reached and r.reached < r.trials_ok:
            reach += f" ({r.reached}/{r.trials_ok})"
        e = r.explanation
        predicted = f"{e.predicted[0]:.2f}-{e.predicted[1]:.2f}x" if e.predicted else (
            e.refused.split(" (")[0] if e.refused else "-")
        if e.point:
            predicted = f"{e.point:.2f}x [{predicted}]"
        elif r.devices == 1 and e.predicted and all(abs(x - 1) < 1e-9 for x in e.predicted):
            predicted = "1.00x (no communication)"
        if e.predicted and e.predicted[1] > r.devices * (1 + 1e-9):  # let through only by the baseline's noise
            predicted += " (above ideal, within the baseline's noise)"
        resid = "-" if e.residual is None else ("inside" if e.residual == 0 else f"{e.residual:+.0%}")
        if e.point_residual is not None:  # against the point; the band's verdict in words
            resid = f"{e.point_residual:+.0%} ({'inside' if not e.residual else 'outside'} band)"
        tflops = f"{r.tflops_per_device:.3g}" if r.tflops_per_device else "-"
        if study.peak_tflops:
            tflops += f" | {r.mfu:.1%}" if r.mfu is not None else " | -"
        memory = f"{gib(r.peak_memory_bytes):.2f} GiB" if r.peak_memory_bytes else "-"
        where = f"{r.devices} {study.device_type}" + (f", {r.nodes} nodes" if r.nodes > 1 else "")
        lines.append(f"| {where} | {r.label} | {status} | {t} | {sps} | {per_dev} | {tflops} "
                     f"| {speedup} | {predicted} | {resid} | {eff} | {acc} | {reach} | {r.goal_verdict} "
                     f"| {e.bottleneck or '-'} | {memory} |")
    return "\n".join(lines)


def goal_line(study: StudySummary) -> str:
    return (f"Goal: epoch time cut by at least {pct(study.goal.min_time_cut)} against 1-device single, with "
            f"validation accuracy at least {pct(study.goal.min_val_acc)}"
            + ("" if study.accuracy_claimed else f" (not claimed here: the {study.recipe} recipe is tuned for "
               "SimpleCNN; the accuracy reached is shown, not judged)") + ".")


def verdict_lines(study: StudySummary) -> list[str]:
    """One line per configuration: the goal verdict and the bottleneck with its evidence; failures with cause."""
    lines = []
    for r in study.rows:
        if r.note:
            lines.append(f"{r.label} x{r.devices}: {r.status}: {r.note}")
        elif r.explanation.bottleneck:
            lines.append(f"{r.label} x{r.devices}: {r.goal_verdict}; bottleneck: {r.explanation.bottleneck}")
    return lines


def overlap_lines(study: StudySummary) -> list[str]:
    """Which baseline the predictions use; per ddp row, the share of communication DDP measured as hidden beside
    the replay's, where both exist."""
    baselines = sorted({r.explanation.baseline for r in study.rows if r.explanation.baseline})
    return ([f"The point and its band are relative to {' / '.join(baselines)}."] if baselines else []) + [
        f"- {r.label} x{r.devices}: overlap measured by DDP {r.explanation.ddp_overlap:.0%}, replayed "
        f"{r.explanation.replay_overlap:.0%}" for r in study.rows
        if r.explanation.ddp_overlap is not None and r.explanation.replay_overlap is not None] + [
        f"- {r.label} x{r.devices}: prediction refused: {r.explanation.refused}" for r in study.rows
        if r.explanation.refused]


PREDICTED_NOTE = (
    "predicted: the scaling model's point prediction of the speedup, made before the configuration ran "
    "(α-β collectives, DDP's buckets replayed against the measured gradient-ready times, contention; "
    "docs/prediction.md), and its range from no overlap to full overlap of compute and communication; "
    "residual: the measurement against the point, and whether it lies inside the band; the bottleneck "
    "verdicts and their thresholds are explained in docs/scaling-model.md and docs/trust.md.")
"""What the table's predicted and residual columns mean; under the table in summary.md and report.html alike."""


def markdown_summary(study: StudySummary, images: list[str]) -> str:
    notes = [f"- {r.label} x{r.devices}: {r.status}: {r.note}" for r in study.rows if r.note]
    parts = [f"# Scaling study\n\n{study.title}.\n", *([study.topology + "\n"] if study.topology else []),
             *[f"**{line}**\n" for line in study.notices],
             goal_line(study) + "\n", markdown_table(study), "",
             PREDICTED_NOTE, *overlap_lines(study), ""]
    if notes:
        parts += ["Failed and skipped configurations:\n", *notes, ""]
    parts += [f"![{name}]({name})" for name in images]
    return "\n".join(parts) + "\n"
