"""The study's pictures (matplotlib, Agg): throughput, speedup and efficiency, accuracy, and all three side by side."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from mgpu_core.config import MODES  # noqa: E402

from .goal import pct  # noqa: E402
from .summary import Row, Study  # noqa: E402

DPI = 100
FIGSIZES = {"throughput.png": (7, 5), "speedup.png": (12, 5), "accuracy.png": (8, 5), "scaling.png": (19, 5.5)}
COLORS = dict(zip(MODES, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"), strict=False))


def _unit(study: Study) -> str:
    return "GPUs" if study.device_type == "cuda" else "CPU processes"


def _by_mode(study: Study) -> dict[str, list[Row]]:
    return {m: [r for r in study.rows if r.mode == m] for m in MODES if any(r.mode == m for r in study.rows)}


def _counts(study: Study) -> list[int]:
    return sorted({r.devices for r in study.rows})


def _mark_missing(ax, study: Study) -> None:
    """Failed and skipped configurations stay visible: a cross on the x axis with the reason's one word."""
    for r in study.rows:
        if r.epoch_time_s is None:
            ax.plot(r.devices, 0, marker="x", color=COLORS[r.mode], markersize=10, clip_on=False, zorder=5)
            ax.annotate(f"{r.mode} {r.status}", (r.devices, 0), textcoords="offset points", xytext=(4, 6),
                        fontsize=8, color=COLORS[r.mode], rotation=90)


def _errorbar(ax, rows: list[Row], values, mode: str, label: str, scale: float = 1.0) -> None:
    points = [(r.devices, values(r)) for r in rows if values(r) is not None]
    if not points:
        return
    x = [p[0] for p in points]
    mid = [p[1][0] * scale for p in points]
    low = [(p[1][0] - p[1][1]) * scale for p in points]
    high = [(p[1][2] - p[1][0]) * scale for p in points]
    ax.errorbar(x, mid, yerr=[low, high], marker="o", capsize=4, color=COLORS[mode], label=label)


def draw_throughput(ax, study: Study) -> None:
    for mode, rows in _by_mode(study).items():
        _errorbar(ax, rows, lambda r: r.samples_per_s, mode, mode)
    base = study.baseline
    if base:
        counts = _counts(study)
        ax.plot(counts, [base.samples_per_s[0] * n for n in counts], "k--", alpha=0.5, label="ideal (linear)")
    _mark_missing(ax, study)
    ax.set(xlabel=_unit(study), ylabel="training throughput (samples/s)", title="Throughput", xticks=_counts(study))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()


def draw_speedup(ax, study: Study) -> None:
    counts = _counts(study)
    for mode, rows in _by_mode(study).items():
        points = [(r.devices, r.speedup) for r in rows if r.speedup is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=COLORS[mode], label=mode)
    ax.plot(counts, counts, "k--", alpha=0.5, label="ideal")
    ax.axhline(study.goal.min_speedup, color="tab:red", alpha=0.6, linestyle=":",
               label=f"goal: epoch -{pct(study.goal.min_time_cut)}")
    _mark_missing(ax, study)
    ax.set(xlabel=_unit(study), ylabel="epoch-time speedup vs 1-device single (x)", title="Speedup",
           xticks=counts)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()


def draw_efficiency(ax, study: Study) -> None:
    for mode, rows in _by_mode(study).items():
        points = [(r.devices, r.efficiency * 100) for r in rows if r.efficiency is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=COLORS[mode], label=mode)
    ax.axhline(100, color="k", linestyle="--", alpha=0.5, label="ideal")
    _mark_missing(ax, study)
    ax.set(xlabel=_unit(study), ylabel="scaling efficiency (%)", title="Efficiency = speedup / devices",
           xticks=_counts(study))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()


def _reach_label(r: Row, target: float) -> str:
    if r.val_acc is None:
        return ""
    return f"\n{pct(target)} @ {r.time_to_target_s:.0f} s" if r.reached else f"\n{pct(target)} not reached"


def draw_accuracy(ax, study: Study) -> None:
    """Final validation accuracy per configuration, and under each bar the training time it took to reach the
    target: the number that says whether more devices helped."""
    labels = [f"{r.mode} x{r.devices}{_reach_label(r, study.goal.min_val_acc)}" for r in study.rows]
    for i, r in enumerate(study.rows):
        if r.val_acc is None:
            ax.bar(i, 0, color="lightgrey")
            ax.text(i, 2, r.status, ha="center", va="bottom", rotation=90, color="dimgrey")
            continue
        mid, low, high = (v * 100 for v in r.val_acc)
        ax.bar(i, mid, yerr=[[mid - low], [high - mid]], capsize=4, color=COLORS[r.mode], alpha=0.85)
        ax.text(i, mid + 1, f"{mid:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.axhline(study.goal.min_val_acc * 100, color="tab:red", linestyle=":",
               label=f"target {pct(study.goal.min_val_acc)}")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set(ylabel="final validation accuracy (%)", title="Validation accuracy", ylim=(0, 100))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right")


def render(study: Study, out: Path) -> list[Path]:
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
        fig.suptitle(textwrap.fill(study.title, width=int(FIGSIZES[name][0] * 14)), fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name, dpi=DPI)
        plt.close(fig)
        paths.append(out / name)
    return paths
