"""mgpu_core: the trainer behind mgpu-bench (SimpleCNN on CIFAR-10; single, DataParallel, DistributedDataParallel)."""

from .config import ConfigError, TrainConfig
from .image_arrays import DataError, ImageArrays
from .model import SimpleCNN

__all__ = ["ConfigError", "DataError", "ImageArrays", "SimpleCNN", "TrainConfig"]
