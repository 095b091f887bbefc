"""Re-render a study from results files (one machine, several nodes, several runs) without re-running it:

  python -m bench.report reports/results.jsonl node2/results.jsonl --out merged
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from mgpu_core.cli_args import OneLineErrorParser

from .plots import render
from .results import ResultsError, read_records
from .summary import Study, markdown_summary, markdown_table, select_study, summarize


def write_report(records: list[dict], out: Path, min_time_cut: float, min_val_acc: float,
                 log: Callable[[str], None] = print) -> Study:
    """Print the table, write <out>/summary.md and the plots, for the study of the newest record."""
    study = summarize(select_study(records, warn=log), min_time_cut, min_val_acc)
    paths = render(study, out)
    (out / "summary.md").write_text(markdown_summary(study, [p.name for p in paths]))
    log(f"\n{study.title}\n\n{markdown_table(study)}\n")
    log("wrote " + ", ".join(str(p) for p in [out / "summary.md", *paths]))
    return study


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.jsonl files")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for summary.md and the PNGs")
    parser.add_argument("--min-time-cut", type=float, default=40.0, help="goal: percent cut of the epoch time")
    parser.add_argument("--min-val-acc", type=float, default=78.0, help="goal: validation accuracy in percent")
    args = parser.parse_args(argv)
    for path in args.results:
        if not path.is_file():
            parser.error(f"{path}: no such results file")
    try:
        records = [r for path in args.results for r in read_records(path)]
    except ResultsError as exc:
        parser.error(str(exc))
    if not records:
        parser.error("no complete records in " + ", ".join(map(str, args.results)))
    write_report(records, args.out, args.min_time_cut, args.min_val_acc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
