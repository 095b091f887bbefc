"""The scaling study: every mode x device count x trial in its own process group, results with provenance,
a table with verdicts, and plots of throughput and speedup next to validation accuracy."""

from __future__ import annotations

import argparse
import dataclasses
import re
import signal
import statistics
import sys
import uuid
from pathlib import Path

import torch
from tqdm import tqdm

from mgpu_core.cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from mgpu_core.config import TrainConfig
from mgpu_core.datasets import load_dataset
from mgpu_core.distributed import usable_cores
from mgpu_core.image_arrays import DataError

from .launch import command, run_logged
from .lock import LockedError, exclusive
from .plan import Planned, default_counts, plan
from .provenance import collect
from .report import write_report
from .results import ResultsError, append_record, config_key, make_record, read_records
from .sweep_config import SweepConfig

EXAMPLES = """worked example (4 GPUs, CIFAR-10 already in ~/data/cifar10):
  python -m bench.scaling --gpus 1,2,4 --dataset cifar10 --data-dir ~/data/cifar10 --epochs 5 --trials 3
    runs single x1, dp x1/x2/x4 and ddp x1/x2/x4, three trials each, and writes reports/results.jsonl,
    reports/summary.md and reports/{throughput,speedup,accuracy,scaling}.png.
  python -m bench.scaling --gpus 1,2,4 --resume          # finish a sweep that was interrupted
  python -m bench.report reports/results.jsonl --out reports   # redraw without re-running
On a machine without GPUs the same configurations run as CPU processes over gloo (dp is skipped).
exit codes: 0 done (failed configurations are recorded, not fatal), 2 bad arguments, data, results file or
  --out (one line on stderr), 130 Ctrl-C, 143 SIGTERM (finished configurations kept; --resume goes on)"""

CPU_QUICK = {"epochs": 1, "train_samples": 10_000}
GPU_EPOCHS = 20
"""Default on GPUs: the budget the reference recipe is tuned for (>= 80% at global batch 128-512)."""
EPOCH_LINE = re.compile(r"^epoch \d+/\d+ ")


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="python -m bench.scaling", description=__doc__, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser.add_argument_group("sweep"), SweepConfig)
    add_config_arguments(parser.add_argument_group("training (each configuration)"), TrainConfig,
                         skip=("mode", "devices"), defaults={"epochs": None})
    return parser


