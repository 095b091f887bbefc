"""Re-render a study from results files (one machine, several nodes, several runs) without re-running it:

  python -m bench.report reports/results.jsonl node2/results.jsonl --out merged
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from bench.explain.goal import Goal
from bench.records.comm import read_comm
from bench.records.files import COMM_FILE, REPORT_FILE, RESULTS_FILE, SUMMARY_FILE
from bench.records.pooling import pool
from bench.records.results import ResultsError, read_records
from bench.records.study_provenance import study_provenance
from bench.render.html import markdown_table_to_html, paragraphs, write_html
from bench.render.plots import render, render_comm
from bench.render.prediction import prediction_sections
from bench.render.summary import (
    PREDICTED_NOTE,
    StudySummary,
    goal_line,
    markdown_summary,
    markdown_table,
    overlap_lines,
    select_study,
    summarize,
    verdict_lines,
)
from mgpu_core.cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from mgpu_core.files import make_out_dir


def write_report(records: list[dict], out: Path, goal: Goal, log: Callable[[str], None] = print,
                 study: str | None = None, comm_records: list[dict] = ()) -> StudySummary:
    """Print the table, write <out>/summary.md and the plots, for `study` (default: that of the newest record),
    explained by the collective measurements in `comm_records`."""
    left_out: list[str] = []  # the notice naming other studies in the files goes on the page too
    chosen = select_study(records, warn=lambda line: (log(line), left_out.append(line)), study=study)
    # this study's collectives (or ones that name no study: bench.comm run by hand), never another study's in the folder
    comm_records = [r for r in comm_records if r.get("study") in (None, chosen[0]["study"] if chosen else None)]
    summary = summarize(chosen, goal, comm_records)
    paths = render(summary, out)
    if comm_records:
        paths.append(render_comm(comm_records, out))
    (out / SUMMARY_FILE).write_text(markdown_summary(summary, [p.name for p in paths]))
    page = write_html(out / REPORT_FILE, summary.title,
                      [("Goal", paragraphs([*left_out, *summary.notices, goal_line(summary),
                                                 *([summary.topology] if summary.topology else [])])),
                       ("Results", markdown_table_to_html(markdown_table(summary))
                        + paragraphs([PREDICTED_NOTE, *overlap_lines(summary)])),
                       ("Verdicts", paragraphs(verdict_lines(summary))),
                       *(prediction_sections(out, chosen[0]["study"]) if chosen else [])],
                      paths, study_provenance(chosen) if chosen else None, study=chosen[0]["study"] if chosen else None)
    log(f"\n{summary.title}\n\n" + "".join(f"{line}\n" for line in summary.notices)
        + f"\n{markdown_table(summary)}\n")
    log("wrote " + ", ".join(str(p) for p in [out / SUMMARY_FILE, *paths, page]))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path,
                        help=f"results files, or study folders holding {RESULTS_FILE} (as bench.compare takes)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for summary.md and the PNGs")
    parser.add_argument("--study", help="the study id to render, where the files hold several (default: the study "
                        "of the newest record; the others are named when left out)")
    add_config_arguments(parser.add_argument_group("goal"), Goal)
    args = parser.parse_args(argv)
    goal = config_from_args(Goal, args, parser)
    args.results = [path / RESULTS_FILE if path.is_dir() else path for path in args.results]
    for path in args.results:
        if not path.is_file():
            parser.error(f"{path}: no such results file")
    try:
        records = pool([(path, read_records(path)) for path in args.results])
        comm_records = [r for path in args.results for r in read_comm(path.parent / COMM_FILE)]
    except ResultsError as exc:
        parser.error(str(exc))
    if not records:
        parser.error("no complete records in " + ", ".join(map(str, args.results)))
    if args.study is not None and args.study not in {r["study"] for r in records}:
        parser.error(f"--study {args.study}: not in these results (they hold "
                     + ", ".join(sorted({r["study"] for r in records})) + ")")
    out = args.out.expanduser()
    try:
        make_out_dir(out)
        write_report(records, out, goal, study=args.study, comm_records=comm_records)
    except OSError as exc:
        parser.error(f"{exc.filename or out}: {exc.strerror}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
