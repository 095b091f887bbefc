"""Choosing the dataset a run uses: CIFAR-10 found locally, downloaded, or the synthetic stand-in."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from .cifar_files import download_cifar10, find_cifar10, layout_problem
from .config import TrainConfig
from .image_arrays import DataError, ImageArrays
from .synthetic import synthetic_cifar


def default_home() -> Path:
    """~/.cache/mgpu-bench, computed when needed (not at import: HOME may be missing on compute nodes and in
    containers); without a home, a folder in the system's temporary folder."""
    try:
        return Path.home() / ".cache" / "mgpu-bench"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        return Path(tempfile.gettempdir()) / "mgpu-bench"


def load_dataset(cfg: TrainConfig, notice: Callable[[str], None] = print) -> ImageArrays:
    """The dataset cfg asks for, subset to cfg.train_samples. Raises DataError with a one-line reason."""
    data = _load_whole(cfg, notice)
    return data.subset(cfg.train_samples, cfg.seed)


def _load_whole(cfg: TrainConfig, notice: Callable[[str], None]) -> ImageArrays:
    if cfg.dataset == "synthetic":
        return synthetic_cifar(cfg.synthetic_train_size, cfg.synthetic_test_size, cfg.seed, cfg.image_size)
    data_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else default_home() / "cifar10"
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_home()
    if cfg.data_dir and not data_dir.exists():
        raise DataError(f"{data_dir}: no such file or folder (--data-dir)")
    if cache_dir.exists() and not cache_dir.is_dir():
        raise DataError(f"{cache_dir}: not a folder (--cache-dir, default ~/.cache/mgpu-bench)")
    found = find_cifar10(data_dir, cache_dir, notice)
    if found is not None:
        return found
    if cfg.data_dir:  # a location the user named holds no CIFAR-10: never stand in synthetic data for it
        raise DataError(f"{data_dir}: no CIFAR-10 there ({layout_problem(data_dir)}) (--data-dir)")
    reason = "download disabled"
    if cfg.download:
        found, reason = download_cifar10(data_dir)
        if found is not None:
            return found
    if cfg.dataset == "cifar10":
        raise DataError(f"{data_dir}: no CIFAR-10 found (cifar-10-batches-py/, cifar-10-python.tar.gz, train/ + "
                        "test/, or a .tar.gz of them) "
                        f"and no download ({reason})")
    notice(f"notice: no CIFAR-10 in {data_dir} ({reason}); using the synthetic set "
           f"({cfg.synthetic_train_size} + {cfg.synthetic_test_size} samples, seed {cfg.seed})")
    return synthetic_cifar(cfg.synthetic_train_size, cfg.synthetic_test_size, cfg.seed, cfg.image_size)
