"""Wrapping the model for single / dp / ddp / fsdp (with DDP's knobs and comm hooks), and the one place that
unwraps it."""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from functools import partial

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from .config import ConfigError, TrainConfig
from .distributed import DistEnv

POWERSGD_START_ITER = 2
"""PowerSGD all-reduces uncompressed for its first steps (torch requires > 1), then compresses."""

_HOOK_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""DDP module -> (its comm hook's state, a factory of a fresh one): what reset_comm_hook_state puts back."""


def wrap_model(model: nn.Module, cfg: TrainConfig, env: DistEnv, find_unused: bool = False) -> nn.Module:
    """Move `model` to this process's device and wrap it for cfg.mode. What "batch size" (cfg.batch_size, B) means:
    - single: one device, one process; each step trains on B samples.
    - dp: one process feeds a batch of B x devices to nn.DataParallel, which splits it into B per GPU, replicates
      the model every step and gathers outputs on GPU 0; one optimizer step per global batch of B x devices.
    - ddp: one process per device, each with its own batch of B; gradients are averaged by all-reduce, so one step
      equals a single-process step on the B x world_size union of the ranks' batches.
    - fsdp: as ddp, but each rank holds a shard of the parameters; they are all-gathered for forward and backward
      and the gradients reduce-scattered, so one step again equals one on the union batch.
    With grad_accum K, one optimizer step takes K such batches per device. `find_unused`: some parameters get no
    gradient (the model check found them); ddp then runs with find_unused_parameters, as it must.
    """
    model = model.to(env.device)
    if cfg.channels_last and cfg.mode != "fsdp":  # FSDP2 shards contiguous parameters only; inputs stay NHWC
        model = model.to(memory_format=torch.channels_last)
    if cfg.mode == "dp":
        if cfg.precision == "bf16":
            model = ReplicaAutocast(model, env.device.type, torch.bfloat16)
        return nn.DataParallel(model, device_ids=list(range(cfg.dp_gpus)))
    if cfg.mode == "fsdp":
        return _fully_shard(model, cfg)
    if cfg.mode == "ddp":
        if cfg.sync_bn:
            if not has_batchnorm(model):
                raise ConfigError(f"sync_bn: {cfg.model} has no BatchNorm layer, so SyncBatchNorm would change "
                                  "nothing (plain ddp under another label)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
                                        bucket_cap_mb=cfg.ddp_bucket_mb, static_graph=cfg.ddp_static_graph,
                                        gradient_as_bucket_view=cfg.ddp_grad_as_bucket_view,
                                        find_unused_parameters=find_unused)
        _register_hook(model, cfg)
    return torch.compile(model) if cfg.compile else model  # DDP first: compile then splits graphs at its buckets


class ReplicaAutocast(nn.Module):
    """Runs the wrapped module under autocast to `dtype` itself, wherever it is called. nn.DataParallel runs each
    replica in a thread of its own (parallel_apply) and re-enters autocast there without a dtype; autocast's dtype
    is thread-local and a new thread's CUDA default is float16, so without this a bf16 run computes its replicas in
    float16 (torch/nn/parallel/parallel_apply.py). Its replicas copy the attributes, so each enters bf16 itself."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.module(*args, **kwargs)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any layer of `model` is a BatchNorm (what SyncBatchNorm would replace)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _register_hook(model: DistributedDataParallel, cfg: TrainConfig) -> None:
    if cfg.ddp_comm_hook == "bf16":
        model.register_comm_hook(None, default_hooks.bf16_compress_hook)
    elif cfg.ddp_comm_hook == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif cfg.ddp_comm_hook == "powersgd":
        fresh = partial(powerSGD_hook.PowerSGDState, process_group=None, matrix_approximation_rank=cfg.powersgd_rank,
                        start_powerSGD_iter=POWERSGD_START_ITER, warm_start=True, random_seed=cfg.seed)
        state = fresh()
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
        _HOOK_STATES[model] = state, fresh


def reset_comm_hook_state(model: nn.Module) -> None:
    """Put a stateful comm hook back as it was registered (PowerSGD's error feedback, warm-start factors, step
    count and random generator), so warm-up leaves no trace in the timed training. DDP takes one hook per model,
    so the registered state object is refilled in place."""
    state, fresh = _HOOK_STATES.get(getattr(model, "_orig_mod", model), (None, None))
    if state is not None:
        new = fresh()
        for name in type(state).__slots__:
            if name != "process_group":
                setattr(state, name, getattr(new, name))


def _fully_shard(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """FSDP2: with fsdp_wrap layer, every module that owns parameters is its own unit (communication overlaps
    compute layer by layer), then the root; with model, the whole model is one unit. bf16 computes in bf16 and
    reduces gradients in fp32."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if cfg.precision == "bf16" else MixedPrecisionPolicy()
    if cfg.fsdp_wrap == "layer":
        for unit in layer_units(model):
            fully_shard(unit if len(unit) > 1 else unit[0], mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def layer_units(model: nn.Module) -> list[list[nn.Module]]:
    """fsdp's layer wrap: every module below the root that owns parameters is a unit, except that modules sharing
    a parameter (tied weights, e.g. an embedding and the output layer) form one unit together: a parameter cannot
    be sharded by two units."""
    owners = [m for m in list(model.modules())[1:] if any(True for _ in m.parameters(recurse=False))]
    group_of: dict[int, int] = {}  # parameter id -> index of its unit in `units`
    units: list[list[nn.Module] | None] = []
    for module in owners:
        joined = sorted({group_of[id(p)] for p in module.parameters(recurse=False) if id(p) in group_of})
        unit = [module]
        for index in joined:  # merge every unit this module shares a parameter with
            unit = units[index] + unit
            units[index] = None
        units.append(unit)
        for member in unit:
            for p in member.parameters(recurse=False):
                group_of[id(p)] = len(units) - 1
    return [u for u in units if u is not None]


def gradient_sync(model: nn.Module, sync: bool):
    """A context for one micro-batch's backward: without sync, ddp skips its all-reduce (no_sync) and fsdp its
    reduce-scatter, so accumulation communicates once per optimizer step. torch.compile's wrapper is looked
    through first: it is no DDP module, and seen as one it would all-reduce every micro-batch."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    if isinstance(model, DistributedDataParallel):
        return nullcontext() if sync else model.no_sync()
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)
    return nullcontext()


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside torch.compile's and DataParallel's (with its ReplicaAutocast) or
    DistributedDataParallel's wrappers (fsdp's
    fully_shard changes the model in place: it is its own bare model, with sharded parameters)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    model = model.module if isinstance(model, nn.DataParallel | DistributedDataParallel) else model
    return model.module if isinstance(model, ReplicaAutocast) else model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer whole, on every rank (fsdp's shards gathered: a collective)."""
    return {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in unwrap(model).state_dict().items()}
