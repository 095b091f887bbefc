"""One configuration of a study run by hand, its record appended to a results file; the way to span nodes with
torchrun directly (the sweep itself hands results back through mgpu_core's --json and records them):

  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
      -m bench.one_config --mode ddp --results reports/results.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from bench.explain.goal import Goal
from bench.records.results import ResultsError, append_record, make_record
from bench.records.study import SCALINGS
from bench.run.provenance import collect
from bench.scaling import check_results_file
from mgpu_core.cli import build_parser, run_configuration
from mgpu_core.cli_args import add_config_arguments, config_from_args
from mgpu_core.config import TrainConfig


@record
def main(argv: list[str] | None = None) -> int:
    parser = build_parser(prog="python -m bench.one_config")
    parser.add_argument("--results", required=True, type=Path, metavar="PATH",
                        help="results.jsonl to append the record to")
    parser.add_argument("--trial", type=int, default=0, help="trial number within the study")
    parser.add_argument("--scaling", choices=SCALINGS, default="weak",
                        help="weak: --batch-size per device as given; strong: it is a share of a fixed global batch")
    add_config_arguments(parser.add_argument_group("goal"), Goal)
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, parser)
    goal = config_from_args(Goal, args, parser)
    try:  # a file it cannot extend (a link, a folder, undecodable) is refused before anything trains, as the sweep does
        check_results_file(args.results)
    except ResultsError as exc:
        parser.error(str(exc).replace("use another --out", "give another --results"))

    def append(result, env) -> None:
        if env.is_main:
            run = result.to_dict()
            append_record(args.results, make_record(
                cfg=cfg, devices=env.total_devices, trial=args.trial, scaling=args.scaling,
                device_type=env.device.type, status="ok", result=run, target_val_acc=goal.min_val_acc,
                provenance=collect(cfg.precision, cfg.seed, sys.argv, run)))

    return run_configuration(cfg, parser.prog, append)


if __name__ == "__main__":
    sys.exit(main())
