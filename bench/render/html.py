"""report.html: one self-contained page (plots embedded as data URIs, no network access needed) with the title,
the table, the verdicts, the plots and the provenance; readable at a laptop's width."""

from __future__ import annotations

import base64
import html
import json
import re
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


def slug(heading: str) -> str:
    """A section's id: its heading in lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def section(heading: str, body: str) -> str:
    """One section of a page: <section id=slug> around its heading and body, so a later command (bench.predict)
    can replace it in place."""
    return f'<section id="{slug(heading)}"><h2>{html.escape(heading)}</h2>{body}</section>'


STUDY_META = "mgpu-bench-study"
"""The <meta> name under which a report page carries its study id."""


def write_html(path: Path, title: str, sections: list[tuple[str, str]], images: list[Path],
               provenance: dict | list | None, study: str | None = None) -> Path:
    """Write the page: `sections` are (heading, HTML) pairs, shown before the plots; provenance is shown as JSON;
    `study` (the study id) is carried in a <meta> tag so a section can be added for the same study later."""
    parts = [f"<h1>{html.escape(title)}</h1>"] + [section(heading, body) for heading, body in sections]
    if images:
        parts.append(section("Plots", "".join(image_tag(p) for p in images)))
    if provenance:
        parts.append(section("Provenance", "<pre>" + html.escape(json.dumps(provenance, indent=1, sort_keys=True))
                             + "</pre>"))
    meta = f'<meta name="{STUDY_META}" content="{html.escape(study)}">' if study else ""
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    with atomic_write(path) as f:
        f.write(page)
    return path


def put_section(path: Path, study: str, heading: str, body: str, before: str = "Plots") -> bool:
    """Put the section `heading` into the page at `path` written by write_html for `study`: replacing a section of
    that heading, else before the section `before` (else at the end). False, and nothing written, where the page
    is missing or belongs to another study."""
    try:
        page = path.read_text()
    except OSError:
        return False
    if f'<meta name="{STUDY_META}" content="{html.escape(study)}">' not in page:
        return False
    new = section(heading, body)
    old = re.search(rf'<section id="{slug(heading)}">.*?</section>', page, flags=re.S)
    if old:
        page = page[:old.start()] + new + page[old.end():]
    else:
        at = page.find(f'<section id="{slug(before)}">')
        at = at if at >= 0 else page.rindex("</body>")
        page = page[:at] + new + page[at:]
    with atomic_write(path) as f:
        f.write(page)
    return True


def paragraphs(lines: list[str]) -> str:
    return "".join(f'<p class="note">{html.escape(line)}</p>' for line in lines if line)