def parse(argv: list[str]) -> tuple[SweepConfig, TrainConfig, list[str]]:
    """(sweep, base training config, notices). Without --epochs: 20 on GPUs; on a CPU-only machine a quick run
    (1 epoch, on 10,000 samples unless --train-samples says otherwise), announced."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sweep = config_from_args(SweepConfig, args, parser)
    notices = []
    if args.epochs is None:
        on_gpu = torch.cuda.is_available() and args.device != "cpu"
        args.epochs = GPU_EPOCHS if on_gpu else CPU_QUICK["epochs"]
        if not on_gpu:
            if args.train_samples is None:
                args.train_samples = CPU_QUICK["train_samples"]
            notices.append(f"notice: no GPU and no --epochs: quick CPU settings, {args.epochs} epoch on "
                           f"{args.train_samples:,} training samples; give --epochs E (and --train-samples N) "
                           "for the full study")
    return sweep, config_from_args(TrainConfig, args, parser), notices


def resolve_dataset(train: TrainConfig) -> TrainConfig:
    """Find (or download) the data once, before any configuration starts; children then read it locally."""
    data = load_dataset(train)
    if data.name == "synthetic":
        return dataclasses.replace(train, dataset="synthetic")
    return dataclasses.replace(train, dataset="cifar10", download=False)


def child_config(base: TrainConfig, entry: Planned, sweep: SweepConfig) -> TrainConfig:
    """The configuration one child trains: its mode and devices, its share of the batch, the trial's seed."""
    batch = base.batch_size // entry.devices if sweep.global_batch else base.batch_size
    return dataclasses.replace(base, mode=entry.mode, devices=entry.devices if entry.mode == "dp" else 1,
                               batch_size=max(1, batch), seed=base.seed + entry.trial)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the running configuration's tree is ended and the sweep stops cleanly."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sweep, base, notices = parse(argv)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device_type = "cuda" if visible and base.device != "cpu" else "cpu"
    visible = visible if device_type == "cuda" else 0
    if device_type == "cpu":
        notices.insert(0, "notice: no GPU in use: configurations run as CPU processes over gloo, labelled cpu; "
                          "dp is skipped")
    out = Path(sweep.out)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with exclusive(out):
            base = resolve_dataset(base)
            for line in notices:
                print(line)
            run_sweep(sweep, base, argv, device_type, visible, out)
    except (DataError, ResultsError, LockedError) as exc:
        print(f"python -m bench.scaling: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"python -m bench.scaling: error: {exc.filename or out}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{'terminated' if isinstance(exc, Terminated) else 'interrupted'}: every finished configuration is "
              f"in {out / 'results.jsonl'}; rerun with --resume to complete the rest", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    return 0


def run_sweep(sweep: SweepConfig, base: TrainConfig, argv: list[str], device_type: str, visible: int,
              out: Path) -> None:
    """Run (or skip, or find done) every planned configuration, recording each, then report."""
    results = out / "results.jsonl"
    scaling = "strong" if sweep.global_batch else "weak"
    counts = sweep.gpus or default_counts(visible, usable_cores())
    entries = plan(counts, sweep.modes, sweep.trials, visible, usable_cores(), base.batch_size, sweep.global_batch)
    recorded = {r["key"]: r["status"] for r in read_records(results)} if sweep.resume else {}
    done = {k for k, status in recorded.items() if status == "ok"}
    command_line = ["python", "-m", "bench.scaling", *argv]

    def key(entry: Planned) -> str:
        return config_key(child_config(base, entry, sweep), entry.devices, entry.trial, scaling, device_type)

    todo = [e for e in entries if e.skip is None and key(e) not in done]
    print(f"{len(entries)} configurations: {len(todo)} to run, {len(entries) - len(todo)} skipped or done; "
          f"results in {results}")
    with tqdm(total=len(todo) * base.epochs, unit="epoch", dynamic_ncols=True) as bar:
        for entry in entries:
            cfg = child_config(base, entry, sweep)
            name = f"{entry.label} {device_type} trial {entry.trial}"
            if entry.skip:
                if recorded.get(key(entry)) == "skipped":
                    continue
                append_record(results, make_record(cfg=cfg, devices=entry.devices, trial=entry.trial, scaling=scaling,
                                                   device_type=device_type, status="skipped", error=entry.skip,
                                                   provenance=collect(cfg.precision, cfg.seed, command_line),
                                                   target_val_acc=sweep.min_val_acc / 100))
                tqdm.write(f"{name}: skipped ({entry.skip})")
                continue
            if key(entry) in done:
                tqdm.write(f"{name}: done already (--resume)")
                continue
            bar.set_description(name)
            run_id = uuid.uuid4().hex
            seen = bar.n
            outcome = run_logged(command(cfg, entry, results, run_id, sweep, command_line), sweep.timeout,
                                 out / "logs" / f"{entry.mode}-x{entry.devices}-trial{entry.trial}.log",
                                 lambda line: bar.update(1) if EPOCH_LINE.match(line) else None)
            bar.update(seen + base.epochs - bar.n)  # a failed configuration's unfinished epochs
            record = next((r for r in read_records(results, warn=tqdm.write) if r.get("run_id") == run_id), None)
            if outcome.error is None and record is None:
                outcome.error = "exited 0 but wrote no result record"
            if outcome.error is not None:
                append_record(results, make_record(
                    cfg=cfg, devices=entry.devices, trial=entry.trial, scaling=scaling, device_type=device_type,
                    status="timeout" if outcome.timed_out else "failed", error=outcome.error, wall_s=outcome.wall_s,
                    run_id=run_id, provenance=collect(cfg.precision, cfg.seed, command_line),
                    target_val_acc=sweep.min_val_acc / 100))
                tqdm.write(f"{name}: {'timeout' if outcome.timed_out else 'FAILED'}: {outcome.error}")
            else:
                tqdm.write(f"{name}: ok  epoch {statistics.median(record['epoch_times_s']):.2f} s  "
                           f"{statistics.median(record['samples_per_s']):,.0f} samples/s  "
                           f"val acc {record['val_acc']:.2%}  ({outcome.wall_s:.0f} s with start-up)")
    write_report(read_records(results), out, sweep.min_time_cut, sweep.min_val_acc)


if __name__ == "__main__":
    sys.exit(main())
