"""Process group lifecycle from torchrun's environment, the device each process owns, and explicit reductions."""

from __future__ import annotations

import gc
import os
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .config import ConfigError, TrainConfig
from .hardware import pick_device_type
from .host_memory import keep_freed_memory
from .names import DISTRIBUTED_MODES


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str | None
    """'nccl' or 'gloo' under ddp, None when no process group exists."""
    threads: int
    """torch intra-op threads of this process."""
    local_devices: int = 1
    """Devices this one process drives: cfg.dp_gpus under dp, else 1."""

    @property
    def total_devices(self) -> int:
        return self.world_size * self.local_devices

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def resolve_device_type(cfg: TrainConfig) -> str:
    """'cuda' or 'cpu' for this run; a request the machine cannot meet is a ConfigError."""
    device_type = pick_device_type(cfg.device)
    if device_type == "cpu" and cfg.mode == "dp":
        raise ConfigError("mode: dp needs CUDA devices and none is visible; use ddp (CPU processes over gloo)")
    if device_type == "cpu" and cfg.sync_bn:
        raise ConfigError("sync_bn: SyncBatchNorm needs CUDA devices (torch has no CPU kernel for it)")
    return device_type


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


USER_OMP_ENV = "MGPU_USER_OMP_NUM_THREADS"
"""OMP_NUM_THREADS as the user set it ('' when unset), kept by bench.run.torchrun before torchrun sets its own
default of 1 for its workers, so the ranks honour the user's setting and not torchrun's."""


def threads_per_process(cfg: TrainConfig, local_world: int) -> int:
    """The intra-op threads of one process, the same rule for the baseline and every rank: --threads, else the
    user's OMP_NUM_THREADS, else the usable cores divided by the processes on this node. A value that is not a
    positive integer is a ConfigError."""
    if cfg.threads:
        return cfg.threads
    user = os.environ[USER_OMP_ENV] if USER_OMP_ENV in os.environ else os.environ.get("OMP_NUM_THREADS", "")
    if user.strip():
        try:
            value = int(user)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"OMP_NUM_THREADS: must be an integer >= 1 (got {user!r}); unset it or use --threads")
        return value
    return max(1, usable_cores() // local_world)  # ranks on one node share its cores


@contextmanager
def process_group(cfg: TrainConfig, init_method: str | None = None) -> Iterator[DistEnv]:
    """The process's place in the run. Under ddp and fsdp, a process group comes up from torchrun's variables (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), or from `init_method` plus those variables, or, with none set, as a
    group of one; it is torn down on exit, also on error. single and dp run with no group. Drop every reference
    to a DDP wrapper before the block ends (its reducer must not outlive the group)."""
    device_type = resolve_device_type(cfg)
    grouped = cfg.mode in DISTRIBUTED_MODES
    rank = int(os.environ.get("RANK", 0)) if grouped else 0
    world = int(os.environ.get("WORLD_SIZE", 1)) if grouped else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if grouped else 0
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if grouped else 1

    if device_type == "cuda":
        needed = local_rank + 1 if grouped else cfg.dp_gpus
        if needed > torch.cuda.device_count():
            raise ConfigError(f"dp_gpus: {needed} GPUs needed on this node, {torch.cuda.device_count()} visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    threads = threads_per_process(cfg, local_world)
    if device_type == "cpu":  # before the thread pool starts: its threads inherit the setting
        torch.set_flush_denormal(cfg.flush_denormal)
        if cfg.keep_freed_memory:
            keep_freed_memory()
    torch.set_num_threads(threads)

    if not grouped:
        yield DistEnv(rank, world, local_rank, local_world, device, None, threads, cfg.devices_per_process)
        return

    backend = "nccl" if device_type == "cuda" else "gloo"
    alone = init_method is None and "MASTER_ADDR" not in os.environ  # a group of one, started without torchrun
    # Under torchrun no temporary folder is made, so a worker ended by a signal leaves none behind.
    with tempfile.TemporaryDirectory(prefix="mgpu-rendezvous-") if alone else nullcontext(None) as tmp:
        if alone:
            init_method = f"file://{tmp}/rendezvous"
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                                timeout=timedelta(seconds=cfg.dist_timeout_s),
                                device_id=device if device_type == "cuda" else None)
        try:
            yield DistEnv(rank, world, local_rank, local_world, device, backend, threads)
        except BaseException as exc:
            # The failed run's frames hold its DDP wrapper: clear their locals so the wrapper can go first.
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            # DDP's reducer must be freed while its group lives (torch 2.11 + gloo can deadlock when it is freed
            # after destroy_process_group): callers drop the wrapper inside the block; gc frees its cycles here.
            gc.collect()
            dist.destroy_process_group()


def device_synchronize(env: DistEnv) -> None:
    """Wait for all queued work on every device this process drives (a host sync; never inside a timed loop)."""
    if env.device.type == "cuda":
        for index in range(env.device.index, env.device.index + env.local_devices):
            torch.cuda.synchronize(index)


def barrier(env: DistEnv) -> None:
    """All ranks reach this point before any goes on (a host sync)."""
    if env.distributed:
        dist.barrier(device_ids=[env.device.index]) if env.backend == "nccl" else dist.barrier()


def all_reduce_to_host(env: DistEnv, values: list[float | torch.Tensor], op: dist.ReduceOp) -> list[float]:
    """Reduce scalars across ranks with an explicit op and read them on the host (a host sync)."""
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=env.device) for v in values])
    if env.distributed:
        dist.all_reduce(t, op=op)
    return t.tolist()


def all_gather_to_host(env: DistEnv, values: list[float]) -> list[list[float]]:
    """Every rank's `values`, in rank order, on the host (a host sync)."""
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    if not env.distributed:
        return [t.tolist()]
    gathered = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(gathered, t)
    return [g.tolist() for g in gathered]
