"""report.html: one self-contained page (plots embedded as data URIs, no network access needed) with the title,
the table, the verdicts, the plots and the provenance; readable at a laptop's width."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from mgpu_core.files import atomic_write

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1400px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 0.75rem 0; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; font-size: 0.8rem; }
.note { color: #555; }
"""


def markdown_table_to_html(table: str) -> str:
    """A pipe table (header, separator, rows) as an HTML table; cells are escaped."""
    lines = [line.strip() for line in table.strip().splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(table)}</pre>"

    def cells(line: str) -> list[str]:
        return [html.escape(c.strip()) for c in line.strip("|").split(" | ")]

    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(line)) + "</tr>" for line in lines[2:])
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def image_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(path: Path, title: str, sections: list[tuple[str, str]], images: list[Path],
               provenance: dict | list | None) -> Path:
    """Write the page: `sections` are (heading, HTML) pairs, shown before the plots; provenance is shown as JSON."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    if images:
        parts.append("<h2>Plots</h2>" + "".join(image_tag(p) for p in images))
    if provenance:
        parts.append("<h2>Provenance</h2><pre>" + html.escape(json.dumps(provenance, indent=1, sort_keys=True))
                     + "</pre>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    with atomic_write(path) as f:
        f.write(page)
    return path


def paragraphs(lines: list[str]) -> str:
    return "".join(f'<p class="note">{html.escape(line)}</p>' for line in lines if line)
