"""Wrapping the model for single / dp / ddp, and the one place that unwraps it."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import TrainConfig
from .distributed import DistEnv


def wrap_model(model: nn.Module, cfg: TrainConfig, env: DistEnv) -> nn.Module:
    """Move `model` to this process's device and wrap it for cfg.mode. What "batch size" (cfg.batch_size, B) means:
    - single: one device, one process; each step trains on B samples.
    - dp: one process feeds a batch of B x devices to nn.DataParallel, which splits it into B per GPU, replicates
      the model every step and gathers outputs on GPU 0; one optimizer step per global batch of B x devices.
    - ddp: one process per device, each with its own batch of B; gradients are averaged by all-reduce, so one step
      equals a single-process step on the B x world_size union of the ranks' batches.
    """
    model = model.to(env.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.mode == "dp":
        return nn.DataParallel(model, device_ids=list(range(cfg.dp_gpus)))
    if cfg.mode == "ddp":
        if cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return torch.compile(model) if cfg.compile else model  # DDP first: compile then splits graphs at its buckets


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside torch.compile's and DataParallel's or DistributedDataParallel's wrappers."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    return model.module if isinstance(model, nn.DataParallel | DistributedDataParallel) else model
