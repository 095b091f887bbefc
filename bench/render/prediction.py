"""The prediction's section of a study's report.html: what bench.predict wrote into the study folder (predict.json,
predict.png), shown on the page of the same study only."""

from __future__ import annotations

import json
from pathlib import Path

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
