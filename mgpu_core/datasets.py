"""Choosing the dataset a run uses: CIFAR-10 found locally, downloaded, or the synthetic stand-in."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cifar_files import download_cifar10, find_cifar10, layout_problem, locate_cifar10
from .config import TrainConfig
from .image_arrays import DataError, ImageArrays


def default_home() -> Path:
    """~/.cache/mgpu-bench, computed when needed (not at import: HOME may be missing on compute nodes and in
    containers); without a home, a folder in the system's temporary folder."""
    try:
        return Path.home() / ".cache" / "mgpu-bench"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        return Path(tempfile.gettempdir()) / "mgpu-bench"


@dataclass(frozen=True)
class DataLocation:
    """Which dataset a configuration will use, and where it is, without its arrays."""

    name: str
    """'cifar10' or 'synthetic'."""
    source: Path | None
    """CIFAR-10's batches folder, archive or image tree; None for the synthetic set (generated from the seed)."""


def load_dataset(cfg: TrainConfig, notice: Callable[[str], None] = print) -> ImageArrays:
    """The dataset cfg asks for, subset to cfg.train_samples. Raises DataError with a one-line reason."""
    found = _choose(cfg, notice, find_cifar10)
    if found is None:
        from .synthetic import synthetic_cifar  # torch: only where the synthetic set is generated
        found = synthetic_cifar(cfg.synthetic_train_size, cfg.synthetic_test_size, cfg.seed, cfg.image_size)
    return found.subset(cfg.train_samples, cfg.seed)


def locate_dataset(cfg: TrainConfig, notice: Callable[[str], None] = print) -> DataLocation:
    """The dataset load_dataset(cfg) would use, found (or downloaded) and checked for the same one-line DataErrors,
    without keeping it in memory: the synthetic set is not generated, CIFAR-10's batches are checked, an image
    tree is decoded only where no cache of it exists (then every reader loads the cache)."""
    source = _choose(cfg, notice, locate_cifar10)
    return DataLocation("synthetic", None) if source is None else DataLocation("cifar10", source)


def _choose(cfg: TrainConfig, notice: Callable[[str], None], find):
    """What `find(data_dir, cache_dir)` gives for the CIFAR-10 that cfg asks for, downloaded if need be; None where
    the synthetic set stands in (asked for, or in auto mode with a notice)."""
    if cfg.dataset == "synthetic":
        return None
    data_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else default_home() / "cifar10"
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_home()
    if cfg.data_dir and not data_dir.exists():
        raise DataError(f"{data_dir}: no such file or folder (--data-dir)")
    if cache_dir.exists() and not cache_dir.is_dir():
        raise DataError(f"{cache_dir}: not a folder (--cache-dir, default ~/.cache/mgpu-bench)")
    found = find(data_dir, cache_dir, notice)
    if found is not None:
        return found
    if cfg.data_dir:  # a location the user named holds no CIFAR-10: never stand in synthetic data for it
        raise DataError(f"{data_dir}: no CIFAR-10 there ({layout_problem(data_dir)}) (--data-dir)")
    reason = "download disabled"
    if cfg.download:
        reason = download_cifar10(data_dir)
        if reason is None:
            return find(data_dir, cache_dir, notice)
    if cfg.dataset == "cifar10":
        raise DataError(f"{data_dir}: no CIFAR-10 found (cifar-10-batches-py/, cifar-10-python.tar.gz, train/ + "
                        "test/, or a .tar.gz of them) "
                        f"and no download ({reason})")
    notice(f"notice: no CIFAR-10 in {data_dir} ({reason}); using the synthetic set "
           f"({cfg.synthetic_train_size} + {cfg.synthetic_test_size} samples, seed {cfg.seed})")
    return None
