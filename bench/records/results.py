"""results.jsonl: one JSON record per configuration-trial, appended atomically the moment it is known."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from bench.records.accuracy import time_to_accuracy
from bench.records.study import VARIANT_FIELDS, study_settings
from bench.records.units import TERA
from mgpu_core.config import DEFAULTS, VARIANT_LABELS, TrainConfig
from mgpu_core.recipe import global_batch

SCHEMA_VERSION = 3
"""3: per-epoch mfu (achieved FLOP/s over the device's peak); 2: per-epoch val_accs, time to target accuracy,
compile_s (1 had neither). Records of version 2 are read through up_convert."""
STATUSES = ("ok", "failed", "timeout", "skipped")
REQUIRED_KEYS = ("study", "key", "mode", "devices", "status", "provenance")
"""What every reader of a record relies on; a record without them is refused, not half-read."""


def variant_label(cfg: TrainConfig) -> str:
    """How a configuration's variant reads, e.g. 'bucket 1MB accum 4' ('' for the default settings)."""
    words = []
    for name in VARIANT_FIELDS:  # TrainConfig's field metadata "label": a bool's words, or a format of the value
        value = getattr(cfg, name)
        if value != DEFAULTS[name]:
            words.append(VARIANT_LABELS[name] if isinstance(value, bool) else VARIANT_LABELS[name].format(value))
    return " ".join(words)


def study_id(cfg: TrainConfig, devices: int, scaling: str, device_type: str) -> str:
    """Same for every configuration of one study: the settings a sweep holds fixed (not mode, device count, trial
    seed, nor where data live), so results from several runs or nodes of one study are pooled, and others kept
    apart. The batch held fixed is per device under weak scaling and global under strong scaling."""
    return _digest([study_settings(cfg.to_dict(), devices, scaling), scaling, device_type])  # study_identity's parts


def config_key(cfg: TrainConfig, devices: int, trial: int, scaling: str, device_type: str) -> str:
    """Identifies one configuration-trial of one study, for --resume."""
    return _digest([study_id(cfg, devices, scaling, device_type), cfg.mode, variant_label(cfg), devices, trial])


def _digest(value: object) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def make_record(*, cfg: TrainConfig, devices: int, trial: int, scaling: str, device_type: str, status: str,
                provenance: dict, target_val_acc: float, result: dict | None = None, error: str | None = None,
                wall_s: float | None = None, prediction: dict | None = None) -> dict:
    """The record of one configuration-trial; `result` is RunResult.to_dict() when it ran to the end.
    `target_val_acc` is a fraction. `prediction` is the point prediction made before it ran
    (bench.explain.prediction.predict), with its band."""
    assert status in STATUSES
    epochs = result["epochs"] if result else []
    val_accs = [e["accuracy"] for e in result["evals"]] if result else []
    reached = time_to_accuracy([e["time_s"] for e in epochs], val_accs, target_val_acc) if result else None
    tflops = [e["samples_per_s_per_device"] * result["flops_per_sample"] / TERA for e in epochs] if result else []
    return {
        "schema_version": SCHEMA_VERSION,
        "study": study_id(cfg, devices, scaling, device_type),
        "key": config_key(cfg, devices, trial, scaling, device_type),
        "mode": cfg.mode,
        "variant": variant_label(cfg),
        "model": cfg.model,
        "image_size": cfg.image_size,
        "devices": devices,
        "device_type": device_type,
        "trial": trial,
        "scaling": scaling,
        "batch_per_device": cfg.batch_size,
        "global_batch": global_batch(cfg.batch_size, devices, cfg.grad_accum),
        "grad_accum": cfg.grad_accum,
        "status": status,
        "error": error,
        "wall_s": wall_s,
        "epoch_times_s": [e["time_s"] for e in epochs],
        "steps_per_epoch": [e["steps"] for e in epochs],
        "samples_trained": [e.get("samples") for e in epochs],  # whole steps: pipelines.LAST_BATCH_POLICY
        "rank_epoch_times_s": [e.get("rank_times_s", []) for e in epochs],
        "rank_data_wait_s": [e.get("rank_data_wait_s", []) for e in epochs],
        "warmup_s": result["warmup_s"] if result else None,
        "compile_s": result["compile_s"] if result else None,
        "samples_per_s": [e["samples_per_s"] for e in epochs],
        "samples_per_s_per_device": [e["samples_per_s_per_device"] for e in epochs],
        "parameters": result["parameters"] if result else None,
        "gradient_bytes": result["gradient_bytes"] if result else None,
        "flops_per_sample": result["flops_per_sample"] if result else None,
        "tflops_per_device": tflops,
        "peak_tflops": result["peak_tflops"] if result else None,
        "mfu": _mfu(tflops, result["peak_tflops"] if result else None),
        "peak_memory_bytes": result["peak_memory_bytes"] if result else [],
        "resident_data_bytes": result.get("resident_data_bytes") if result else None,
        "val_acc": result["final_val_acc"] if result else None,
        "val_accs": val_accs,
        "target_val_acc": target_val_acc,
        "time_to_target_s": reached[0] if reached else None,
        "epochs_to_target": reached[1] if reached else None,
        "train_loss": epochs[-1]["loss"] if epochs else None,
        "train_acc": epochs[-1]["train_acc"] if epochs else None,
        "dataset": result["dataset"] if result else None,
        "device_name": result["device_name"] if result else None,
        "train_config": cfg.to_dict(),
        "prediction": prediction,
        "predicted_epoch_s": (prediction or {}).get("predicted_epoch_s"),
        "ddp_overlap": result.get("ddp_overlap") if result else None,
        "result": result,
        "provenance": provenance,
    }


def _mfu(tflops_per_device: list[float], peak_tflops: float | None) -> list[float]:
    """Model FLOPs utilization per epoch, as nanoGPT and torchtitan name it: achieved FLOP/s per device over the
    device's datasheet peak for the precision in use (a fraction); none where the peak is unknown (CPU)."""
    return [t / peak_tflops if t is not None else None for t in tflops_per_device] if peak_tflops else []


def up_convert(record: dict) -> dict:
    """A record of an older schema version in the current one; the record itself is left as it was. 2 -> 3: mfu
    from the tflops_per_device and peak_tflops it already holds."""
    if record.get("schema_version") == 2:
        record = record | {"schema_version": 3,
                           "mfu": _mfu(record.get("tflops_per_device") or [], record.get("peak_tflops"))}
    return record


class ResultsError(RuntimeError):
    """A results file this harness cannot use; the message names the file and reads as one line."""


def append_record(path: Path, record: dict) -> None:
    """One write of one whole line to an O_APPEND file, then fsync: a crash later loses nothing written before.
    After a torn last line (a crash mid-write elsewhere) the record starts on a line of its own."""
    line = (json.dumps(_finite(record), sort_keys=True, allow_nan=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _finite(value):
    """Standard JSON only: a non-finite float (NaN, inf) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def check_record(record: dict, where: str) -> None:
    """bench.records.pooling.check_record (imported late: pooling imports this module)."""
    from bench.records.pooling import check_record as check
    check(record, where)


def read_records(path: Path, warn=print) -> list[dict]:
    """Every complete result record of `path`, in the current schema (older versions up-converted). A record of an
    unknown schema version, or one without the keys every reader needs, is refused with ResultsError rather than
    misread."""
    records = []
    for number, record in read_jsonl(path, warn, numbered=True):
        if isinstance(record, dict) and record.get("kind") == "comm":
            raise ResultsError(f"{path}:{number}: not a results file (a record of the collective benchmark, as "
                               "comm.jsonl holds)")
        if isinstance(record, dict):
            record = up_convert(record)
        if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
            version = record.get("schema_version") if isinstance(record, dict) else None
            raise ResultsError(f"{path}:{number}: results schema version {version}, this harness reads "
                               f"{SCHEMA_VERSION}; move the file aside or use another --out")
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise ResultsError(f"{path}:{number}: record without {', '.join(missing)}; move the file aside or use "
                               "another --out")
        check_record(record, f"{path}:{number}")
        records.append(record)
    return records


def read_jsonl(path: Path, warn=print, numbered: bool = False) -> list:
    """Every complete JSON line of `path` (as (line number, value) when `numbered`); none if it is absent. A torn
    line (cut off by a crash) is reported and left out; a path that is not a readable text file is a
    ResultsError."""
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode()
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a folder, not a results file") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not a results file (undecodable byte at offset {exc.start})") from None
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror}") from None
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            warn(f"warning: {path}:{number}: incomplete record ignored")
            continue
        values.append((number, value) if numbered else value)
    return values
