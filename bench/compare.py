"""Compare two studies (a results file, or a folder holding results.jsonl, for each side) against their noise:

  python -m bench.compare reports-before reports-after --out reports/compare [--fail-on-regression 5]

Configurations pair by (model, mode and variant, devices, batch, precision); each pair gets samples/s, efficiency
and time to target for both sides, the change, and a verdict (faster, slower or no change) declared only beyond
the noise (bench.explain.noise). Unpaired configurations are listed. Studies whose settings make a comparison
meaningless (another dataset, batch, precision, ...) are refused in one line unless --force; what a comparison is
for (torch, driver, host, commit, other settings, threads included) is shown in the header.

Exit codes: 0 done (and, with --fail-on-regression, no regression); 1 a pair slower by more than the allowed percent
beyond the noise; 2 bad input (one line); 3 --fail-on-regression could not judge (one value on a side, a side with only
failed records, a configuration that ran in base and failed in new, or no pair at all): a gate that cannot judge
never passes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.explain.goal import Goal
from bench.explain.noise import CANNOT_JUDGE, judge
from bench.records.files import REPORT_FILE, RESULTS_FILE
from bench.records.results import ResultsError, read_records
from bench.records.study import study_settings as study_settings_of
from bench.records.units import fraction, percent, plural
from bench.render.html import markdown_table_to_html, paragraphs, write_html
from bench.render.plots import render_compare
from bench.render.summary import Row, StudySummary, select_study, summarize
from mgpu_core.cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from mgpu_core.files import make_out_dir

REFUSED = ("dataset", "batch", "precision", "scaling", "image_size", "train_samples", "epochs")
"""Study settings that make a comparison meaningless when they differ (unless --force)."""
SHOWN = ("torch", "torchvision", "cuda", "nccl", "driver", "host", "git_commit", "device_names", "cpu_model",
         "omp_num_threads", "torch_threads", "rank_threads", "flush_denormal",
         "keep_freed_memory")
"""Provenance that is usually the point of a comparison: shown in the header, never refused."""
EXIT_REGRESSION = 1
EXIT_CANNOT_JUDGE = 3
"""--fail-on-regression met a comparison it cannot judge: its own code, never 0."""


class CompareError(RuntimeError):
    """The two sides cannot be compared; one line."""


@dataclass
class Side:
    path: Path
    records: list[dict]
    study: StudySummary


@dataclass
class Pair:
    key: tuple
    base: Row
    new: Row
    base_values: list[float]
    new_values: list[float]
    change_verdict: str
    """faster, slower or no change: declared only beyond the noise (bench.explain.noise.judge)."""
    change: float
    why: str


def load_side(path: Path, goal: Goal, warn) -> Side:
    results = path / RESULTS_FILE if path.is_dir() else path
    if not results.is_file():
        raise CompareError(f"{path}: no results.jsonl there")
    records = select_study(read_records(results, warn=warn), warn=warn)
    if not records:
        raise CompareError(f"{results}: no complete records")
    return Side(results, records, summarize(records, goal))


def study_settings(side: Side) -> dict:
    """The settings the records of a side share (from its newest successful record); `batch` is the batch the study
    holds (bench.records.study.study_batch: per device under weak scaling, the global batch under strong), the same
    whichever configuration's record is the newest."""
    ok = [r for r in side.records if r["status"] == "ok"] or side.records
    sample = ok[-1]
    settings = study_settings_of(sample["train_config"], sample["devices"], sample["scaling"])
    settings |= {"dataset": (sample.get("dataset") or {}).get("name", settings.get("dataset")),
                 "batch": settings.pop("batch_size"), "scaling": sample["scaling"]}
    return settings


def provenance_of(side: Side) -> dict:
    prov = side.records[-1]["provenance"]
    return {k: prov.get(k) for k in SHOWN}


def differences(base: dict, new: dict) -> dict[str, tuple]:
    return {k: (base.get(k), new.get(k)) for k in sorted(set(base) | set(new)) if base.get(k) != new.get(k)}


