"""What the hardware is and can do: which device type a run uses, device names, bf16 support."""

from __future__ import annotations

import functools
import platform

import torch

from .errors import ConfigError


@functools.cache
def _cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo") as f:
            first_cpu = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)}


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 autocast runs natively. Only AMX makes it faster than fp32 (measured, README)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def cpu_has_amx() -> bool:
    """Intel AMX with bf16 tiles: the CPUs on which bf16 autocast is faster than fp32 (README's measurements)."""
    return "amx_bf16" in set(_cpuinfo().get("flags", "").split())


def bf16_supported(device: torch.device) -> bool:
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def pick_device_type(requested: str) -> str:
    """'cuda' or 'cpu' for a request of auto, cuda or cpu: the one place that chooses. A request for CUDA on a
    machine without a visible CUDA device is a ConfigError."""
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise ConfigError("device: cuda requested but no CUDA device is visible")
    return "cpu"
