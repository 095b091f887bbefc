"""Running a function on several gloo ranks in fresh processes, with a file rendezvous (no fixed port)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _entry(rank: int, world_size: int, workdir: str, fn, args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    torch.save(fn(rank, f"file://{workdir}/rendezvous", *args), Path(workdir) / f"rank{rank}.pt")


def run_ranks(fn, world_size: int, workdir: Path, *args) -> list:
    """fn(rank, init_method, *args) on world_size processes; returns each rank's return value, in rank order."""
    mp.start_processes(_entry, args=(world_size, str(workdir), fn, args), nprocs=world_size, join=True,
                       start_method="spawn")
    return [torch.load(workdir / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
