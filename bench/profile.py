"""Where an epoch's time goes: torch.profiler over a few training steps, split into data, forward, backward,
optimizer and communication, written out as a table.

  python -m bench.profile --data-dir ~/data/cifar10 --steps 30 --precision bf16 --channels-last
  torchrun --standalone --nproc-per-node 2 -m bench.profile --mode ddp --steps 30
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from bench.records.units import ms, ms_to_s, plural, us_to_ms
from mgpu_core.cli import build_parser
from mgpu_core.cli_args import config_from_args
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.datasets import load_dataset
from mgpu_core.distributed import DistEnv, device_synchronize, process_group
from mgpu_core.files import atomic_write
from mgpu_core.image_arrays import DataError
from mgpu_core.trainer import prepare, warm_up

REGIONS = ("data", "forward", "backward", "optimizer")
COMMUNICATION = ("all_reduce", "allreduce", "nccl", "gloo", "broadcast")


def _outermost(events, matches) -> list:
    """The host-side events that match and have no matching ancestor: a collective's nested events (c10d's op, the
    backend's kernel launch) are counted once, as the outermost one, with the device time of the kernels it
    launched (the kernels themselves, e.g. ncclDevKernel_*, are device-side events and not counted again)."""
    found = []
    for event in events:
        if event.device_type != DeviceType.CPU or not matches(event.name):
            continue
        parent = event.cpu_parent
        while parent is not None and not matches(parent.name):
            parent = parent.cpu_parent
        if parent is None:
            found.append(event)
    return found


def _is_communication(name: str) -> bool:
    return any(word in name.lower() for word in COMMUNICATION)


def profile_steps(cfg: TrainConfig, env: DistEnv, steps: int) -> tuple[list[tuple[str, float, float]], float, int]:
    """Rows of (part, CPU ms, device ms) over at most `steps` steps after warm-up, their wall seconds, and the
    steps that ran (fewer when an epoch holds fewer). Each part counts its host-side range only, with the device
    time of the kernels launched inside it: on CUDA the profiler also returns a device-side copy of every named
    range (a GPU user annotation), which would count the same kernels twice. Backward runs on the calling thread
    while profiled (autograd multithreading off), so its kernels fall inside its range rather than on autograd's
    device thread."""
    data = load_dataset(cfg)
    runner, train_pipe, _ = prepare(cfg, env, data)
    warm_up(runner, train_pipe, cfg)
    runner.region = record_function
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if env.device.type == "cuda" else [])
    train_pipe.set_epoch(0)
    with torch.autograd.set_multithreading_enabled(False), profile(activities=activities) as prof:
        start = time.perf_counter()
        ran = runner.run(train_pipe, max_steps=steps)[3]
        device_synchronize(env)
        wall_s = time.perf_counter() - start
    return region_rows(prof.events()), wall_s, ran


def region_rows(events) -> list[tuple[str, float, float]]:
    """(part, CPU ms, device ms) for each region and for communication, from the profiler's events: host-side
    events only (see profile_steps)."""
    host = [e for e in events if e.device_type == DeviceType.CPU]
    parts = {name: [e for e in host if e.name == name] for name in REGIONS}
    parts["communication"] = _outermost(events, _is_communication)
    return [(name, us_to_ms(sum(e.cpu_time_total for e in found)),
             us_to_ms(sum(getattr(e, "device_time_total", 0.0) for e in found))) for name, found in parts.items()]


def table(rows: list[tuple[str, float, float]], wall_s: float, steps: int, title: str, asked: int) -> str:
    fewer = f" (of {asked} asked: the epoch holds no more)" if steps < asked else ""
    lines = [f"# Profile: {title}", "", f"{plural(steps, 'step')}{fewer} in {wall_s:.3f} s wall "
             f"({ms(wall_s / steps):.1f} ms/step). "
             "CPU ms is host time inside each part (it includes waiting for the device where the part syncs); "
             "communication overlaps backward under DDP; backward ran on the calling thread while profiled. "
             "Device ms: kernels launched inside each part, counted once.", "",
             "| part | CPU ms | CPU ms/step | device ms | share of wall |", "|---|---|---|---|---|"]
    for name, cpu_ms, device_ms in rows:
        lines.append(f"| {name} | {cpu_ms:.1f} | {cpu_ms / steps:.2f} | {device_ms:.1f} | "
                     f"{ms_to_s(cpu_ms) / wall_s:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--steps", type=int, default=30, help="training steps to profile (after warm-up)")
    parser.add_argument("--out", type=Path, default=Path("reports/profile.md"), help="where to write the table")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"steps: must be >= 1 (got {args.steps})")
    cfg = config_from_args(TrainConfig, args, parser)
    try:
        with process_group(cfg) as env:
            rows, wall_s, ran = profile_steps(cfg, env, args.steps)
    except (ConfigError, DataError) as exc:
        parser.error(str(exc))
    if env.is_main:
        title = (f"{cfg.mode} x{env.total_devices} on {env.device.type}, {cfg.pipeline} pipeline, {cfg.precision}"
                 f"{', channels_last' if cfg.channels_last else ''}{', compiled' if cfg.compile else ''}, "
                 f"batch {cfg.batch_size} per device")
        text = table(rows, wall_s, ran, title, args.steps)
        try:
            with atomic_write(args.out.expanduser()) as f:
                f.write(text)
        except OSError as exc:
            parser.error(f"{exc.filename or args.out}: {exc.strerror}")
        print(text + f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
