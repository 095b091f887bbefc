"""One configuration of a study, its record appended to a results file. The sweep runs it in its own process group;
run it by hand under torchrun to span nodes:

  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
      -m bench.one_config --mode ddp --results reports/results.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mgpu_core.__main__ import build_parser, run_configuration
from mgpu_core.cli_args import config_from_args
from mgpu_core.config import TrainConfig

from .provenance import collect
from .results import append_record, make_record


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(json_flag=False)
    parser.prog = "python -m bench.one_config"
    parser.add_argument("--results", required=True, metavar="PATH", help="results.jsonl to append the record to")
    parser.add_argument("--trial", type=int, default=0, help="trial number within the study")
    parser.add_argument("--scaling", choices=("weak", "strong"), default="weak",
                        help="weak: --batch-size per device as given; strong: it is a share of a fixed global batch")
    parser.add_argument("--run-id", default=None, help="identifier the sweep uses to find this record")
    parser.add_argument("--sweep-argv", default=None, help="JSON list: the sweep command line, for provenance")
    parser.add_argument("--target-val-acc", type=float, default=78.0,
                        help="validation accuracy (percent) whose time to reach is recorded")
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, parser)
    command = json.loads(args.sweep_argv) if args.sweep_argv else sys.argv

    def append(result, env) -> None:
        if env.is_main:
            record = make_record(cfg=cfg, devices=env.total_devices, trial=args.trial, scaling=args.scaling,
                                 device_type=env.device.type, status="ok", result=result.to_dict(),
                                 provenance=collect(cfg.precision, cfg.seed, command), run_id=args.run_id,
                                 target_val_acc=args.target_val_acc / 100)
            append_record(Path(args.results), record)

    return run_configuration(cfg, parser.prog, append)


if __name__ == "__main__":
    sys.exit(main())
