"""Recipes: the schedule, the learning-rate scaling rule, presets and overrides, and the check command."""

import math
import subprocess
import sys

import pytest

from bench.records.accuracy import time_to_accuracy
from mgpu_core.config import ConfigError, TrainConfig
from mgpu_core.distributed import process_group
from mgpu_core.recipe import RECIPES, lr_multiplier, lr_scale
from mgpu_core.trainer import train_and_evaluate


def test_ramp_then_cosine_linear_constant():
    cosine = lr_multiplier("cosine", ramp_steps=4, total_steps=20)
    assert [cosine(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine(4) == 1.0 and cosine(12) == pytest.approx(0.5) and cosine(20) == pytest.approx(0.0)
    linear = lr_multiplier("linear", ramp_steps=0, total_steps=10)
    assert [linear(s) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    assert lr_multiplier("constant", 2, 10)(9) == 1.0


def test_scaling_rules():
    assert lr_scale("none", 512) == 1.0
    assert lr_scale("linear", 512) == 4.0
    assert lr_scale("sqrt", 512) == 2.0
    assert lr_scale("sqrt", 128) == 1.0


def test_recipes_fill_unset_fields_and_explicit_values_win():
    classic = TrainConfig(recipe="classic").hparams
    assert (classic.optimizer, classic.lr, classic.augment, classic.schedule) == ("adam", 1e-3, False, "constant")
    assert TrainConfig(recipe="classic", augment=True, lr=0.01).hparams.augment is True
    assert TrainConfig().hparams == RECIPES["reference"] and TrainConfig().lr is None  # unset: the recipe's
    with pytest.raises(ConfigError, match="^label_smoothing: "):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="^recipe: "):
        TrainConfig(recipe="magic")


def test_trainer_scales_the_rate_to_the_global_batch_and_follows_the_schedule(small_synthetic):
    cfg = TrainConfig(device="cpu", dataset="synthetic", batch_size=256, epochs=2, warmup_steps=0,
                      lr_scaling="sqrt", schedule="cosine", lr_ramp_epochs=1)
    with process_group(cfg) as env:
        result, model = train_and_evaluate(cfg, env, small_synthetic, log=lambda _: None)
    assert result.global_batch == 256 and result.lr_peak == pytest.approx(0.05 * math.sqrt(2))
    assert len(result.evals) == 2  # evaluated after every epoch


def test_time_to_accuracy_counts_training_seconds_only():
    assert time_to_accuracy([2.0, 3.0, 4.0], [0.5, 0.8, 0.9], 0.78) == (5.0, 2)
    assert time_to_accuracy([2.0, 3.0], [0.5, 0.6], 0.78) is None
    assert time_to_accuracy([2.0], [0.78], 0.78) == (2.0, 1)


def test_same_seed_same_accuracy_curve(small_synthetic):
    curves = []
    for _ in range(2):
        cfg = TrainConfig(device="cpu", dataset="synthetic", batch_size=64, epochs=2, warmup_steps=2)
        with process_group(cfg) as env:
            result, _ = train_and_evaluate(cfg, env, small_synthetic, log=lambda _: None)
        curves.append([(e.accuracy, e.loss) for e in result.evals])
    assert curves[0] == curves[1]  # to the last digit


def test_recipe_check_command_prints_the_table():
    proc = subprocess.run([sys.executable, "-m", "bench.recipe_check", "--dataset", "synthetic",
                           "--synthetic-train-size", "512", "--synthetic-test-size", "100", "--epochs", "2",
                           "--batch-sizes", "64,128", "--targets", "5,99", "--warmup-steps", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| global batch | lr peak | final val | best val | epoch >= 5% | epoch >= 99% |" in proc.stdout, proc.stdout
    assert proc.stdout.count("val acc") == 4  # per-epoch lines, 2 epochs x 2 batch sizes
    table_rows = [line for line in proc.stdout.splitlines() if line.startswith(("| 64 |", "| 128 |"))]
    assert len(table_rows) == 2 and all(row.split("|")[5].strip() == "1" for row in table_rows)
    bad = subprocess.run([sys.executable, "-m", "bench.recipe_check", "--batch-sizes", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "batch_sizes" in bad.stderr
