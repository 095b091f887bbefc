"""The in-memory form every dataset takes: uint8 NHWC images and int64 labels, train and test."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

MIN_STD = 1e-6
"""A channel whose std (0..1 scale) is below this has no spread to normalize: its std is taken as 1."""


class DataError(RuntimeError):
    """A dataset is missing or broken; the message names the path and reads as one line."""


@dataclass(frozen=True)
class ImageArrays:
    name: str
    """'cifar10' or 'synthetic': the dataset actually used, recorded with every result."""
    source: str
    """Where it came from (a path, or the generator and its seed)."""
    classes: tuple[str, ...]
    train_x: np.ndarray
    """uint8, (N, H, W, 3): 32x32 for CIFAR-10, any size for the synthetic set."""
    train_y: np.ndarray
    """int64, (N,)."""
    test_x: np.ndarray
    test_y: np.ndarray

    def subset(self, train_samples: int | None, seed: int) -> ImageArrays:
        """A seeded random subset of the training set (the test set is kept whole)."""
        if train_samples is None or train_samples >= len(self.train_y):
            return self
        keep = np.sort(np.random.default_rng(seed).permutation(len(self.train_y))[:train_samples])
        return replace(self, train_x=self.train_x[keep], train_y=self.train_y[keep])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images, on the 0..1 scale ToTensor uses. The variance is
        combined chunk by chunk from each chunk's own mean and squared deviations (Chan, Golub and LeVeque 1979),
        never as E[x^2] - E[x]^2, which rounds below zero for a constant channel; a channel with no spread (std
        below MIN_STD, e.g. plain-colour images) gets std 1, so normalizing only shifts it."""
        count, mean, m2 = 0, np.zeros(3), np.zeros(3)
        for start in range(0, len(self.train_x), 4096):  # chunked: a float copy of all 50k images is 1.2 GB
            chunk = self.train_x[start:start + 4096].reshape(-1, 3).astype(np.float64) / 255.0
            n = len(chunk)
            chunk_mean = chunk.mean(0)
            chunk_m2 = ((chunk - chunk_mean) ** 2).sum(0)
            delta = chunk_mean - mean
            total = count + n
            mean = mean + delta * n / total
            m2 = m2 + chunk_m2 + delta * delta * count * n / total
            count = total
        std = np.sqrt(m2 / max(count, 1))
        std = np.where(std < MIN_STD, 1.0, std)
        return tuple(mean.tolist()), tuple(std.tolist())

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[1])

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "classes": len(self.classes),
                "train_samples": int(len(self.train_y)), "test_samples": int(len(self.test_y)),
                "image_size": self.image_size}
