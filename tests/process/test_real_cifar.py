"""Checks against the real CIFAR-10 copy in ../shared/data (skipped where it is absent)."""

import numpy as np

from mgpu_core.config import TrainConfig
from mgpu_core.distributed import process_group
from mgpu_core.trainer import train_and_evaluate


def test_real_copy_has_cifar10_shape_labels_and_statistics(real_cifar):
    assert real_cifar.train_x.shape == (50_000, 32, 32, 3) and real_cifar.test_x.shape == (10_000, 32, 32, 3)
    assert real_cifar.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                  "truck")
    assert np.bincount(real_cifar.train_y).tolist() == [5000] * 10
    assert np.bincount(real_cifar.test_y).tolist() == [1000] * 10
    mean, _ = real_cifar.channel_stats()
    np.testing.assert_allclose(mean, (0.491, 0.482, 0.447), atol=3e-3)


def test_a_short_run_on_real_data_learns(real_cifar):
    cfg = TrainConfig(device="cpu", dataset="cifar10", train_samples=6400, epochs=1, warmup_steps=0)
    with process_group(cfg) as env:
        result, _ = train_and_evaluate(cfg, env, real_cifar.subset(6400, 0), log=lambda _: None)
    assert result.evals[0].samples == 10_000
    assert result.evals[0].accuracy > 0.3  # 50 steps; chance is 0.1
