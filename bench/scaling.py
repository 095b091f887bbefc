"""The scaling study: every mode x device count x trial in its own process group, results with provenance,
a table with verdicts, and plots of throughput and speedup next to validation accuracy."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import psutil

# Torch-free imports only at the top: a mistyped flag gets its one-line error in well under a second.
from bench.explain.goal import Goal
from bench.records.comm import read_comm
from bench.records.files import COMM_FILE, HANDOFF_DIR, LOGS_DIR, RESULTS_FILE, SUMMARY_FILE
from bench.records.results import ResultsError, read_records
from bench.records.study import study_identity
from bench.records.units import plural
from bench.run.axes import Axes
from bench.run.flag_checks import template, thread_notice, unused_flag
from bench.run.lock import LockedError, exclusive
from bench.run.nodes import Nodes
from bench.run.plan import PlanInput, default_counts, plan
from bench.run.resume import ResumeError, check_resume
from bench.run.sweep_config import SweepConfig
from mgpu_core.cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.files import make_out_dir
from mgpu_core.image_arrays import DataError
from mgpu_core.names import check_import

EXAMPLES = """worked example (4 GPUs, CIFAR-10 already in ~/data/cifar10):
  python -m bench.scaling --gpus 1,2,4 --dataset cifar10 --data-dir ~/data/cifar10 --epochs 5 --trials 3
    runs single x1, dp x1/x2/x4 and ddp x1/x2/x4, three trials each, and writes reports/results.jsonl,
    reports/summary.md and reports/{throughput,speedup,accuracy,scaling}.png.
  python -m bench.scaling --gpus 1,2,4 --resume          # finish a sweep that was interrupted
  python -m bench.report reports/results.jsonl --out reports   # redraw without re-running
On a machine without GPUs the same configurations run as CPU processes over gloo (dp is skipped).
exit codes: 0 done (failed configurations are recorded, not fatal), 1 every configuration failed, 2 bad
  arguments, model, data, results file or --out (one line on stderr), 130 Ctrl-C, 143 SIGTERM (finished
  configurations kept; --resume goes on)"""

TORCHRUN_WORKER_ENV = "TORCHELASTIC_RUN_ID"
"""Set by torchrun in every process it starts."""
CPU_QUICK = {"epochs": 1, "train_samples": 10_000}
GPU_EPOCHS = 20
"""Default on GPUs: the budget the reference recipe is tuned for (>= 80% at global batch 128-512)."""


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="python -m bench.scaling", description=__doc__, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep = parser.add_argument_group("sweep")
    add_config_arguments(sweep, SweepConfig)
    sweep.add_argument("--global-batch", dest="scaling", action="store_const", const="strong",
                       help=argparse.SUPPRESS)  # the older name of --scaling strong
    add_config_arguments(parser.add_argument_group("goal"), Goal)
    add_config_arguments(parser.add_argument_group("nodes (one study across hosts; same command on each)"), Nodes)
    add_config_arguments(parser.add_argument_group("axes (comma lists; each value its own configuration)"), Axes)
    add_config_arguments(parser.add_argument_group("training (each configuration)"), TrainConfig,
                         skip=("mode", "dp_gpus", *(f.name for f in dataclasses.fields(Axes))),
                         defaults={"epochs": None})
    return parser


def parse(argv: list[str]) -> tuple[SweepConfig, Goal, Axes, Nodes, TrainConfig, str, list[str]]:
    """(sweep, goal, base training config, device type, notices). Without --epochs: 20 on GPUs; on a CPU-only
    machine a quick run (1 epoch, on 10,000 samples unless --train-samples says otherwise), announced."""
    parser = build_parser()
    if os.environ.get(TORCHRUN_WORKER_ENV):
        parser.error("run the sweep itself, not under torchrun: it starts torchrun for each configuration "
                     "(across hosts: the same command on each, with --nnodes, --node-rank and --rdzv-endpoint)")
    args = parser.parse_args(argv)
    sweep = config_from_args(SweepConfig, args, parser)
    goal = config_from_args(Goal, args, parser)
    axes = config_from_args(Axes, args, parser)
    nodes = config_from_args(Nodes, args, parser)
    axis_names = {f.name for f in dataclasses.fields(Axes)}
    train = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if hasattr(args, f.name) and f.name not in axis_names}
    try:
        check_import(args.model)  # a misspelt module is refused at once, like an unknown registry name
    except ConfigError as exc:
        parser.error(str(exc))
    unused = unused_flag(train, axes, sweep.modes)
    if unused:
        parser.error(unused)
    try:
        template({**train, "epochs": train["epochs"] or 1}, sweep.modes)  # every flag checked before torch loads
    except ConfigError as exc:
        parser.error(str(exc))
    from mgpu_core.hardware import pick_device_type
    try:
        device_type = pick_device_type(args.device)
    except ConfigError as exc:
        parser.error(str(exc))
    notices = [line for line in [thread_notice(args.threads, 1)] if line]
    if device_type == "cpu":
        notices.append("notice: no GPU in use: configurations run as CPU processes over gloo, labelled cpu; "
                       "dp is skipped")
    if args.epochs is None:
        args.epochs = GPU_EPOCHS if device_type == "cuda" else CPU_QUICK["epochs"]
        if device_type == "cpu":
            if args.train_samples is None:
                args.train_samples = CPU_QUICK["train_samples"]
            notices.append(f"notice: no GPU and no --epochs: quick CPU settings, {args.epochs} epoch on "
                           f"{args.train_samples:,} training samples; give --epochs E (and --train-samples N) "
                           "for the full study")
    # The template every configuration is made from (TrainConfig.for_mode adapts it); the axes fill in the rest.
    train |= {"epochs": args.epochs, "train_samples": args.train_samples}
    try:
        base = template(train, sweep.modes)
    except ConfigError as exc:
        parser.error(str(exc))
    return sweep, goal, axes, nodes, base, device_type, notices


def resolve_dataset(train: TrainConfig) -> TrainConfig:
    """Find (or download) the data once, before any configuration starts, without decoding it; children then read
    it locally."""
    from mgpu_core.datasets import locate_dataset
    if locate_dataset(train).name == "synthetic":  # asked for, or auto without a copy (locate_dataset said so)
        return dataclasses.replace(train, dataset="synthetic", data_dir=None)
    return dataclasses.replace(train, dataset="cifar10", download=False)


def up_front_model_check(train: TrainConfig) -> str:
    """The model checked once for the whole study (mgpu_core.model_check), on the CPU, at the study's image size;
    a model that cannot work is a ConfigError here, before any configuration. Returns the line that says so."""
    from mgpu_core.model_check import build_and_check
    from mgpu_core.synthetic import NUM_CLASSES
    data_size = train.image_size if train.dataset == "synthetic" else 32  # CIFAR-10 is resized after augmenting
    _, check = build_and_check(train, NUM_CLASSES, data_size)
    unused = (f"; {plural(len(check.unused_parameters), 'parameter')} without gradient: ddp finds unused parameters"
              if check.unused_parameters else "")
    tied = f"; tied parameters {check.shared_parameters[0]} shard as one fsdp unit" if check.shared_parameters else ""
    return f"model {train.model}: checked ({check.factory_call}; logits: {check.output_rule}){unused}{tied}"


def check_results_file(path: Path) -> None:
    """The results file must be absent or a regular file this harness can read (not a link, a folder, a device)."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ResultsError(f"{path}: not a regular file; move it aside or use another --out")
    read_records(path)