def epoch_values(side: Side, row: Row) -> list[float]:
    """Every timed epoch's samples/s of every successful trial of `row` (the values the noise is judged on)."""
    return [v for r in side.records if r["status"] == "ok" and r["mode"] == row.mode
            and r.get("variant", "") == row.variant and r["devices"] == row.devices for v in r["samples_per_s"]]


def compare(base: Side, new: Side, force: bool, min_change: float, alpha: float
            ) -> tuple[list[Pair], list[Row], list[Row], dict[str, tuple]]:
    """(pairs, base-only rows, new-only rows, settings that differ)."""
    settings = differences(study_settings(base), study_settings(new))
    refused = {k: v for k, v in settings.items() if k in REFUSED}
    if refused and not force:
        what = "; ".join(f"{k}: {a} vs {b}" for k, (a, b) in refused.items())
        raise CompareError(f"the studies differ in {what}; comparing them is meaningless (--force to compare anyway)")
    shared = () if force else ("model", "batch", "precision")

    def key(side: Side, row: Row) -> tuple:
        fixed = study_settings(side)
        return (side.study.model, row.label, row.devices, *(fixed.get(k) for k in shared if k != "model"))

    base_rows = {key(base, r): r for r in base.study.rows if r.samples_per_s}
    new_rows = {key(new, r): r for r in new.study.rows if r.samples_per_s}
    pairs = []
    for k in [k for k in base_rows if k in new_rows]:
        b_vals, n_vals = epoch_values(base, base_rows[k]), epoch_values(new, new_rows[k])
        verdict, change, why = judge(b_vals, n_vals, min_change, alpha)
        pairs.append(Pair(k, base_rows[k], new_rows[k], b_vals, n_vals, verdict, change, why))
    only_base = [r for k, r in base_rows.items() if k not in new_rows]
    only_new = [r for k, r in new_rows.items() if k not in base_rows]
    return pairs, only_base, only_new, settings


def _time(row: Row) -> str:
    if not row.trials_ok:
        return "-"
    return f"{row.time_to_target_s:.1f} s" if row.reached else "not reached"


