"""Training recipes: named presets for the optimizer, schedule, regularization and learning-rate scaling rule.

classic is the seed experiment as a new user writes it (Adam 1e-3, no augmentation, constant rate). reference is the
default, chosen by measurement (docs/recipes.md) to keep SimpleCNN at >= 80% validation accuracy at global batch
128, 256 and 512 within 20 epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the recipe is read by torch-free config; only building an optimizer needs torch
    import torch
    from torch import nn

BASE_BATCH = 128
"""The global batch a recipe's learning rate is written for; lr_scaling adapts it to other global batches."""


@dataclass(frozen=True)
class Recipe:
    """The resolved hyper-parameters of one run: a named preset with the user's overrides applied."""
    optimizer: str
    lr: float
    lr_scaling: str
    schedule: str
    lr_ramp_epochs: float
    weight_decay: float
    label_smoothing: float
    augment: bool


RECIPES: dict[str, Recipe] = {
    "classic": Recipe(optimizer="adam", lr=1e-3, lr_scaling="none", schedule="constant", lr_ramp_epochs=0.0,
                      weight_decay=0.0, label_smoothing=0.0, augment=False),
    "reference": Recipe(optimizer="sgd", lr=0.05, lr_scaling="sqrt", schedule="cosine", lr_ramp_epochs=1.0,
                        weight_decay=5e-4, label_smoothing=0.1, augment=True),
}
RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))


def resolve_recipe(name: str, overrides: dict) -> Recipe:
    """The preset `name` with every override that is not None applied."""
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if k in RECIPE_FIELDS and v is not None})


def global_batch(batch_per_device: int, devices: int, grad_accum: int = 1) -> int:
    """Samples per optimizer step: batch per device x devices x micro-batches accumulated per step (the one
    definition; the learning rate scales with it)."""
    return batch_per_device * devices * grad_accum


def lr_scale(rule: str, global_batch: int) -> float:
    """Factor on the recipe's learning rate for `global_batch`: none 1, linear B/128, sqrt sqrt(B/128)."""
    ratio = global_batch / BASE_BATCH
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def lr_multiplier(schedule: str, ramp_steps: int, total_steps: int) -> Callable[[int], float]:
    """Step -> factor on the peak rate: a linear ramp from 1/ramp_steps to 1, then constant, cosine or linear
    decay to 0 at total_steps."""
    def factor(step: int) -> float:
        if step < ramp_steps:
            return (step + 1) / ramp_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - ramp_steps) / max(1, total_steps - ramp_steps))
        return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
    return factor


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                   fused: bool = False) -> torch.optim.Optimizer:
    """adam: Adam (L2 via weight_decay, as the classic recipe has none); adamw: decoupled decay; sgd: momentum 0.9,
    Nesterov. Weight decay spares biases. fused: one kernel per step for all parameters."""
    import torch
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    extra = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, **extra)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **extra)
    return torch.optim.Adam(groups, lr=lr, **extra)
