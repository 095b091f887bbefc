"""One training configuration, from the command line: python -m mgpu_core [flags], or under torchrun for ddp."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from torch.distributed import DistNetworkError

from .cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from .config import ConfigError, TrainConfig
from .datasets import load_dataset
from .distributed import DistEnv, process_group
from .image_arrays import DataError
from .trainer import RunResult, train_and_evaluate

EXAMPLES = """examples:
  python -m mgpu_core --dataset cifar10 --data-dir ~/data/cifar10 --epochs 2
  python -m mgpu_core --mode dp --devices 4
  torchrun --standalone --nproc-per-node 4 -m mgpu_core --mode ddp --json ddp4.json
exit codes: 0 done, 2 bad arguments or data (one line on stderr)"""


def build_parser(json_flag: bool = True) -> OneLineErrorParser:
    parser = OneLineErrorParser(prog="python -m mgpu_core", epilog=EXAMPLES,
                                description="Train SimpleCNN on CIFAR-10 for one configuration and time its epochs.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, TrainConfig)
    if json_flag:
        parser.add_argument("--json", metavar="PATH", help="write the result record here as JSON (rank 0)")
    return parser


def write_json_atomic(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def run_configuration(cfg: TrainConfig, prog: str, on_result: Callable[[RunResult, DistEnv], None]) -> int:
    """Load data, train and evaluate one configuration in this process's place of the run, hand the result to
    `on_result` on every rank. Bad configuration or data: one line on stderr and 2."""
    try:
        with process_group(cfg) as env:
            log = print if env.is_main else (lambda _message: None)
            if env.device.type == "cpu":
                log(f"notice: running on CPU ({env.world_size} process(es), "
                    f"{'gloo' if env.distributed else 'no process group'}, {env.threads} threads each); "
                    "times are not GPU times")
            start = time.perf_counter()
            data = load_dataset(cfg, notice=log)
            log(f"dataset {data.name}: {len(data.train_y)} train + {len(data.test_y)} test from {data.source} "
                f"({time.perf_counter() - start:.1f} s)")
            result, _ = train_and_evaluate(cfg, env, data, log)
            on_result(result, env)
    except (ConfigError, DataError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except DistNetworkError as exc:  # e.g. MASTER_PORT already taken, or the rendezvous host unreachable
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        print(f"{prog}: error: rendezvous at {where} failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, parser)

    def write(result: RunResult, env: DistEnv) -> None:
        if env.is_main and args.json:
            write_json_atomic(Path(args.json), result.to_dict())

    return run_configuration(cfg, parser.prog, write)


if __name__ == "__main__":
    sys.exit(main())
