"""The study's pictures (matplotlib, Agg): throughput, speedup and efficiency, accuracy, and all three side by side."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from bench.explain.goal import pct  # noqa: E402
from bench.records.units import gb_per_s, mib, percent, plural  # noqa: E402
from bench.render.summary import Row, StudySummary  # noqa: E402
from mgpu_core.names import MODES  # noqa: E402

DPI = 100
FIGSIZES = {"throughput.png": (7, 5), "speedup.png": (12, 5), "accuracy.png": (8, 5), "scaling.png": (19, 5.5)}
COLORS = dict(zip(MODES, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"), strict=False))


def legend(ax, **kwargs) -> None:
    """The panel's legend, where it has labelled artists (matplotlib warns on an empty one: a study that measured
    nothing)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _unit(study: StudySummary) -> str:
    return "GPUs" if study.device_type == "cuda" else "CPU processes"


def _by_series(study: StudySummary) -> dict[str, list[Row]]:
    """Rows per series (mode and variant, e.g. 'ddp sync-bn'), in mode order."""
    series: dict[str, list[Row]] = {}
    for row in sorted(study.rows, key=lambda r: (MODES.index(r.mode), r.variant)):
        series.setdefault(row.label, []).append(row)
    return series


def _style(rows: list[Row]) -> dict:
    """A mode's colour; variants of it dashed with hollow markers."""
    variant = bool(rows[0].variant)
    return {"color": COLORS[rows[0].mode], "linestyle": "--" if variant else "-",
            "markerfacecolor": "white" if variant else None}


def _counts(study: StudySummary) -> list[int]:
    return sorted({r.devices for r in study.rows})


def _mark_missing(ax, study: StudySummary) -> None:
    """Failed, skipped and timed-out configurations stay visible: a cross on the x axis with the reason's word;
    several at one device count stand side by side, not on top of each other. Partial rows say how many trials
    succeeded."""
    at: dict[int, int] = {}
    for r in study.rows:
        if r.epoch_time_s is None:
            slot = at[r.devices] = at.get(r.devices, -1) + 1
            ax.plot(r.devices, 0, marker="x", color=COLORS[r.mode], markersize=10, clip_on=False, zorder=5)
            ax.annotate(f"{r.label} {r.status}", (r.devices, 0), textcoords="offset points",
                        xytext=(4 + 11 * slot, 6), fontsize=8, color=COLORS[r.mode], rotation=90)
        elif r.status == "partial" and r.samples_per_s:
            ax.annotate(f"{r.trials_ok}/{plural(r.trials, 'trial')}", (r.devices, 0), textcoords="offset points",
                        xytext=(4, 6), fontsize=7, color=COLORS[r.mode], rotation=90)


def _errorbar(ax, rows: list[Row], values, label: str, scale: float = 1.0) -> None:
    points = [(r.devices, values(r)) for r in rows if values(r) is not None]
    if not points:
        return
    x = [p[0] for p in points]
    mid = [p[1][0] * scale for p in points]
    low = [(p[1][0] - p[1][1]) * scale for p in points]
    high = [(p[1][2] - p[1][0]) * scale for p in points]
    ax.errorbar(x, mid, yerr=[low, high], marker="o", capsize=4, label=label, **_style(rows))


