"""bench.predict's table and plot, and its section of a study's report.html: what bench.predict wrote into the study
folder (predict.json, predict.png), shown on the page of the same study only."""

from __future__ import annotations

import json
from pathlib import Path

from bench.explain.interconnects import Measured, OnBaseline
from bench.records.files import PREDICT_FILE, PREDICT_PLOT_FILE
from bench.render.html import image_tag, markdown_table_to_html, paragraphs

PREDICTION_HEADING = "What more devices would buy (predicted)"


def prediction_body(table_md: str, notes: list[str], image: Path | None) -> str:
    """The section's HTML: the accuracy line, the table, the plot (embedded) and the inputs and limits."""
    return (paragraphs([table_md.splitlines()[0]]) + markdown_table_to_html(table_md)
            + (image_tag(image) if image and image.is_file() else "") + paragraphs(notes))


def prediction_sections(out: Path, study: str) -> list[tuple[str, str]]:
    """[(heading, HTML)] for the page of `study` when <out>/predict.json was written for that study, else []
    (no prediction, another study's, or an unreadable file: a stale prediction is never shown)."""
    try:
        saved = json.loads((out / PREDICT_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(saved, dict) or saved.get("study") != study or not isinstance(saved.get("table_md"), str):
        return []
    return [(PREDICTION_HEADING, prediction_body(saved["table_md"], list(saved.get("notes") or []),
                                                 out / PREDICT_PLOT_FILE))]


def measured_cell(devices: int, measured: dict[int, Measured]) -> str:
    m = measured.get(devices)
    return "-" if m is None else f"{m.speedup:.2f}x" + (f" ({m.suspect})" if m.suspect else "")


def table(series: dict[str, list[OnBaseline]], measured: dict[int, Measured], accuracy: str) -> str:
    """The Markdown table, one row per device count and interconnect; the study's measured ddp speedup beside the
    prediction where the study ran that count."""
    lines = [f"All numbers are predicted but the measured column; {accuracy}.", "",
             "| devices | interconnect | predicted speedup | predicted epoch s | efficiency "
             "| band [no overlap-overlap] | dominant cost | measured speedup (this study) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, rows in series.items():
        for p in rows:
            r = p.row
            mark = " (extrapolated)" if r.extrapolated else ""
            cells = ([f"{p.refused}", f"{p.epoch_s:.2f}", "-", "-"] if p.speedup is None else
                     [f"{p.speedup:.2f}x", f"{p.epoch_s:.2f}", f"{p.speedup / r.devices:.0%}",
                      f"{p.band[0]:.2f}-{p.band[1]:.2f}x"])
            lines.append(f"| {r.devices}{mark} | {name} | " + " | ".join(cells)
                         + f" | {r.dominant} | {measured_cell(r.devices, measured)} |")
    return "\n".join(lines)


def refused_labels(series: dict[str, list[OnBaseline]]) -> list[str]:
    """Legend lines for the interconnects whose predictions were refused at some counts (no point is drawn there),
    so a plot without a line still says why: 'nvlink4: refused at 2, 4 devices, above the ideal (see the table)'."""
    labels = []
    for name, rows in series.items():
        refused = [p.row.devices for p in rows if p.speedup is None]
        if refused:
            labels.append(f"{name}: refused at {', '.join(map(str, refused))} devices, above the ideal (see the "
                          "table)")
    return labels


def plot(series: dict[str, list[OnBaseline]], measured: dict[int, Measured], title: str, path: Path) -> Path:
    """predict.png: predicted speedup against devices, one line per interconnect, the ideal, and the study's
    measured ddp rows on top (against its own single x1 epoch; hollow where the row is super-linear: suspect);
    extrapolated predictions have hollow markers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    counts = sorted({p.row.devices for rows in series.values() for p in rows} | set(measured))
    for name, rows in series.items():
        shown = [(p.row.devices, p.speedup) for p in rows if p.speedup is not None]
        if shown:
            [line] = ax.plot(*zip(*shown, strict=True), marker="o", label=f"predicted: {name}")
            far = [(p.row.devices, p.speedup) for p in rows if p.speedup is not None and p.row.extrapolated]
            if far:  # extrapolated: hollow markers
                ax.plot(*zip(*far, strict=True), "o", color="white", markeredgecolor=line.get_color(), zorder=3)
    ax.plot(counts, counts, "k--", alpha=0.5, label="ideal")
    for label in refused_labels(series):
        ax.plot([], [], " ", label=label)  # a legend line without a mark: nothing is drawn for a refused count
    for suspect, style, label in ((False, "ks", "measured ddp (this study, vs its single x1 epoch)"),
                                  (True, "ks", "measured ddp, super-linear: suspect")):
        points = sorted((n, m.speedup) for n, m in measured.items() if bool(m.suspect) == suspect)
        if points:
            ax.plot(*zip(*points, strict=True), style, markersize=8, label=label,
                    markerfacecolor="none" if suspect else "k")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_yticks(counts, [f"{n}x" for n in counts])
    ax.minorticks_off()
    ax.set(xlabel="devices", ylabel="epoch-time speedup vs the single x1 epoch (x)", title="Predicted speedup")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
