"""Where and how a result was produced: machine, software, code version, arguments."""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from mgpu_core.distributed import usable_cores
from mgpu_core.hardware import cpu_model

HARNESS_DIR = Path(__file__).resolve().parents[1]


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=HARNESS_DIR)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    commit = _run(["git", "rev-parse", "HEAD"])
    if commit is None:
        return "unknown"
    return commit + ("-dirty" if _run(["git", "status", "--porcelain", "--untracked-files=no"]) else "")


def collect(precision: str, seed: int, argv: list[str], result: dict | None = None, nodes: int = 1) -> dict:
    """Provenance of a record. Machine and software are this process's; threads and nodes are the run's own
    (from its `result`, a RunResult dict) where it ran, else `nodes` is the planned span."""
    cuda = torch.cuda.is_available()
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) if cuda else None
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device_count": torch.cuda.device_count() if cuda else 0,
        "device_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "driver": driver.splitlines()[0] if driver else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": nccl_version_text(torch.cuda.nccl.version()) if cuda else None,
        "tf32": tf32_settings(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_cores": usable_cores(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": result["threads"] if result else None,
        "rank_threads": result.get("rank_threads") if result else None,
        "flush_denormal": (result.get("config") or {}).get("flush_denormal") if result else None,
        "keep_freed_memory": (result.get("config") or {}).get("keep_freed_memory") if result else None,
        "nodes": result["nodes"] if result else nodes,
        "topology": topology(cuda, result),
        "precision": precision,
        "seed": seed,
        "git_commit": git_commit(),
        "argv": argv,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def nccl_version_text(version: tuple) -> str:
    """torch.cuda.nccl.version() as text: (2, 21, 5) -> "2.21.5"; a 4th element, the build's suffix (a string,
    e.g. "+cuda12.4"), is appended as it is, joined with "-" when it starts with a letter or digit."""
    text = ".".join(str(v) for v in version[:3])
    suffix = "".join(str(v) for v in version[3:])
    return text + (suffix if not suffix or not suffix[0].isalnum() else f"-{suffix}")


def tf32_settings() -> dict:
    """Whether float32 work may run as TF32 on tensor cores (faster than the fp32 peak, less precise): cuDNN's
    convolutions (on by default) and float32 matmuls ("highest" = no TF32, the default)."""
    return {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def topology(cuda: bool, result: dict | None) -> dict:
    """How the devices are connected, as far as this host can tell: on CUDA the interconnect matrix of
    `nvidia-smi topo -m`, peer access between every pair of GPUs, and every NCCL_* setting; on CPU what stands in
    for it (the backend, threads per rank, usable cores)."""
    nccl_env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("NCCL_")}
    if cuda:
        n = torch.cuda.device_count()
        return {"kind": "cuda", "nvidia_smi_topo": _run(["nvidia-smi", "topo", "-m"]),
                "peer_access": [[i == j or torch.cuda.can_device_access_peer(i, j) for j in range(n)]
                                for i in range(n)], "nccl_env": nccl_env}
    return {"kind": "cpu", "backend": "gloo", "threads_per_rank": result["threads"] if result else None,
            "cpu_cores": usable_cores(), "nccl_env": nccl_env}