def _device_axis(ax, study: StudySummary, counts: list[int]) -> None:
    """Device counts on a log-2 axis, each tick labelled with its count."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.margins(x=0.1)  # room for the words of the configurations missing at the last count
    ax.set_xlabel(_unit(study))


def _band_counts(study: StudySummary) -> list[int]:
    return sorted(set(_counts(study)) | {p.devices for points in study.bands.values() for p in points})


def _ideal_counts(study: StudySummary) -> list[int]:
    """Where the ideal line is drawn: counts that were measured or modelled, not those only skipped or failed."""
    return sorted({r.devices for r in study.rows if r.epoch_time_s}
                  | {p.devices for points in study.bands.values() for p in points})


def _draw_bands(ax, study: StudySummary, scale: float) -> None:
    """The scaling model's band per mode: solid where the collectives were measured, hatched where extrapolated
    (busbw held at the largest measured count)."""
    for mode, points in study.bands.items():
        points = [p for p in points if not p.refused]  # above the ideal: no prediction (bench.explain.plausibility)
        measured = [p for p in points if p.measured]
        last = measured[-1:] if measured else []
        for part, hatch, words in ((measured, None, "model"), (last + [p for p in points if not p.measured], "//",
                                                               "model, extrapolated")):
            if len(part) < 2:
                continue
            x = [p.devices for p in part]
            ax.fill_between(x, [p.low * scale for p in part], [p.high * scale for p in part], color=COLORS[mode],
                            alpha=0.15, hatch=hatch, label=f"{mode} {words}")


def _mark_flags(ax, study: StudySummary, value) -> None:
    """Rows not to be trusted as measured stay visible but marked: a red ring and the flag's first word (noisy,
    oversubscribed, super-linear: suspect; bench.render.trust)."""
    for r in study.rows:
        y = value(r)
        if y is None or not r.flags:
            continue
        ax.plot(r.devices, y, marker="o", markersize=14, markerfacecolor="none", markeredgecolor="tab:red",
                linestyle="none", zorder=6)
        words = ", ".join(f.split(":")[0] if not f.startswith("super") else "suspect" for f in r.flags)
        ax.annotate(words, (r.devices, y), textcoords="offset points", xytext=(6, 6), fontsize=7, color="tab:red")


def _finish(ax, study: StudySummary, counts: list[int], ylabel: str, title: str) -> None:
    """What every panel over device counts ends with: the missing configurations, the axes, grid and legend."""
    _mark_missing(ax, study)
    ax.set(ylabel=ylabel, title=title)
    _device_axis(ax, study, counts)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)


def draw_throughput(ax, study: StudySummary) -> None:
    counts = _band_counts(study)
    base = study.baseline
    if base:
        _draw_bands(ax, study, base.samples_per_s[0])
        ideal = _ideal_counts(study)
        ax.plot(ideal, [base.samples_per_s[0] * n for n in ideal], "k--", alpha=0.5, label="ideal (linear)")
    labelled: dict[int, list] = {}
    for label, rows in _by_series(study).items():
        _errorbar(ax, rows, lambda r: r.samples_per_s, label)
        for r in rows:
            if r.tflops_per_device and r.samples_per_s:
                labelled.setdefault(r.devices, []).append(r)
    for rows in labelled.values():  # achieved compute per device beside each point; stacked where points are close
        for k, r in enumerate(sorted(rows, key=lambda r: -r.samples_per_s[0])):
            ax.annotate(f"{r.tflops_per_device:.3g} TFLOP/s/dev", (r.devices, r.samples_per_s[0]), fontsize=7,
                        textcoords="offset points", xytext=(5, 6 if k == 0 else 1 - 9 * (k + 1)),
                        color=COLORS[r.mode])
    _mark_flags(ax, study, lambda r: r.samples_per_s[0] if r.samples_per_s else None)
    _finish(ax, study, counts, "training throughput (samples/s)", "Throughput")


def draw_speedup(ax, study: StudySummary) -> None:
    counts = _band_counts(study)
    _draw_bands(ax, study, 1.0)
    for label, rows in _by_series(study).items():
        points = [(r.devices, r.speedup) for r in rows if r.speedup is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label, **_style(rows))
        predicted = [(r.devices, r.explanation.point) for r in rows if r.explanation.point]
        if predicted:  # the point prediction made before the row ran
            ax.plot(*zip(*predicted, strict=True), marker="D", linestyle="none", markerfacecolor="none",
                    markersize=9, color=COLORS[rows[0].mode], label=f"{label} predicted")
    ax.plot(_ideal_counts(study), _ideal_counts(study), "k--", alpha=0.5, label="ideal")
    ax.axhline(study.goal.min_speedup, color="tab:red", alpha=0.6, linestyle=":",
               label=f"goal: epoch -{pct(study.goal.min_time_cut)}")
    if study.baseline is None:
        ax.text(0.5, 0.5, "no successful 1-device single run:\nspeedups have no baseline", transform=ax.transAxes,
                ha="center", va="center", color="dimgrey")
    _mark_flags(ax, study, lambda r: r.speedup)
    _finish(ax, study, counts, "speedup in samples/s vs 1-device single (x)", "Speedup")


def draw_efficiency(ax, study: StudySummary) -> None:
    for label, rows in _by_series(study).items():
        points = [(r.devices, percent(r.efficiency)) for r in rows if r.efficiency is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label, **_style(rows))
    ax.axhline(100, color="k", linestyle="--", alpha=0.5, label="ideal")
    _mark_flags(ax, study, lambda r: r.efficiency * 100 if r.efficiency is not None else None)
    _finish(ax, study, _counts(study), "scaling efficiency (%)", "Efficiency = speedup / devices")


def _reach_label(r: Row, target: float) -> str:
    if r.val_acc is None:
        return ""
    return f"\n{pct(target)} @ {r.time_to_target_s:.0f} s" if r.reached else f"\n{pct(target)} not reached"


def draw_accuracy(ax, study: StudySummary) -> None:
    """Final validation accuracy per configuration, and under each bar the training time it took to reach the
    target: the number that says whether more devices helped."""
    labels = [f"{r.label} x{r.devices}{_reach_label(r, study.goal.min_val_acc)}" for r in study.rows]
    for i, r in enumerate(study.rows):
        if r.val_acc is None:
            ax.bar(i, 0, color="lightgrey")
            ax.text(i, 2, r.status, ha="center", va="bottom", rotation=90, color="dimgrey")
            continue
        mid, low, high = (percent(v) for v in r.val_acc)
        ax.bar(i, mid, yerr=[[mid - low], [high - mid]], capsize=4, color=COLORS[r.mode], alpha=0.85)
        ax.text(i, mid + 1, f"{mid:.1f}%", ha="center", va="bottom", fontsize=8)
    claim = "" if study.accuracy_claimed else " (not claimed: recipe tuned for SimpleCNN)"
    ax.axhline(percent(study.goal.min_val_acc), color="tab:red", linestyle=":",
               label=f"target {pct(study.goal.min_val_acc)}{claim}")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set(ylabel="final validation accuracy (%)", title="Validation accuracy", ylim=(0, 118))
    ax.set_yticks(range(0, 101, 20))
    ax.grid(alpha=0.3, axis="y")
    legend(ax, loc="upper right", fontsize=8)  # above 100%, where no bar reaches


def render(study: StudySummary, out: Path) -> list[Path]:
    """Write the four PNGs into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    layouts = {
        "throughput.png": [draw_throughput],
        "speedup.png": [draw_speedup, draw_efficiency],
        "accuracy.png": [draw_accuracy],
        "scaling.png": [draw_throughput, draw_speedup, draw_accuracy],
    }
    paths = []
    for name, panels in layouts.items():
        fig, axes = plt.subplots(1, len(panels), figsize=FIGSIZES[name], dpi=DPI, squeeze=False)
        for ax, draw in zip(axes[0], panels, strict=True):
            draw(ax, study)
        # about 12 characters of 10-point text per inch: at 14 the title ran past both edges of the 7-inch plot
        fig.suptitle(textwrap.fill(study.title, width=int(FIGSIZES[name][0] * 12)), fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name, dpi=DPI)
        plt.close(fig)
        paths.append(out / name)
    return paths


