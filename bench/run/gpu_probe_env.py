"""The GPU session's env and data programs (python -m bench.run.gpu_probes env|data): the machine the session's
other numbers depend on, and the data decoded once into the cache."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from bench.run.gpu_probe_kit import train_config

HARNESS_MODULES = ("mgpu_core.cli", "mgpu_core.trainer", "mgpu_core.parallel", "mgpu_core.collectives",
                   "bench.scaling", "bench.gpu_check", "bench.comm", "bench.profile", "bench.report")
PACKAGES = ("torch", "torchvision", "numpy", "PIL", "psutil", "matplotlib", "tqdm", "pytest", "triton")


def _shell(cmd: list[str], timeout_s: float = 20.0) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return f"({cmd[0]} not found)"
    except subprocess.TimeoutExpired:
        return f"({' '.join(cmd)} timed out after {timeout_s:g} s)"
    return (out.stdout + out.stderr).strip()


def env_probe(work: Path) -> dict:
    """Everything about the machine the session's other numbers depend on; printed and written to env.json."""
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable, "packages": {}}
    for name in PACKAGES:
        try:
            info["packages"][name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - a missing or broken package is a finding, not a crash
            info["packages"][name] = f"MISSING ({type(exc).__name__}: {exc})"
    for cmd in (["nvidia-smi", "-L"],
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_mode,clocks.sm,clocks.max.sm,"
                 "power.limit,temperature.gpu,mig.mode.current", "--format=csv"],
                ["nvidia-smi", "topo", "-m"]):
        info[" ".join(cmd[:2])] = _shell(cmd)
    import torch

    from bench.run.provenance import nccl_version_text, tf32_settings
    from mgpu_core.models import peak_tflops
    info |= {"torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
             "device_count": torch.cuda.device_count(), "tf32": tf32_settings()}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        p = torch.cuda.get_device_properties(0)
        info |= {"device": name, "compute_capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                 "memory_bytes": p.total_memory, "bf16_supported": torch.cuda.is_bf16_supported(),
                 "cudnn": torch.backends.cudnn.version(), "nccl_raw": list(torch.cuda.nccl.version()),
                 "nccl": nccl_version_text(torch.cuda.nccl.version())}
        n, reps, dev = 8192, 10, "cuda"
    else:
        from mgpu_core.hardware import cpu_model
        info["device"] = cpu_model()
        n, reps, dev = 512, 3, "cpu"  # the rehearsal: the same code on a small product
    info["peak_tflops"] = {pr: peak_tflops(info["device"], pr) for pr in ("fp32", "bf16")}
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    sync()
    elapsed = time.perf_counter() - start
    reference = (a[:64].float() @ b.float())
    info["bf16_matmul"] = {"n": n, "tflops": 2 * n**3 * reps / elapsed / 1e12,
                           "max_rel_error": float(((c[:64].float() - reference).abs().max() /
                                                   reference.abs().max()).item())}
    peak = info["peak_tflops"]["bf16"]
    info["bf16_matmul"]["of_peak"] = info["bf16_matmul"]["tflops"] / peak if peak else None
    info["c_compiler"] = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    include = sysconfig.get_paths()["include"]
    info["python_h"] = os.path.exists(os.path.join(include, "Python.h"))
    info["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["imports"] = {}
    for mod in HARNESS_MODULES:
        try:
            importlib.import_module(mod)
            info["imports"][mod] = "ok"
        except Exception as exc:  # noqa: BLE001
            info["imports"][mod] = f"FAILED: {type(exc).__name__}: {exc}"
    for key, value in info.items():
        print(f"## {key}\n{json.dumps(value, indent=1) if isinstance(value, dict) else value}", flush=True)
    (work / "env.json").write_text(json.dumps(info, indent=1, default=str))
    return info


def data_probe(argv: list[str]) -> None:
    from mgpu_core.datasets import load_dataset
    cfg = train_config(argv)
    for what in ("decode (or find) + cache", "cached reload"):
        start = time.perf_counter()
        data = load_dataset(cfg)
        print(f"{what}: {data.describe()} in {time.perf_counter() - start:.1f} s", flush=True)
