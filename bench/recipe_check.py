"""Check a training recipe at the global batches of a scaling study, in one process (DDP at N ranks equals one
process at batch 128 x N, as the parity test shows):

  python -m bench.recipe_check --data-dir ~/data/cifar10 --batch-sizes 128,256,512 --epochs 20

prints validation accuracy per epoch and, per batch size, final and best accuracy, the epochs at which the targets
were reached and the training seconds it took.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from bench.explain.goal import Goal
from bench.records.accuracy import time_to_accuracy
from bench.records.units import plural
from mgpu_core.cli_args import OneLineErrorParser, add_config_arguments, config_from_args
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.datasets import load_dataset
from mgpu_core.distributed import process_group
from mgpu_core.hardware import pick_device_type
from mgpu_core.image_arrays import DataError
from mgpu_core.trainer import train_and_evaluate


@dataclasses.dataclass
class CheckConfig:
    batch_sizes: tuple[int, ...] = (128, 256, 512)
    """Global batch sizes to train at, one run each."""

    targets: tuple[float, ...] = dataclasses.field(default=(Goal().min_val_acc, 0.80), metadata={"percent": True})
    """Validation accuracies (percent) whose first epoch and training time are reported."""

    def __post_init__(self) -> None:
        if any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch_sizes: every batch size must be >= 1 (got {self.batch_sizes!r})")
        if any(not (math.isfinite(t) and 0 < t <= 1) for t in self.targets):
            shown = ",".join(f"{t * 100:g}" for t in self.targets)
            raise ConfigError(f"targets: percentages in (0, 100] (got {shown})")


def table(rows: list[dict], targets: tuple[float, ...]) -> str:
    head = ["global batch", "lr peak", "final val", "best val"]
    head += [f"epoch >= {t:.0%}" for t in targets] + [f"train s to {t:.0%}" for t in targets] + ["train s total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["batch"]), f"{r['lr_peak']:.4g}", f"{r['final']:.2%}", f"{r['best']:.2%}"]
        cells += [str(r["reach"][t][1]) if r["reach"][t] else "-" for t in targets]
        cells += [f"{r['reach'][t][0]:.0f}" if r["reach"][t] else "-" for t in targets]
        lines.append("| " + " | ".join(cells + [f"{r['train_s']:.0f}"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m bench.recipe_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser.add_argument_group("check"), CheckConfig)
    add_config_arguments(parser.add_argument_group("training"), TrainConfig, skip=("mode", "dp_gpus", "batch_size"),
                         defaults={"epochs": 20, "dataset": "cifar10"})
    args = parser.parse_args(argv)
    check = config_from_args(CheckConfig, args, parser)
    try:
        base = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                              if hasattr(args, f.name)})
        pick_device_type(base.device)
        data = load_dataset(base)
    except (ConfigError, DataError) as exc:
        parser.error(str(exc))
    rows = []
    for batch in check.batch_sizes:
        cfg = dataclasses.replace(base, batch_size=batch)
        print(f"\n== global batch {batch} ({cfg.recipe} recipe, lr scaling {cfg.hparams.lr_scaling}) ==")
        with process_group(cfg) as env:
            result, _ = train_and_evaluate(cfg, env, data)
        times = [e.time_s for e in result.epochs]
        accs = [e.accuracy for e in result.evals]
        reach = {t: time_to_accuracy(times, accs, t) for t in check.targets}
        rows.append({"batch": batch, "lr_peak": result.lr_peak, "final": accs[-1], "best": max(accs),
                     "train_s": sum(times), "reach": reach})
    print(f"\n{base.recipe} recipe, {plural(base.epochs, 'epoch')}, {data.name} ({data.source}), {result.device_name}, "
          f"{base.precision}\n")
    print(table(rows, check.targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