def table(pairs: list[Pair], device_type: str) -> str:
    lines = ["| devices | mode | samples/s base | samples/s new | change | efficiency base | efficiency new "
             "| time to target base | time to target new | verdict | why |", "|" + "---|" * 11]
    for p in pairs:
        eff = [f"{r.efficiency:.0%}" if r.efficiency is not None else "-" for r in (p.base, p.new)]
        lines.append(f"| {p.base.devices} {device_type} | {p.base.label} | {p.base.samples_per_s[0]:,.0f} "
                     f"| {p.new.samples_per_s[0]:,.0f} | {p.change:+.1%} | {eff[0]} | {eff[1]} "
                     f"| {_time(p.base)} | {_time(p.new)} | {p.change_verdict} | {p.why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="results file, or a folder holding results.jsonl")
    parser.add_argument("new", type=Path, help="results file, or a folder holding results.jsonl")
    parser.add_argument("--out", type=Path, default=Path("reports/compare"), help="compare.md, compare.png, "
                        "report.html")
    parser.add_argument("--force", action="store_true", help="compare studies whose settings differ")
    parser.add_argument("--min-change", type=float, default=5.0, metavar="PERCENT",
                        help="smallest change worth a verdict, in percent (default: 5)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="1 - confidence of the interval of the change (default: 0.05)")
    parser.add_argument("--fail-on-regression", type=float, default=None, metavar="PERCENT",
                        help="exit 1 when any pair got slower by more than PERCENT beyond the noise; exit 3 when "
                        "the comparison cannot be judged (one value on a side, only failed records, no pair)")
    add_config_arguments(parser.add_argument_group("goal"), Goal)
    args = parser.parse_args(argv)
    goal = config_from_args(Goal, args, parser)
    for name in ("min_change", "alpha", "fail_on_regression"):
        value = getattr(args, name)
        if value is not None and not (0 < value < 1 if name == "alpha" else 0 <= value < 100):
            parser.error(f"{name}: out of range (got {value:g})")
    notices: list[str] = []
    try:
        base, new = (load_side(p.expanduser(), goal, notices.append) for p in (args.base, args.new))
        failed_only = next((f"{name} has only failed records ({side.path})" for name, side in
                            (("base", base), ("new", new)) if not any(r["status"] == "ok" for r in side.records)), None)
        if failed_only and args.fail_on_regression is not None:
            print(f"gate: cannot judge: {failed_only}", file=sys.stderr)
            return EXIT_CANNOT_JUDGE
        pairs, only_base, only_new, settings = compare(base, new, args.force, fraction(args.min_change), args.alpha)
        text = report(base, new, pairs, only_base, only_new, settings, args.out.expanduser())
    except (CompareError, ResultsError) as exc:
        parser.error(str(exc))
    except OSError as exc:
        parser.error(f"{exc.filename or args.out}: {exc.strerror}")
    for line in notices:
        print(line)
    print(text)
    if args.fail_on_regression is not None:
        blind = cannot_judge(base, new, pairs, only_base)
        if blind:
            print(f"gate: cannot judge: {blind}", file=sys.stderr)
            return EXIT_CANNOT_JUDGE
        worse = [p for p in pairs if p.change_verdict == "slower" and percent(-p.change) > args.fail_on_regression]
        if worse:
            print(f"regression: {plural(len(worse), 'pair')} slower by more than {args.fail_on_regression:g}% "
                  "beyond the noise", file=sys.stderr)
            return EXIT_REGRESSION
    return 0


def cannot_judge(base: Side, new: Side, pairs: list[Pair], only_base: list[Row]) -> str | None:
    """Why a regression gate cannot pass judgement on this comparison (sides with successful records), or None."""
    if not pairs:
        return "no configuration ran successfully on both sides"
    failed = [r for r in only_base if any(n.label == r.label and n.devices == r.devices for n in new.study.rows)]
    if failed:
        return f"{failed[0].label} x{failed[0].devices} ran in base and failed in new"
    blind = [p for p in pairs if p.change_verdict == CANNOT_JUDGE]
    if blind:
        first = blind[0]
        return (f"unknown noise in {len(blind)} of {plural(len(pairs), 'pair')} "
                f"({first.base.label} x{first.base.devices}: {first.why})")
    return None


def report(base: Side, new: Side, pairs: list[Pair], only_base: list[Row], only_new: list[Row],
           settings: dict[str, tuple], out: Path) -> str:
    """Print-ready text; writes compare.md, compare.png and report.html into `out`."""
    make_out_dir(out)
    prov = differences(provenance_of(base), provenance_of(new))
    header = [f"base: {base.path} ({base.study.title})", f"new: {new.path} ({new.study.title})"]
    header += [f"settings differ: {k}: {a} -> {b}" for k, (a, b) in settings.items()]
    header += [f"provenance differs: {k}: {a} -> {b}" for k, (a, b) in prov.items()]
    unpaired = [f"only in base: {r.label} x{r.devices}" for r in only_base]
    unpaired += [f"only in new: {r.label} x{r.devices}" for r in only_new]
    body = table(pairs, new.study.device_type)
    counts = {v: sum(p.change_verdict == v for p in pairs) for v in ("faster", "slower", "no change", CANNOT_JUDGE)}
    if not counts[CANNOT_JUDGE]:
        del counts[CANNOT_JUDGE]
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    text = "\n".join(header) + f"\n\n{body}\n\n{summary}" + ("\n" + "\n".join(unpaired) if unpaired else "")
    (out / "compare.md").write_text("# Comparison\n\n" + "\n\n".join(header) + f"\n\n{body}\n\n{summary}\n"
                                    + "".join(f"\n- {line}" for line in unpaired) + "\n")
    images = [render_compare(pairs, out, f"{base.path.parent.name or base.path} vs {new.path.parent.name}")]
    write_html(out / REPORT_FILE, "mgpu-bench comparison",
               [("Sides and what differs", paragraphs(header)), ("Pairs", markdown_table_to_html(body)),
                ("Verdicts", paragraphs([summary, *unpaired]))], images,
               {"base": base.records[-1]["provenance"], "new": new.records[-1]["provenance"]})
    return text + f"\nwrote {out / 'compare.md'}, {images[0]}, {out / REPORT_FILE}"


if __name__ == "__main__":
    sys.exit(main())
