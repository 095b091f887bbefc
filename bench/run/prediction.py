"""The prediction a sweep makes for one configuration just before it runs, from what the study measured before:
the collective benchmark's record for its device count (α-β, compute profile, κ, the 1-rank step of that run) and
the 1-device single configuration's epochs (bench.explain.prediction)."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.explain.prediction import Settings, predict
from bench.records.comm import read_comm
from bench.records.files import COMM_FILE, RESULTS_FILE
from bench.records.results import read_records
from mgpu_core.config import TrainConfig
from mgpu_core.recipe import global_batch


def settings_of(cfg: TrainConfig, devices: int, base_batch: int) -> Settings:
    """What the prediction depends on, from the configuration a child trains; `base_batch` is the 1-device
    baseline's batch (per device under weak scaling, the global batch under strong)."""
    return Settings(mode=cfg.mode, devices=devices, global_batch=global_batch(cfg.batch_size, devices, cfg.grad_accum),
                    base_global_batch=base_batch, grad_accum=cfg.grad_accum, ddp_bucket_mb=cfg.ddp_bucket_mb,
                    ddp_comm_hook=cfg.ddp_comm_hook, fsdp_wrap=cfg.fsdp_wrap)


def prediction_before_run(out: Path, study: str, cfg: TrainConfig, devices: int, base_batch: int) -> dict | None:
    """The prediction for `cfg` on `devices` from the records already in `out` (newest collective record of the
    study at that count; median epoch of the study's successful single x1 records), or None where the study has
    no such collective record with a compute profile, or the mode has no model."""
    if devices < 2:
        return None
    comm = [r for r in read_comm(out / COMM_FILE, lambda _: None)
            if r.get("study") == study and r["devices"] == devices and r.get("compute_profile")]
    if not comm:
        return None
    newest = max(comm, key=lambda r: r["provenance"].get("timestamp") or "")
    single = [r for r in read_records(out / RESULTS_FILE, lambda _: None)
              if r["study"] == study and r["mode"] == "single" and r["devices"] == 1 and r["status"] == "ok"]
    epochs = [t for r in single for t in r["epoch_times_s"]]
    steps = [s for r in single for s in r["steps_per_epoch"]]
    return predict(settings_of(cfg, devices, base_batch), newest, base_epoch_s=statistics.median(epochs)
                   if epochs else None, base_steps=statistics.median(steps) if steps else None)
