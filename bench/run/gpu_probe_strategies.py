"""The GPU session's strategies and matrix programs (python -m bench.run.gpu_probes strategies|matrix): each
DDP/FSDP strategy once on a group of one, and the input-path matrix, each row in its own process tree."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from bench.run.gpu_probe_kit import train_config

STRATEGIES = (
    ("ddp bf16 hook", {"mode": "ddp", "ddp_comm_hook": "bf16"}),
    ("ddp powersgd hook", {"mode": "ddp", "ddp_comm_hook": "powersgd"}),
    ("ddp bucket 1MB static-graph bucket-view", {"mode": "ddp", "ddp_bucket_mb": 1.0, "ddp_static_graph": True,
                                                 "ddp_grad_as_bucket_view": True}),
    ("ddp accum 2", {"mode": "ddp", "grad_accum": 2}),
    ("fsdp model-wrap accum 2 bf16", {"mode": "fsdp", "fused": False, "fsdp_wrap": "model", "grad_accum": 2,
                                      "precision": "bf16"}),
    ("ddp resnet18 sync-bn bf16", {"mode": "ddp", "model": "resnet18", "sync_bn": True, "precision": "bf16"}),
    ("dp resnet18 bf16", {"mode": "dp", "model": "resnet18", "precision": "bf16"}),
)
"""Each strategy once on a group of one (the sweep runs the plain modes): their CUDA/NCCL paths run at all."""


def strategies() -> None:
    import torch

    from mgpu_core.config import TrainConfig
    from mgpu_core.distributed import process_group
    from mgpu_core.synthetic import synthetic_cifar
    from mgpu_core.trainer import train_and_evaluate
    cuda = torch.cuda.is_available()
    data = synthetic_cifar(2048 if cuda else 256, 256, seed=3)
    for label, overrides in STRATEGIES:
        if not cuda and (overrides.get("sync_bn") or overrides["mode"] == "dp" or overrides.get("precision")):
            print(f"STRATEGY {label}: skipped (CPU)", flush=True)
            continue
        start = time.perf_counter()
        try:
            cfg = TrainConfig(device="cuda" if cuda else "cpu", dataset="synthetic", epochs=2, warmup_steps=2,
                              **overrides)
            with process_group(cfg) as env:
                result = train_and_evaluate(cfg, env, data, log=lambda _: None)[0]
            print(f"STRATEGY {label}: ok, losses {[round(e.loss, 4) for e in result.epochs]}, val "
                  f"{result.final_val_acc:.2%}, epoch {result.epochs[-1].time_s * 1e3:.0f} ms "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failing strategy is a finding; the others still run
            traceback.print_exc()
            print(f"STRATEGY {label}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  flush=True)


def matrix(work: Path, plan: list[tuple[str, str]], epochs: int, per_row_s: float, deadline_s: float,
           argv: list[str]) -> None:
    """Each (mode, path) of `plan` in its own process tree (bench.gpu_check.run_one), as long as the step's time
    lasts; rows go to matrix.json as they finish."""
    from bench.gpu_check import PATHS, run_one
    base = train_config(argv, epochs=epochs)
    rows = []
    for mode, name in plan:
        left = deadline_s - time.time()
        if left < 20:
            rows.append([mode, name, None, f"not run: {left:.0f} s left in the step"])
            print(f"{mode:6} {name:22} not run (no time left)", flush=True)
            continue
        cfg = base.for_mode(mode, **PATHS[name])  # for_mode: fsdp takes no fused optimizer
        start = time.perf_counter()
        result, error = run_one(cfg, work / "matrix", name, min(per_row_s, left - 5))
        rows.append([mode, name, result, error])
        (work / "matrix.json").write_text(json.dumps(rows))
        if error:
            print(f"{mode:6} {name:22} FAILED after {time.perf_counter() - start:.0f} s: {error}", flush=True)
        else:
            print(f"{mode:6} {name:22} epochs {[round(e['time_s'], 3) for e in result['epochs']]} s, compile "
                  f"{result['compile_s']:.1f} s, val {result['evals'][-1]['accuracy']:.2%}", flush=True)
