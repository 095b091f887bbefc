"""A CIFAR-shaped synthetic set that a working training loop can learn (and a broken one cannot)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .image_arrays import ImageArrays

NUM_CLASSES = 10
AMPLITUDE = 8


def synthetic_cifar(train_size: int, test_size: int, seed: int, size: int = 32) -> ImageArrays:
    """Each class is a smooth random colour pattern; a sample is its class pattern plus a weaker pattern of a random
    class, each shifted by up to 8 pixels, with per-sample contrast and strong pixel noise. Hard enough that
    accuracy climbs over hundreds of steps (not one), easy enough that a working loop gets far above chance.
    Deterministic by seed; train and test share the patterns. `size` is the images' height and width (the patterns
    scale with it, so every size is equally learnable)."""
    root = np.random.SeedSequence(seed)
    proto_seq, train_seq, test_seq = root.spawn(3)
    coarse = torch.from_numpy(np.random.default_rng(proto_seq).standard_normal((NUM_CLASSES, 3, 4, 4)))
    shift = size // 4
    prototypes = F.interpolate(coarse.float(), size=(size + shift, size + shift), mode="bicubic",
                               align_corners=False).numpy()
    train_x, train_y = _samples(prototypes, train_size, np.random.default_rng(train_seq), size, shift)
    test_x, test_y = _samples(prototypes, test_size, np.random.default_rng(test_seq), size, shift)
    return ImageArrays(name="synthetic", source=f"synthetic(seed={seed})",
                       classes=tuple(f"class{i}" for i in range(NUM_CLASSES)),
                       train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)


def _samples(prototypes: np.ndarray, n: int, rng: np.random.Generator, size: int,
             shift: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int64)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    chunk = max(1, 2048 * 32 * 32 // (size * size))  # keep the float temporaries small at any size
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        dy, dx, oy, ox = rng.integers(0, shift + 1, (4, m))
        contrast = rng.uniform(0.6, 1.4, (m, 1, 1, 1)).astype(np.float32)
        distractor = rng.integers(0, NUM_CLASSES, m)
        weight = rng.uniform(0.0, 0.9, (m, 1, 1, 1)).astype(np.float32)
        crops = np.stack([prototypes[c, :, y:y + size, x:x + size]
                          for c, y, x in zip(labels[start:stop], dy, dx, strict=True)])
        others = np.stack([prototypes[d, :, y:y + size, x:x + size]
                           for d, y, x in zip(distractor, oy, ox, strict=True)])
        pixels = (128 + AMPLITUDE * contrast * (crops + weight * others)
                  + 60 * rng.standard_normal((m, 3, size, size), dtype=np.float32))
        images[start:stop] = np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return images, labels
