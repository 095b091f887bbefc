"""What makes a study: the scaling kind, the settings that do not split a study (they vary inside one, or say only
where and how it ran), and the batch a study holds fixed. One definition, used by the study id, compare and the
plan."""

from __future__ import annotations

import typing
from typing import Literal

from mgpu_core.config import VARIANT_LABELS
from mgpu_core.recipe import global_batch

Scaling = Literal["weak", "strong"]
"""weak: the batch per device is held fixed (the global batch grows with the devices); strong: the global batch is
held fixed and split over the devices."""
SCALINGS: tuple[str, ...] = typing.get_args(Scaling)

VARIANT_FIELDS = tuple(VARIANT_LABELS)
"""Training settings that set a series apart within one study (its own table row and plot line), never another
study: the axes (bench.run.axes), and what a mode implies (fsdp takes no fused optimizer). Declared once, as
TrainConfig field metadata ("label")."""
PER_CONFIGURATION = ("mode", "dp_gpus", "seed")
"""Settings each configuration-trial of a study sets for itself."""
PLACE_ONLY = ("data_dir", "cache_dir", "download", "dist_timeout_s")
"""Settings that say where data live or how long to wait: never part of what was measured. (threads is not one:
it changes timing, so a --resume with another --threads is another study, never pooled into one row.)"""
STUDY_INVARIANT_EXCLUDED = (*PER_CONFIGURATION, *PLACE_ONLY, *VARIANT_FIELDS)
"""Every TrainConfig setting that does not split a study; all others do (a study holds them fixed)."""


def fixed_settings(train_config: dict) -> dict:
    """The settings of a record's train_config (TrainConfig.to_dict()) that a study holds fixed."""
    return {k: v for k, v in train_config.items() if k not in STUDY_INVARIANT_EXCLUDED}


def device_batch(study_batch: int, devices: int, scaling: str) -> int:
    """The batch per device of one configuration: the study's batch under weak scaling; under strong scaling the
    study's global batch split over the devices (at least 1)."""
    return max(1, study_batch // devices) if scaling == "strong" else study_batch


def study_batch(batch_per_device: int, devices: int, scaling: str) -> int:
    """The batch a study holds fixed, from one configuration's batch per device: itself under weak scaling, the
    global batch of one micro-batch under strong scaling (accumulation is a variant, not the study's)."""
    return global_batch(batch_per_device, devices) if scaling == "strong" else batch_per_device


def study_settings(train_config: dict, devices: int, scaling: str) -> dict:
    """The training settings a study holds fixed, from one configuration's train_config (TrainConfig.to_dict()) on
    `devices`: its fixed settings, with batch_size the batch the study holds (study_batch)."""
    return fixed_settings(train_config) | {"batch_size": study_batch(train_config["batch_size"], devices, scaling)}


def study_identity(train_config: dict, devices: int, scaling: str, device_type: str) -> dict:
    """Everything that makes a study, by name: its settings (study_settings), the scaling kind and the device type.
    Two configurations belong to one study exactly when these are equal (bench.records.results.study_id digests
    them)."""
    return {**study_settings(train_config, devices, scaling), "scaling": scaling, "device_type": device_type}