def render_comm(records: list[dict], out: Path) -> Path:
    """comm.png: all-reduce bus bandwidth against message size, one line per device count (the newest record of
    each), the model's gradient size marked; broadcast and reduce at the model's size as points."""
    newest = {}
    for rec in records:
        newest[(rec["devices"], rec["device_type"], rec.get("nodes", 1))] = rec
    fig, ax = plt.subplots(figsize=(8, 5), dpi=DPI)
    grad_bytes = None
    for (devices, device_type, nodes), rec in sorted(newest.items()):
        rows = sorted((r for r in rec["rows"] if r["op"] == "all_reduce"), key=lambda r: r["bytes"])
        label = f"{devices} {device_type}" + (f" on {nodes} nodes" if nodes > 1 else "") + f" ({rec['backend']})"
        line, = ax.plot([r["bytes"] for r in rows], [gb_per_s(r["busbw_bytes_per_s"]) for r in rows], marker=".",
                        label=f"all-reduce, {label}")
        for op, marker in (("broadcast", "^"), ("reduce", "v")):
            for r in (r for r in rec["rows"] if r["op"] == op):
                ax.plot(r["bytes"], gb_per_s(r["busbw_bytes_per_s"]), marker=marker, color=line.get_color(),
                        linestyle="none", label=f"{op}, {label}")
        grad_bytes = rec["grad_bytes"]
    if grad_bytes:
        ax.axvline(grad_bytes, color="k", linestyle=":", alpha=0.6,
                   label=f"model gradients ({mib(grad_bytes):.1f} MiB)")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="message size (bytes)", ylabel="bus bandwidth (GB/s)",
           title="Collective bandwidth (busbw = algbw x 2(n-1)/n for all-reduce)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)
    fig.tight_layout()
    path = out / "comm.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def render_compare(pairs, out: Path, title: str) -> Path:
    """compare.png: samples/s of base and new side by side per pair, median with min-max, the verdict above."""
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(pairs) + 2), 5), dpi=DPI)
    for i, p in enumerate(pairs):
        for offset, values, color, name in ((-0.2, p.base_values, "tab:grey", "base"),
                                            (0.2, p.new_values, "tab:blue", "new")):
            mid = statistics.median(values)
            ax.bar(i + offset, mid, width=0.38, color=color, label=name if i == 0 else None,
                   yerr=[[mid - min(values)], [max(values) - mid]], capsize=3)
        ax.text(i, max(p.base_values + p.new_values) * 1.04, f"{p.change_verdict}\n{p.change:+.1%}", ha="center",
                fontsize=8)
    ax.set_xticks(range(len(pairs)), [f"{p.base.label} x{p.base.devices}" for p in pairs], fontsize=8)
    ax.set(ylabel="training throughput (samples/s)", title=textwrap.fill(title, 80))
    ax.set_ylim(0, max([v for p in pairs for v in p.base_values + p.new_values], default=1) * 1.2)
    ax.grid(alpha=0.3, axis="y")
    legend(ax, loc="lower right")
    fig.tight_layout()
    path = out / "compare.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
