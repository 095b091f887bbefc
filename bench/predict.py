"""What more devices would buy: the study's measured device, replayed at device counts and on interconnects not
measured (docs/prediction.md).

  python -m bench.predict reports --devices 2,4,8,16,64 --interconnect nvlink4,pcie5,100gbe --gpus-per-node 8
  python -m bench.predict reports --busbw 370GB/s --latency 10us
  python -m bench.predict reports --nccl-tests all_reduce_perf.txt
  python -m bench.predict reports                      # the study's own comm.jsonl

STUDY is a study folder (results.jsonl, comm.jsonl) or a results file with comm.jsonl beside it; it needs the
1-device single baseline and a collective record with the compute profile (bench.comm measures it). Writes
<out>/predict.md, predict.png, predict.html and predict.json, and puts the same section into the study's
report.html (and into every later one of that study that bench.report or the sweep writes there). Every number is
a prediction; with --validation (bench.validate's validate.jsonl) it carries the model's validated error, else
"accuracy unknown".
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from bench.explain.goal import Goal
from bench.explain.interconnects import (
    EXTRAPOLATION_FACTOR,
    PRESETS,
    Interconnect,
    Link,
    Measured,
    link_for,
    link_from_fit,
    link_from_nccl,
    on_baseline,
    parse_bandwidth,
    parse_duration,
    parse_nccl_tests,
    predict_count,
)
from bench.explain.plausibility import SUPERLINEAR_FLAG as SUSPECT
from bench.explain.prediction import fits_of, kappa_of, profile_of
from bench.records.comm import read_comm
from bench.records.files import (
    COMM_FILE,
    PREDICT_FILE,
    PREDICT_PAGE_FILE,
    PREDICT_PLOT_FILE,
    PREDICT_TABLE_FILE,
    REPORT_FILE,
    RESULTS_FILE,
)
from bench.records.results import ResultsError, read_jsonl, read_records
from bench.records.units import plural
from bench.render.html import put_section, write_html
from bench.render.prediction import PREDICTION_HEADING, plot, prediction_body, table
from bench.render.summary import select_study, summarize
from mgpu_core.cli_args import OneLineErrorParser
from mgpu_core.files import atomic_write, make_out_dir
from mgpu_core.names import MAX_DEVICES

PREDICT_FILES = (PREDICT_TABLE_FILE, PREDICT_PLOT_FILE, PREDICT_PAGE_FILE, PREDICT_FILE)


class PredictError(ValueError):
    """What the study or the inputs lack; one line."""


def study_inputs(path: Path) -> dict:
    """From a study folder or results file: the single baseline's median epoch, the 1-device compute profile, the
    bucket size, the scaling, the largest measured count, the measured ddp speedups and the newest collective
    record. PredictError naming what is missing."""
    results = path / RESULTS_FILE if path.is_dir() else path
    if not results.is_file():
        raise PredictError(f"{results}: no results file (give a study folder or its results.jsonl)")
    records = select_study(read_records(results), warn=lambda _: None)
    comm = [r for r in read_comm(results.parent / COMM_FILE, lambda _: None)
            if r.get("study") in (None, records[0]["study"] if records else None)]
    single = [r for r in records if r["mode"] == "single" and r["devices"] == 1 and r["status"] == "ok"]
    if not single:
        raise PredictError(f"{results}: no successful 1-device single record (the baseline); run the sweep with "
                           "--modes single,...")
    profiled = [r for r in comm if r.get("compute_profile") and r.get("compute_step_1_s")]
    if not profiled:
        raise PredictError(f"{results.parent / COMM_FILE}: no collective record with the compute profile (per-bucket "
                           "gradient-ready times); run bench.comm or the sweep without --no-comm")
    newest = max(profiled, key=lambda r: r["provenance"].get("timestamp") or "")
    per_count = {}
    for rec in sorted(profiled, key=lambda r: r["provenance"].get("timestamp") or ""):
        per_count[rec["devices"]] = rec["compute_step_s"]  # the newest compute-only step at each measured count
    ddp = [r for r in records if r["mode"] == "ddp" and r["status"] == "ok"]
    study = summarize(records, Goal(), comm)
    batch_1 = newest.get("batch_per_device") or single[-1]["global_batch"]  # the 1-rank step's batch
    base_noise = study.baseline.noise if study.baseline else None
    measured = {r.devices: Measured(r.speedup, next((f for f in r.flags if f.startswith(SUSPECT)), None))
                for r in study.rows if r.mode == "ddp" and not r.variant and r.speedup}
    return {"base_epoch_s": statistics.median(t for r in single for t in r["epoch_times_s"]),
            "base_steps": statistics.median(s for r in single for s in r["steps_per_epoch"]),
            "profile_1": profile_of(newest).scaled(newest["compute_step_1_s"] * single[-1]["global_batch"] / batch_1),
            "bucket_bytes": (ddp[-1]["train_config"]["ddp_bucket_mb"] if ddp else 25.0) * 2**20,
            "scaling": single[-1]["scaling"],
            # measured: a skipped or failed count measured nothing to extrapolate from
            "largest": max(r["devices"] for r in records if r["status"] == "ok"),
            "measured": measured, "comm": newest, "title": study.title, "compute_at": per_count,
            "study": records[0]["study"], "base_noise": base_noise, "comm_threads": newest.get("threads"),
            "base_threads": single[-1]["provenance"].get("torch_threads")}


def compute_at(inputs: dict, devices: int) -> float | None:
    """The compute-only step per device at `devices`: measured there, else that of the largest measured count
    below (held; under strong scaling in proportion to the batch share), else None (one device's)."""
    below = [n for n in inputs["compute_at"] if n <= devices]
    if not below or devices == 1:
        return None
    n = max(below)
    return inputs["compute_at"][n] * (n / devices if inputs["scaling"] == "strong" else 1.0)


def validated_error(path: Path | None) -> str:
    """'validated MAPE x% (largest y%) over n cells of bench.validate' from validate.jsonl, or 'accuracy unknown'."""
    if path is None:
        return "accuracy unknown (no --validation)"
    if not path.exists():
        raise PredictError(f"{path}: no such file (bench.validate's validate.jsonl)")
    cells = [c for c in read_jsonl(path, lambda _: None) if isinstance(c, dict) and c.get("status") == "ok"]
    # A cell without a finite relative error (another file's records, a hand edit) is no validation.
    errors = [abs(e) for c in cells if isinstance(e := c.get("error"), int | float) and not isinstance(e, bool)
              and math.isfinite(e)]
    if not errors:
        raise PredictError(f"{path}: no validated cells (bench.validate's validate.jsonl)")
    if len(errors) < len(cells):
        raise PredictError(f"{path}: {len(cells) - len(errors)} of {len(cells)} cells have no numeric 'error' "
                           "(not bench.validate's validate.jsonl?)")
    return (f"validated MAPE {statistics.mean(errors):.1%} (largest {max(errors):.1%}) over "
            f"{plural(len(cells), 'cell')} of bench.validate ({path})")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.predict", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("study", type=Path, help="study folder or results.jsonl")
    parser.add_argument("--devices", default="2,4,8,16,64", help="device counts to predict (default 2,4,8,16,64)")
    parser.add_argument("--interconnect", default=None,
                        help=f"presets, comma-separated: {', '.join(PRESETS)} (docs/prediction.md names sources)")
    parser.add_argument("--busbw", help="a link's all-reduce bus bandwidth, e.g. 370GB/s (with --latency)")
    parser.add_argument("--latency", help="a collective's latency, e.g. 10us (with --busbw)")
    parser.add_argument("--nccl-tests", type=Path, help="nccl-tests all_reduce_perf output to take the link from")
    parser.add_argument("--gpus-per-node", type=int, help="beyond this many devices use the inter-node figures")
    parser.add_argument("--validation", type=Path, help="bench.validate's validate.jsonl: the model's error")
    parser.add_argument("--out", type=Path, help="folder for predict.md/.png/.html (default: the study folder)")
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(n) for n in args.devices.split(",")})
        if not counts or counts[0] < 1 or counts[-1] > MAX_DEVICES:
            raise ValueError
    except ValueError:
        parser.error(f"--devices: a comma list of counts from 1 to {MAX_DEVICES} (got {args.devices!r})")
    if (args.busbw is None) != (args.latency is None):
        parser.error("--busbw and --latency go together")
    if args.gpus_per_node is not None and args.gpus_per_node < 1:
        parser.error(f"--gpus-per-node: must be >= 1 (got {args.gpus_per_node})")
    try:
        inputs = study_inputs(args.study)
        links: dict[str, Interconnect] = {}
        for name in (args.interconnect.split(",") if args.interconnect is not None else []):
            if name not in PRESETS:
                raise PredictError(f"--interconnect: unknown preset {name!r} (choose from {', '.join(PRESETS)})")
            links[name] = PRESETS[name]
        if args.busbw:
            given = Link(parse_bandwidth(args.busbw), parse_duration(args.latency), "given on the command line")
            links[f"busbw {args.busbw}, latency {args.latency}"] = Interconnect("given", given, given)
        if args.nccl_tests:
            try:
                text = args.nccl_tests.read_text()
            except OSError as exc:
                raise PredictError(f"{args.nccl_tests}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise PredictError(f"{args.nccl_tests}: not text (all_reduce_perf's printed output)") from None
            try:
                link = link_from_nccl(parse_nccl_tests(text), str(args.nccl_tests))
            except ValueError as exc:  # the fit's message may start with the path already
                raise PredictError(f"{args.nccl_tests}: {str(exc).removeprefix(f'{args.nccl_tests}: ')}") from None
            links[f"nccl-tests {args.nccl_tests.name}"] = Interconnect("nccl-tests", link, link)
        kappa = 1.0
        if not links:  # the study's own collective sweep, at its largest measured count
            own = link_from_fit(fits_of(inputs["comm"])["all_reduce"], "this study's comm.jsonl")
            links[f"this study's {inputs['comm']['backend']} x{inputs['comm']['devices']}"] = Interconnect(
                "measured", own, own)
            kappa = kappa_of(inputs["comm"])
        accuracy = validated_error(args.validation)
    except (PredictError, ResultsError, ValueError) as exc:
        parser.error(str(exc))
    series = {name: [predict_count(inputs["profile_1"], n, link_for(n, ic, args.gpus_per_node),
                                   inputs["bucket_bytes"], inputs["scaling"], inputs["largest"], kappa,
                                   compute_at(inputs, n)) for n in counts] for name, ic in links.items()}
    t1_s = inputs["profile_1"].step_s
    base_step_s = inputs["base_epoch_s"] / inputs["base_steps"]
    threads = (f"; its ranks ran {inputs['comm_threads']} CPU thread(s) each, the single run "
               f"{inputs['base_threads']}" if inputs["comm_threads"] and inputs["base_threads"]
               and inputs["comm_threads"] != inputs["base_threads"] else "")
    anchored = {name: [on_baseline(r, t1_s, inputs["base_epoch_s"], inputs["base_steps"], inputs["base_noise"])
                       for r in rows] for name, rows in series.items()}
    text = table(anchored, inputs["measured"], accuracy)
    steps = ", ".join(f"{n}: {t * 1e3:.1f} ms" for n, t in sorted(inputs["compute_at"].items()))
    notes = [f"Compute per device is the measured device's ({inputs['title']}), at the compute-only step measured "
             f"with the most ranks up to each count ({steps}); {inputs['scaling']} scaling as in the study; counts "
             f"beyond {EXTRAPOLATION_FACTOR}x the largest measured ({inputs['largest']}) are marked extrapolated.",
             f"Baseline: every speedup, predicted or measured, is against the study's single x1 epoch "
             f"({inputs['base_epoch_s']:.2f} s, {base_step_s * 1e3:.1f} ms per step); a predicted epoch is the "
             "baseline's steps (per the batch) x the predicted N-device step. The model's own 1-rank compute-only "
             f"step (same run as its N-rank step) was {t1_s * 1e3:.1f} ms ({t1_s / base_step_s:.2f}x the single "
             f"step{threads}). A band above the ideal is refused."]
    if inputs["comm"].get("device_type") == "cpu" and any(ic in PRESETS.values() for ic in links.values()):
        notes.append("This study ran CPU processes on one host: their compute-only step at N ranks includes the "
                     "ranks' sharing of its cores, which no interconnect changes, so a preset here predicts these "
                     "CPU processes over that link, not GPUs (a GPU's own 1-device study predicts GPUs).")
    for name, ic in links.items():
        inter = f"; beyond {args.gpus_per_node} per node: {ic.inter.source}" if args.gpus_per_node else ""
        if args.gpus_per_node and ic not in PRESETS.values():  # one link given: no inter-node figures
            inter = (f"; beyond {args.gpus_per_node} per node the same link is ASSUMED across nodes (an nccl-tests "
                     "table, --busbw or the study's own sweep give no inter-node figures; name a preset for those)")
        notes.append(f"{name}: {ic.intra.source}{inter}")
    out = (args.out or (args.study if args.study.is_dir() else args.study.parent)).expanduser()
    try:
        make_out_dir(out)
        (out / PREDICT_TABLE_FILE).write_text("# Predicted scaling\n\n" + text + "\n\n"
                                              + "\n".join(f"- {n}" for n in notes)
                                              + f"\n\n![{PREDICT_PLOT_FILE}]({PREDICT_PLOT_FILE})\n")
        image = plot(anchored, inputs["measured"], inputs["title"], out / PREDICT_PLOT_FILE)
        rows = [{"devices": p.row.devices, "interconnect": name, "predicted_speedup": p.speedup,
                 "predicted_epoch_s": p.epoch_s, "band_speedup": list(p.band) if p.band else None,
                 "refused": p.refused, "dominant": p.row.dominant, "extrapolated": p.row.extrapolated,
                 "measured_speedup": m.speedup if (m := inputs["measured"].get(p.row.devices)) else None}
                for name, ps in anchored.items() for p in ps]
        with atomic_write(out / PREDICT_FILE) as f:
            json.dump({"study": inputs["study"], "accuracy": accuracy, "table_md": text, "notes": notes,
                       "rows": rows}, f, indent=1)
        body = prediction_body(text, notes, image)
        write_html(out / PREDICT_PAGE_FILE, "Predicted scaling", [(PREDICTION_HEADING, body)], [], None)
        in_report = put_section(out / REPORT_FILE, inputs["study"], PREDICTION_HEADING, body)
    except OSError as exc:
        parser.error(f"{exc.filename or out}: {exc.strerror}")
    written = [out / f for f in PREDICT_FILES] + ([out / REPORT_FILE] if in_report else [])
    print(text + "\n\n" + "\n".join(notes) + f"\n\nwrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
