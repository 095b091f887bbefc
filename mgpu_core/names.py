"""Names every layer shares, torch-free: the parallel modes and the model names (with the checks that need no
import), so readers of records and command lines know them without loading torch."""

from __future__ import annotations

import importlib.util
import re
import typing
from typing import Literal

from .errors import ConfigError

Mode = Literal["single", "dp", "ddp", "fsdp"]
MODES: tuple[str, ...] = typing.get_args(Mode)
"""The parallel modes, in the order tables and plots list them."""
CLASSIC_MODES = ("single", "dp", "ddp")
"""The classic experiment's modes: what a sweep runs unless --modes says otherwise."""
DISTRIBUTED_MODES = ("ddp", "fsdp")
"""Modes with one process per device in a process group (started by torchrun)."""
MAX_DEVICES = 2**20
"""The most devices a count may name (sweep, predict): beyond any machine, and inside what plots and int64 take."""

TORCHVISION = ("resnet18", "resnet50", "mobilenet_v3_small", "vit_b_16")
"""Built untrained (weights=None): from many FLOPs per gradient byte (resnet50) to few (mobilenet_v3_small)."""
MODEL_NAMES = ("simplecnn", *TORCHVISION)
BATCHNORM_FREE = ("simplecnn", "vit_b_16")
"""Built-in models without a BatchNorm layer: SyncBatchNorm changes nothing in them (a sweep skips sync-bn there;
for a user's model the trainer checks the built model)."""
USER_MODEL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def check_model(name: str, image_size: int) -> None:
    """Validation that needs no import: a known name or module:callable, and an input size the model takes."""
    if name not in MODEL_NAMES and not USER_MODEL.match(name):
        raise ConfigError(f"model: unknown {name!r}; choose from {', '.join(MODEL_NAMES)} or give "
                          "package.module:callable")
    if name == "simplecnn" and image_size != 32:
        raise ConfigError(f"image_size: simplecnn is fixed at 32x32 (its fc layer takes 4096 inputs); got "
                          f"{image_size}")
    if name == "vit_b_16" and image_size % 16:
        raise ConfigError(f"image_size: vit_b_16 needs a multiple of its 16-pixel patch; got {image_size}")


def check_import(name: str) -> None:
    """For package.module:callable, that the module exists (found without running it where the package allows);
    a misspelt module is a ConfigError at once, like an unknown registry name."""
    if ":" not in name:
        return
    module = name.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a parent package that is missing or fails to import
        raise ConfigError(f"model: cannot import {module} ({type(exc).__name__}: {exc})") from None
    if found is None:
        raise ConfigError(f"model: no module named {module!r} (give package.module:callable, importable from "
                          "the current folder or PYTHONPATH)")
