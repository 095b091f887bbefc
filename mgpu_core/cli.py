"""One training configuration from the command line: the parser (derived from TrainConfig) and the run.

  python -m mgpu_core [flags]                       single or dp, one process
  torchrun --nproc-per-node N -m mgpu_core --mode ddp [flags]

With --json, rank 0 writes the RunResult there. Errors are one line on stderr; under torchrun (or wherever
TORCHELASTIC_ERROR_FILE is set) they are also recorded in torch's error file, so a launcher learns the root cause
without reading the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.distributed import DistNetworkError
from torch.distributed.elastic.multiprocessing.errors import get_error_handler, record

from .cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from .config import ConfigError, TrainConfig
from .datasets import load_dataset
from .distributed import DistEnv, process_group, usable_cores
from .files import atomic_write
from .image_arrays import DataError
from .pipelines import StuckWorkerError
from .trainer import DivergedError, RunResult, train_and_evaluate

EXAMPLES = """examples:
  python -m mgpu_core --dataset cifar10 --data-dir ~/data/cifar10 --epochs 2
  python -m mgpu_core --mode dp --dp-gpus 4
  torchrun --standalone --nproc-per-node 4 -m mgpu_core --mode ddp --json ddp4.json
exit codes: 0 done, 1 training diverged (non-finite loss), out of memory or a DataLoader worker stuck, 2 bad
  arguments or data (one line on stderr)"""


class RendezvousError(RuntimeError):
    """The process group could not meet (port taken, host unreachable); one line."""


def build_parser(prog: str = "python -m mgpu_core",
                 description: str = "Train one configuration and time its epochs.",
                 epilog: str = EXAMPLES) -> OneLineErrorParser:
    """Every TrainConfig field as a flag; tools that train one configuration (bench.one_config, bench.profile)
    start from this parser and add their own flags (and give their own `epilog`: examples and exit codes)."""
    parser = OneLineErrorParser(prog=prog, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=description)
    add_config_arguments(parser, TrainConfig)
    return parser


RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def stale_rendezvous_variables(cfg: TrainConfig) -> str | None:
    """Why ddp or fsdp started by hand (not by torchrun) must not use the rendezvous variables left in the shell
    (they would make it wait the whole --dist-timeout-s for ranks that never come), or None. torchrun sets
    TORCHELASTIC_RUN_ID in every process it starts."""
    if cfg.mode not in ("ddp", "fsdp") or os.environ.get("TORCHELASTIC_RUN_ID"):
        return None
    found = [name for name in RENDEZVOUS_VARIABLES if name in os.environ]
    if not found:
        return None
    return (f"{', '.join(found)} set, but this process was not started by torchrun (left over in the shell?): "
            f"unset them to train as a group of one, or start with torchrun --nproc-per-node N -m mgpu_core")


def one_line_error(prog: str, exc: BaseException) -> None:
    """Print `exc` as one line and record it in torch's error file (a no-op where none is set)."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    get_error_handler().record_exception(exc)


def run_configuration(cfg: TrainConfig, prog: str, on_result: Callable[[RunResult, DistEnv], None]) -> int:
    """Load data, train and evaluate one configuration in this process's place of the run, hand the result to
    `on_result` on every rank. Bad configuration or data: one line on stderr and 2; divergence: one line and 1."""
    try:
        with process_group(cfg) as env:
            log = print if env.is_main else (lambda _message: None)
            if env.device.type == "cpu":
                log(f"notice: running on CPU ({env.world_size} process(es), "
                    f"{'gloo' if env.distributed else 'no process group'}, {env.threads} threads each); "
                    "times are not GPU times")
            start = time.perf_counter()
            data = load_dataset(cfg, notice=log)
            if env.threads * env.local_world_size > usable_cores():
                log(f"notice: {env.threads} threads x {env.local_world_size} process(es) exceed the {usable_cores()} "
                    "usable cores of this node: ranks oversubscribe the cores; lower --threads")
            log(f"dataset {data.name}: {len(data.train_y)} train + {len(data.test_y)} test from {data.source} "
                f"({time.perf_counter() - start:.1f} s)")
            result = train_and_evaluate(cfg, env, data, log)[0]  # the model (a DDP wrapper) freed here, in the group
            on_result(result, env)
    except (ConfigError, DataError) as exc:
        one_line_error(prog, exc)
        return 2
    except DistNetworkError as exc:  # e.g. MASTER_PORT already taken, or the rendezvous host unreachable
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        one_line_error(prog, RendezvousError(f"rendezvous at {where} failed: {str(exc).strip().splitlines()[0]}"))
        return 2
    except (DivergedError, StuckWorkerError) as exc:
        one_line_error(prog, exc)
        return 1
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and "can't allocate memory" not in str(exc):
            raise  # not memory: a bug, with its traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"{prog}: error: out of memory at batch {cfg.batch_size} per device and image size {cfg.image_size}: "
              f"lower --batch-size or --image-size ({type(exc).__name__}: {first})", file=sys.stderr)
        get_error_handler().record_exception(exc)  # the root cause, as torch records it, for the sweep
        return 1
    except OSError as exc:  # e.g. --json in a folder that cannot be written
        one_line_error(prog, DataError(f"{exc.filename}: {exc.strerror}"))
        return 2
    return 0


@record
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the result record here as JSON (rank 0)")
    args = parser.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, parser)
    stale = stale_rendezvous_variables(cfg)
    if stale:
        parser.error(stale)

    def write(result: RunResult, env: DistEnv) -> None:
        if env.is_main and args.json:
            with atomic_write(args.json) as f:
                json.dump(result.to_dict(), f, indent=1, allow_nan=False)

    return run_configuration(cfg, parser.prog, write)
