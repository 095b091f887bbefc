"""Probes of what the device and its libraries do (items 8, 11, 12): DataParallel's replica dtype under
autocast, the peak table and TF32 defaults, the NCCL version provenance writes."""

from __future__ import annotations

import threading

from bench.run.gpu_probe_kit import verdict_of


def probe_dp_autocast(cuda: bool) -> tuple[str, str]:
    """Item 8: what dtype DataParallel's replica threads compute in under bf16 autocast, bare and wrapped."""
    import torch
    from torch import nn

    from mgpu_core.parallel import ReplicaAutocast
    if cuda:
        from torch.nn.parallel import parallel_apply
        lin = nn.Linear(64, 64).cuda()
        wrapped = ReplicaAutocast(nn.Linear(64, 64).cuda(), "cuda", torch.bfloat16)
        x = torch.randn(8, 64, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bare = [o.dtype for o in parallel_apply([lin, lin], [(x,), (x,)], devices=[0, 0])]
            fixed = [o.dtype for o in parallel_apply([wrapped, wrapped], [(x,), (x,)], devices=[0, 0])]
        where = "parallel_apply, 2 replicas on GPU 0"
    else:  # the rehearsal: a fresh thread that re-enters autocast with another dtype, as parallel_apply does
        # (two modules: autocast's weight cache is per thread and keyed by the weight, not the dtype)
        lin = nn.Linear(64, 64)
        wrapped = ReplicaAutocast(nn.Linear(64, 64), "cpu", torch.bfloat16)
        bare, fixed = [], []

        def replica():
            with torch.autocast("cpu", dtype=torch.float16):
                bare.append(lin(torch.randn(8, 64)).dtype)
                fixed.append(wrapped(torch.randn(8, 64)).dtype)
        t = threading.Thread(target=replica)
        t.start()
        t.join()
        where = "CPU stand-in: a thread re-entering autocast as float16"
    return (verdict_of(torch.float16 in bare, bool(fixed) and all(d == torch.bfloat16 for d in fixed)),
            f"{where}: bare replicas {[str(d) for d in bare]}, with ReplicaAutocast {[str(d) for d in fixed]}")


def probe_peak_table(cuda: bool) -> tuple[str, str]:
    """Item 11: the table's figure for this device's real name, and the TF32 defaults provenance records."""
    import torch

    from bench.run.provenance import tf32_settings
    from mgpu_core.hardware import cpu_model
    from mgpu_core.models import peak_tflops
    name = torch.cuda.get_device_name(0) if cuda else cpu_model()
    peaks = {pr: peak_tflops(name, pr) for pr in ("fp32", "bf16")}
    tf32 = tf32_settings()
    verdict = ("confirmed: fp32 convolutions run as TF32 by default; recorded" if tf32["cudnn_allow_tf32"]
               else "refuted: cuDNN TF32 off here; recorded")
    if not cuda:
        verdict = "rehearsed (CPU: TF32 does not apply; the settings are recorded all the same)"
    return verdict, f"{name!r} -> {peaks}; {tf32}"


def probe_nccl_version(cuda: bool) -> tuple[str, str]:
    """Item 12: whether torch.cuda.nccl.version() carries a 4th element here, and the text provenance writes."""
    if not cuda:
        return "skipped (no CUDA)", "torch.cuda.nccl.version() needs CUDA"
    import torch

    from bench.run.provenance import nccl_version_text
    raw = torch.cuda.nccl.version()
    return ("confirmed" if len(raw) > 3 else "refuted") + "; fix ok", f"raw {raw!r} -> {nccl_version_text(raw)!r}"