def refuse_leftovers(out: Path) -> None:
    """Processes of an earlier sweep on this --out (its children name <out>/.handoff on their command line) must
    not train beside a new one."""
    marker = str((out / HANDOFF_DIR).resolve())
    left = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
            if p.info["pid"] != os.getpid() and marker in " ".join(p.info["cmdline"] or [])]
    if left:
        raise LockedError(f"{out}: processes of an earlier sweep are still running (pid {', '.join(map(str, left))});"
                          " wait for them to end or end them, then rerun")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the running configuration's tree is ended and the sweep stops cleanly."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sweep, goal, axes, nodes, base, device_type, notices = parse(argv)
    import torch

    from bench.report import write_report
    from bench.run.comm_memory import comm_memory_error
    from bench.run.node_schedule import NodeScheduleError
    from bench.run.sweep import Sweep
    from mgpu_core.distributed import usable_cores
    visible = torch.cuda.device_count() if device_type == "cuda" else 0
    per_node = nodes.nproc_per_node or visible or usable_cores()
    out = Path(sweep.out).expanduser()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job inherits SIGINT ignored
    try:
        make_out_dir(out)
        with exclusive(out):
            check_results_file(out / RESULTS_FILE)  # a file this harness cannot extend fails now, not later
            refuse_leftovers(out)
            base = resolve_dataset(base)
            for line in notices:
                print(line)
            print(up_front_model_check(base))  # before any configuration and the collective benchmark
            runner = Sweep(sweep, goal, base, device_type, out, ["python", "-m", "bench.scaling", *argv], nodes,
                           per_node)
            cells = plan(PlanInput(base, device_type, sweep.gpus or default_counts(visible, usable_cores()),
                                   sweep.modes, sweep.trials, sweep.scaling, axes, visible, usable_cores(),
                                   nodes.nnodes, per_node, sweep.order_seed, sweep.closing_baseline))
            too_big = sweep.comm and comm_memory_error(sweep.comm_max_bytes, min(per_node, max(
                (c.devices for c in cells if c.skip is None and c.mode != "single"), default=1)), device_type,
                "--comm-max-bytes")
            if too_big:
                raise ConfigError(too_big)
            if sweep.resume and nodes.node_rank == 0:  # before anything runs or is written
                nothing = check_resume(runner.results, cells[0].study_id, study_identity(
                    cells[0].config.to_dict(), cells[0].devices, sweep.scaling, device_type))
                if nothing:
                    print(nothing)
            launched, ok = runner.run(cells, sweep.resume)
            if nodes.node_rank == 0:
                write_report(read_records(runner.results), out, goal, study=cells[0].study_id,
                             comm_records=read_comm(out / COMM_FILE))
            if launched and not ok:
                print(f"python -m bench.scaling: error: every configuration failed ({launched}); the causes are in "
                      f"{out / RESULTS_FILE} and {out / LOGS_DIR}/", file=sys.stderr)
                return 1
            if nodes.node_rank == 0 and not any(r["status"] == "ok" for r in read_records(runner.results)
                                                if r["study"] == cells[0].study_id):
                print("python -m bench.scaling: error: nothing measured: every configuration was skipped (the "
                      f"reasons are in {out / SUMMARY_FILE})", file=sys.stderr)
                return 1
    except (DataError, ResultsError, LockedError, ConfigError, ResumeError) as exc:
        print(f"python -m bench.scaling: error: {exc}", file=sys.stderr)
        return 2
    except NodeScheduleError as exc:
        print(f"python -m bench.scaling: node {nodes.node_rank}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"python -m bench.scaling: error: {exc.filename or out}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{'terminated' if isinstance(exc, Terminated) else 'interrupted'}: every finished configuration is "
              f"in {out / RESULTS_FILE}; rerun with --resume to complete the rest", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
