"""Helpers shared by the test modules: constructed records, data on disk, gloo ranks, sweeps as subprocesses."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.multiprocessing as mp
from PIL import Image

from bench.records.results import make_record
from mgpu_core.config import TrainConfig

FAULTS = Path(__file__).parent / "faults"
TRAIN_TINY = ["--dataset", "synthetic", "--synthetic-train-size", "512", "--synthetic-test-size", "100", "--epochs",
              "1", "--warmup-steps", "1"]
"""Training flags of a tiny configuration (what mgpu_core and bench.one_config take)."""
TINY = [*TRAIN_TINY, "--no-comm"]
"""The same for a sweep, without the collective benchmark."""
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -- constructed records ------------------------------------------------------------------------------------------

def fake_result(epoch_times, val_acc, samples=1000, devices=1, val_accs=None, threads=4, steps=10, rank_times=None,
                data_wait=0.0):
    val_accs = val_accs or [val_acc] * len(epoch_times)
    return {"epochs": [{"time_s": t, "samples": samples, "samples_per_s": samples / t,
                        "samples_per_s_per_device": samples / t / devices,
                        "loss": 1.0, "train_acc": 0.5, "steps": steps,
                        "rank_times_s": rank_times or [t] * (1 if devices == 1 else devices),
                        "rank_data_wait_s": [data_wait * t] * len(rank_times or [t] * devices)}
                       for t in epoch_times],
            "evals": [{"accuracy": a} for a in val_accs],
            "final_val_acc": val_acc, "warmup_s": 0.1, "compile_s": 0.0, "dataset": {"name": "synthetic"},
            "device_name": "Test GPU", "threads": threads, "nodes": 1, "parameters": 2_122_186,
            "gradient_bytes": 8_488_744, "flops_per_sample": 44_464_128.0, "peak_tflops": 989.4,
            "peak_memory_bytes": [2**30] * devices}


def record(mode, devices, times=None, acc=0.8, trial=0, status="ok", error=None, val_accs=None, timestamp=None,
           steps=10, rank_times=None, data_wait=0.0, **cfg):
    train = TrainConfig(mode=mode, dp_gpus=devices if mode == "dp" else 1, seed=trial, **cfg)
    result = fake_result(times, acc, devices=devices, val_accs=val_accs, steps=steps, rank_times=rank_times,
                         data_wait=data_wait) if status == "ok" else None
    return make_record(cfg=train, devices=devices, trial=trial, scaling="weak", device_type="cuda", status=status,
                       provenance={"host": "h", "timestamp": timestamp}, error=error, target_val_acc=0.78,
                       result=result)


# -- data on disk -------------------------------------------------------------------------------------------------

def write_official(root, per_batch=6, seed=0):
    """torchvision's python format: channel-major rows of 3072 bytes; returns the NHWC images and labels written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        nchw = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": nchw.reshape(per_batch, -1), "labels": labels}, f)
        written[name] = (nchw.transpose(0, 2, 3, 1), np.array(labels))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    return written


def write_tree(root, per_class=3, classes=CLASSES, suffix=".png", seed=0):
    rng = np.random.default_rng(seed)
    expected = {"train": [], "test": []}
    for split in ("train", "test"):
        for label, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:04d}{suffix}")
                expected[split].append((pixels, label))
    return expected


# -- several gloo ranks -------------------------------------------------------------------------------------------

def _entry(rank: int, world_size: int, workdir: str, fn, args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    torch.save(fn(rank, f"file://{workdir}/rendezvous", *args), Path(workdir) / f"rank{rank}.pt")


def run_ranks(fn, world_size: int, workdir: Path, *args) -> list:
    """fn(rank, init_method, *args) on world_size fresh processes with a file rendezvous (no port); returns each
    rank's return value, in rank order."""
    mp.start_processes(_entry, args=(world_size, str(workdir), fn, args), nprocs=world_size, join=True,
                       start_method="spawn")
    return [torch.load(workdir / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


# -- the sweep as a user runs it ----------------------------------------------------------------------------------

def sweep(out, *args, fault=None, timeout=600, env=None):
    env = dict(os.environ if env is None else env)
    if fault:
        env |= {"MGPU_TEST_FAULT": fault, "PYTHONPATH": os.pathsep.join([str(FAULTS), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "bench.scaling", "--out", str(out), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (other than this one) that contain `text`."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if text in cmdline and p.info["pid"] != os.getpid():
            found.append(cmdline)
    return found


def by_label(records):
    return {(r["mode"], r["devices"]): r for r in records}
