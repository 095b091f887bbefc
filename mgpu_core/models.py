"""The model registry: SimpleCNN (the classic experiment, fixed at 32x32), torchvision classifiers that span
compute per byte of gradient, and a user's own nn.Module factory given as package.module:callable. Also what the
harness records about a model: parameters, gradient bytes, FLOPs per training sample."""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError
from .model import SimpleCNN
from .model_check import call_factory, logits_of
from .names import TORCHVISION, check_import, check_model


def _user_factory(spec: str) -> Callable[..., nn.Module]:
    module_name, _, attr = spec.partition(":")
    check_import(spec)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure of the user's module is one line
        raise ConfigError(f"model: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"model: {module_name} has no callable {attr}")
    return factory


def build_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    """A fresh, untrained model (seeded by the caller). A user factory is called with num_classes, or without
    arguments where it takes none (model_check.call_factory); one that fails or returns no nn.Module is a
    ConfigError."""
    return make_model(name, num_classes, image_size)[0]


def make_model(name: str, num_classes: int, image_size: int) -> tuple[nn.Module, str]:
    """build_model's model, and how it was made (ModelCheck.factory_call)."""
    check_model(name, image_size)
    if name == "simplecnn":
        return SimpleCNN(num_classes), "registry"
    if name in TORCHVISION:
        import torchvision.models as tvm
        extra = {"image_size": image_size} if name == "vit_b_16" else {}
        return getattr(tvm, name)(weights=None, num_classes=num_classes, **extra), "registry"
    return call_factory(name, _user_factory(name), num_classes)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gradient_bytes(model: nn.Module) -> int:
    """What DDP all-reduces each step: every trainable parameter's gradient, in the parameter's dtype."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def flops_per_sample(model: nn.Module, image_size: int, device: torch.device) -> float:
    """FLOPs of one training sample (forward and backward), counted by torch's FlopCounterMode on a copy of the
    model in training mode with a batch of two (BatchNorm needs more than one sample per channel)."""
    probe = copy.deepcopy(model).to(device).train()
    x = torch.randn(2, 3, image_size, image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        logits_of(probe(x)).float().sum().backward()
    return counter.get_total_flops() / 2


_SXM_H100 = {"bf16": 989.4, "fp32": 66.9}
_NVL_H100 = {"bf16": 835.5, "fp32": 60.0}
PEAK_TFLOPS = (
    # (the device name as CUDA reports it, "NVIDIA "/"Tesla " left off, as a full regular expression; dense
    # TFLOP/s per precision). Names match whole, so "H100 NVL" never takes the SXM figures nor "L40" those of "L4".
    (r"H100 PCIe", {"bf16": 756.0, "fp32": 51.2}),
    (r"H100 NVL", _NVL_H100),
    (r"H100( SXM5?)?( \d+GB)?( HBM3e?)?", _SXM_H100),
    (r"H200 NVL", _NVL_H100),
    (r"H200( SXM)?( \d+GB)?( HBM3e)?", _SXM_H100),
    (r"GH200 .*", _SXM_H100),
    (r"A100([- ].*)?", {"bf16": 312.0, "fp32": 19.5}),
    (r"L40S", {"bf16": 362.05, "fp32": 91.6}),
    (r"L40", {"bf16": 181.05, "fp32": 90.5}),
    (r"L4", {"bf16": 121.0, "fp32": 30.3}),
    (r"A10", {"bf16": 125.0, "fp32": 31.2}),
    (r"V100-SXM2-(16|32)GB", {"fp32": 15.7}),
    (r"V100-PCIE-(16|32)GB", {"fp32": 14.0}),
)
"""Vendor datasheet peaks without sparsity (the datasheets' bf16 figures with sparsity, halved). fp32 is the
non-tensor-core rate (cuDNN runs fp32 convolutions as TF32 by default, which can exceed it; provenance records
that setting). Not listed, so None: MIG slices (a fraction of the chip), and the A10G (AWS's part, no public
datasheet; it is not the A10)."""


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The datasheet peak for this GPU and precision, or None (an unknown GPU, a MIG slice, or a CPU). The name
    is CUDA's (torch.cuda.get_device_name), e.g. "NVIDIA H100 80GB HBM3", matched whole."""
    name = re.sub(r"^(NVIDIA|Tesla)\s+", "", device_name.strip())
    if re.search(r"\bMIG\b", name):
        return None
    for pattern, peaks in PEAK_TFLOPS:
        if re.fullmatch(pattern, name):
            return peaks.get(precision)
    return None
