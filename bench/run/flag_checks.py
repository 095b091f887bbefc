"""Sweep flags that would silently do nothing, checked before torch loads: a mode-only setting (an axis, or a
training flag such as --powersgd-rank) with none of its modes in --modes is refused in one line, and the template
every configuration is made from is built in a mode that takes its settings."""

from __future__ import annotations

import os
from dataclasses import fields

from bench.run.axes import APPLIES_TO, Axes
from mgpu_core.cli_args import flag_name
from mgpu_core.config import DEFAULTS, MODE_ONLY, ConfigError, TrainConfig

NO_AXES = Axes()


def unused_flag(train: dict, axes: Axes, modes: tuple[str, ...]) -> str | None:
    """One line naming a flag that applies to none of `modes`, or None. `train` holds the training flags (axes
    excluded), `axes` the axis values."""
    for f in fields(Axes):
        if getattr(axes, f.name) != getattr(NO_AXES, f.name) and not set(APPLIES_TO[f.name]) & set(modes):
            return _line(f.name, APPLIES_TO[f.name], modes)
    for name, applies in MODE_ONLY.items():
        if name in train and train[name] != DEFAULTS[name] and not set(applies) & set(modes):
            return _line(name, applies, modes)
    return None


def _line(name: str, applies: tuple[str, ...], modes: tuple[str, ...]) -> str:
    return (f"{flag_name(name)} applies to {' and '.join(applies)} only, and --modes has {','.join(modes)}: it would "
            f"change nothing; add {applies[0]} to --modes or drop the flag")


def template(train: dict, modes: tuple[str, ...]) -> TrainConfig:
    """The configuration every configuration of the sweep is made from (TrainConfig.for_mode adapts it), in the
    first of `modes` that takes every setting given (e.g. ddp for --powersgd-rank), else single. Raises the
    ConfigError of the first mode when none does (the settings are wrong for every mode swept)."""
    first = None
    for mode in (*modes, "single"):
        try:
            return TrainConfig(**(train | {"mode": mode}))
        except ConfigError as exc:
            first = first or exc
    raise first


def thread_notice(threads: int | None, processes: int) -> str | None:
    """A notice where --threads asks for more threads than this node's usable cores (per process: the processes
    of one node share them), or None."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads is None or threads * processes <= cores:
        return None
    return (f"notice: --threads {threads} x {processes} process(es) exceeds the {cores} usable cores of this node: "
            "ranks oversubscribe the cores and time each other's work; lower --threads")
